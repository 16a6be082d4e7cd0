"""Rendering shared by the workspaces: citations, passages and answer metadata."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from assist.answer import Answer, Citation
from webui.safe_markdown import safe_markdown


def citation_label(citation: Citation) -> str:
    """``[1] Title — Section · de · v3.1 · review by 2027-03-31``: enough to find the passage again."""
    section = _section(citation)
    parts = [f"[{citation.number}] {citation.title}" + (f" — {section}" if section else "")]
    if citation.language:
        parts.append(citation.language)
    if citation.version:
        parts.append(f"v{citation.version}")
    if citation.review_by:
        parts.append(f"review by {citation.review_by}")
    return " · ".join(parts)


def _section(citation: Citation) -> str:
    """The heading path without the repeated document title at its start."""
    path = [p.strip() for p in citation.section.split(">") if p.strip()]
    title = citation.title.strip().lower()
    if len(path) > 1 and title.startswith(path[0].lower()):
        path = path[1:]
    return " › ".join(path)


def render_citations(citations: Sequence[Citation], key: str, expanded_first: bool = False) -> None:
    """Each citation as an expander holding the exact passage and where it comes from."""
    for citation in citations:
        with st.expander(citation_label(citation), expanded=expanded_first and citation.number == 1):
            st.caption(
                f"Document `{citation.doc_id}` · section: {_section(citation) or citation.title} · "
                f"version {citation.version or '—'} · review by {citation.review_by or '—'}"
            )
            st.markdown(_quote(citation.passage))


def render_sources_for_customer(citations: Sequence[Citation], link_domains: Sequence[str] = ()) -> None:
    """Sources as a readable list of help articles; each opens to the text the answer relied on.

    The passage is made safe first: no images, no HTML, links only to ``link_domains``.
    """
    if not citations:
        return
    st.markdown("**Sources**")
    for citation in citations:
        section = _section(citation)
        label = f"{citation.number}. {citation.title}" + (f" — {section}" if section else "")
        if citation.language:
            label += f" ({citation.language})"
        with st.expander(safe_markdown(label)):
            st.markdown(_quote(safe_markdown(citation.passage, link_domains)))


def answer_caption(answer: Answer) -> str:
    """One line of facts about how the answer was produced, for agents and KB owners."""
    bits = [f"confidence {answer.confidence:.2f}", f"{answer.latency_ms:.0f} ms"]
    if answer.search_query != answer.question:
        bits.append(f"searched: “{answer.search_query}”")
    return " · ".join(bits)


def _quote(text: str) -> str:
    """Markdown blockquote, so a passage's own headings and lists do not restyle the page."""
    return "\n".join("> " + line if line.strip() else ">" for line in text.strip().splitlines())


# Fixed page CSS (no text from documents, models or users ever goes in here):
# - .kb-sr-only: text for screen readers only (the live region that announces new replies);
# - captions and quoted passages at full text colour: Streamlit draws captions at 60% opacity,
#   which is below the 4.5:1 contrast that small text needs (WCAG AA).
_PAGE_CSS = """<style>
.kb-sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p { color: #4a4c57; opacity: 1; }
[data-testid="stMarkdownContainer"] blockquote, [data-testid="stMarkdownContainer"] blockquote p {
  color: #262730; opacity: 1; }
</style>"""


def page_style() -> None:
    """The app's fixed CSS, once per page run."""
    st.markdown(_PAGE_CSS, unsafe_allow_html=True)

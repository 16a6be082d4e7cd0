"""The quotable pieces of a chunk: sentences, list items, procedure steps and table rows.

An answer quotes segments, never invents text, so how a chunk is cut into segments decides
what an answer can say. Ingest embeds every segment once (the "small" vectors of small-to-big
retrieval) and the answer layer cuts the same chunk the same way at question time, so a
segment's stored vector is found by its position alone. Both sides call :func:`segments_of`;
changing its output changes :data:`SEGMENTER_VERSION`, which makes the next ingest re-embed.

Structure is kept with each segment because it decides what may be quoted together:
- a procedure's steps share a ``block`` and are quoted whole and in order;
- a bulleted list shares a ``block`` too, and the sentence introducing it ("You can pay in
  these ways:") is its ``lead``, so an answer never stops on a dangling colon;
- a table row carries its header row, so "60 SEK" arrives with "Sweden" above it;
- sentences of one paragraph share a ``paragraph``: a short paragraph is one idea ("If there
  is a hold, … If there is no hold, escalate to L2 Payments Ops.") and is quoted whole;
- a segment under a heading or sentence that announces an example, or in a quotation (a
  scam email shown to agents: "> … change the registered phone number …"), is marked ``example``:
  an answer prefers the rule to the worked example that illustrates it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEGMENTER_VERSION = "1"

_STEP = re.compile(r"^\s{0,3}(\d{1,3})[.)]\s+")
_ITEM = re.compile(r"^\s{0,3}[-*+•]\s+")
_TABLE_SEPARATOR = re.compile(r"\|?[\s:|-]+\|?")
# A sentence ends at . ! ? followed by space and an upper-case letter, digit, quote or bracket.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜÅÆØ0-9\"'(“„])")
_EXAMPLE = re.compile(
    r"\b(worked examples?|examples?|for example|for instance|e\.g\.|beispiele?|zum beispiel|exempel|till exempel)\b", re.I
)
_EXAMPLE_OPENER = re.compile(r"^\s*(example|for example|for instance|e\.g\.|beispiel|zum beispiel|exempel|till exempel)\b", re.I)


@dataclass(frozen=True)
class Segment:
    """One quotable piece of a chunk body, in reading order."""

    position: int
    kind: str  # "sentence" | "item" | "step" | "row"
    text: str  # as quoted; a row is "header\nrow"
    block: int  # steps of one procedure, items of one list, rows of one table share it; 0 for sentences
    lead: int | None = None  # position of the sentence introducing this block, if any
    example: bool = False  # part of a worked example rather than the rule itself
    paragraph: int = 0  # sentences of one paragraph share it (from 1); 0 for items, steps and rows

    @property
    def grouped(self) -> bool:
        return self.kind in ("item", "step", "row")


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def row_as_text(row: str) -> str:
    """A table row with its header as "Header: value; Header: value" prose (for embedding).

    The header names what each cell means ("Sweden", "Germany"); a row alone ("| First late fee |
    60 SEK | 2.50 EUR |") would be embedded without knowing which figure belongs to which market.
    """
    header, _, body = row.partition("\n")
    names, values = _cells(header), _cells(body)
    if len(names) != len(values):
        return " ".join(values)
    return "; ".join(f"{n}: {v}" if n else v for n, v in zip(names, values, strict=True) if v)


def segments_of(body: str, section: str = "") -> list[Segment]:
    """Cut a chunk body (without its heading prefix) into segments.

    ``section`` is the chunk's heading path; an "Examples" heading anywhere below the title
    marks all its segments as examples.
    """
    out: list[Segment] = []
    block = 0
    paragraph = 0
    header: str | None = None
    open_block: str | None = None  # kind of the block being extended: "item", "step", "row"
    pending_lead: int | None = None  # a sentence ending in ":" waiting for the block it introduces
    # Any heading under the document's title: "Representative examples > Germany" is an example too.
    headings = [h.strip() for h in section.split(">")]
    in_example_section = any(_EXAMPLE.search(h) for h in (headings[1:] or headings))
    example_context = False  # the last sentence announced an example ("For example:")

    def add(kind: str, text: str) -> None:
        nonlocal pending_lead
        lead = pending_lead if kind != "sentence" else None
        example = in_example_section or example_context or bool(kind == "sentence" and _EXAMPLE_OPENER.match(text))
        sentence = kind == "sentence"
        out.append(Segment(len(out), kind, text, 0 if sentence else block, lead, example, paragraph if sentence else 0))

    for line in body.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("|"):
            if _TABLE_SEPARATOR.fullmatch(stripped):
                continue
            if header is None or open_block != "row":
                if open_block is not None:
                    pending_lead = None
                header = stripped
                block += 1
                open_block = "row"
                continue
            add("row", f"{header}\n{stripped}")
            continue
        header = None
        if open_block in ("item", "step") and line.startswith(("  ", "\t")) and out:
            last = out[-1]  # a sub-bullet or wrapped line stays with its step or item
            out[-1] = Segment(
                last.position, last.kind, f"{last.text}\n{line.rstrip()}", last.block, last.lead, last.example, last.paragraph
            )
            continue
        step, item = _STEP.match(line), _ITEM.match(line)
        if step or item:
            kind = "step" if step else "item"
            if open_block != kind:
                if open_block is not None:
                    pending_lead = None  # a lead introduces the block right after it, not the next one
                block += 1
                open_block = kind
            add(kind, stripped)
            continue
        open_block = None
        pending_lead = None
        # A quotation (a customer's email, a scam message) shows what arrives, not what to do.
        quoted = stripped.startswith(">")
        example_context = quoted
        paragraph += 1
        for sentence in _SENTENCE.split(stripped):
            sentence = sentence.strip()
            if not sentence:
                continue
            add("sentence", sentence)
            example_context = quoted or bool(_EXAMPLE.search(sentence) and sentence.endswith(":"))
        if out and out[-1].kind == "sentence" and out[-1].text.endswith(":"):
            pending_lead = out[-1].position
    return out


def embedding_text(segment: Segment, section: str) -> str:
    """What is embedded for a segment: its heading, then its text (a row as "Header: value" prose).

    The heading carries what the segment is about: "- The purchase is above your spending
    limit." means little until it is read under "Why was my card declined?".
    """
    leaf = section.rsplit(">", 1)[-1].strip()
    text = row_as_text(segment.text) if segment.kind == "row" else segment.text
    return f"{leaf}: {text}" if leaf else text


def chunk_body(text: str) -> str:
    """A chunk's text without the heading path the chunker puts before its first blank line."""
    return text.split("\n\n", 1)[1] if "\n\n" in text else text


def chunk_segments(text: str, section: str) -> list[Segment]:
    """The segments of a stored chunk (its text as the store holds it, heading path included)."""
    return segments_of(chunk_body(text), section)


def segment_id(chunk_id: str, position: int) -> str:
    """The id a segment's vector is stored under."""
    return f"{chunk_id}#{position}"

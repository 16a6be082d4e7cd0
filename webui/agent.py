"""Agent assist: ask during a live contact, read the cited policy, edit and copy a reply, rate the answer;
and the hand-off queue of conversations customers passed to a person (:mod:`webui.handoff_queue`)."""

from __future__ import annotations

from datetime import date

import streamlit as st

from assist.access import Filters
from assist.service import QuestionError
from kb.state.accounts import StaffIdentity
from webui import handoff_queue
from webui.asking import Exchange, ask_and_log
from webui.common import answer_caption, render_citations
from webui.services import Services

RATING_BUTTONS = (
    ("helpful", "Helpful", ":material/thumb_up:"),
    ("not_helpful", "Not helpful", ":material/thumb_down:"),
    ("used", "Used in my reply", ":material/reply:"),
)
ANY = "Any"


@st.cache_data(show_spinner=False, max_entries=8)
def facets(revision: str, _services: Services) -> tuple[list[str], list[str]]:
    """Markets and products present in the knowledge base (recomputed when it changes)."""
    docs = _services.store.documents()
    markets = sorted({d.market.upper() for d in docs if d.market and d.market.upper() != "ALL"})
    products = sorted({d.product for d in docs if d.product and d.product != "all"})
    return markets, products


def _new_contact() -> None:
    st.session_state.pop("agent_conversation", None)
    st.session_state["agent_history"] = []
    st.session_state["agent_history_filters"] = []


def render(services: Services, identity: StaffIdentity) -> None:
    st.title("Agent assist")
    st.caption("Answers from the policies and procedures in the knowledge base, with the exact passage cited.")
    live, queue = st.tabs(["Live contact", handoff_queue.TAB], key="agent_tab")
    with live:
        _live_contact(services)
    with queue:
        handoff_queue.render(services, identity)


def _live_contact(services: Services) -> None:
    history: list[Exchange] = st.session_state.setdefault("agent_history", [])
    # The filters each answer was given under (same order as the history).
    produced: list[tuple[str | None, str | None]] = st.session_state.setdefault("agent_history_filters", [])
    markets, products = facets(services.store.revision(), services)

    with st.sidebar:
        st.subheader("Filters")
        market = st.selectbox("Market", [ANY, *markets], key="agent_market")
        product = st.selectbox("Product", [ANY, *products], key="agent_product")
    st.button(
        "New contact",
        on_click=_new_contact,
        icon=":material/restart_alt:",
        key="agent_new_contact",
        help="Start over for the next customer: clears the questions of this contact.",
    )

    chosen_market = None if market == ANY else market
    filters = Filters(market=chosen_market, product=None if product == ANY else product)

    with st.form("agent_ask", clear_on_submit=True, border=False):
        label = "Follow-up question" if history else "What does the customer need?"
        question = st.text_input(
            label, key="agent_question", placeholder="e.g. Customer disputes a purchase from last week"
        )
        asked = st.form_submit_button("Ask", type="primary", icon=":material/search:")

    current = (filters.market, filters.product)
    if not asked and history and len(produced) == len(history) and produced[-1] != current:
        # The filters changed after an answer: that answer was for other filters, so ask again.
        question, asked = history[-1].answer.question, True

    if asked and question.strip():
        conversation = st.session_state.get("agent_conversation")
        if conversation is None:
            conversation = services.conversations.start("agent", chosen_market)
            st.session_state["agent_conversation"] = conversation
        try:
            with st.spinner("Searching the knowledge base…"):
                exchange = ask_and_log(
                    services,
                    conversation,
                    question,
                    role="agent",
                    market=chosen_market,
                    history=history,
                    filters=filters,
                )
        except QuestionError as exc:
            st.error(f"That question can't be searched: {exc}.")
        else:
            history.append(exchange)
            produced.append(current)

    if not history:
        if not services.store.documents():
            st.info(
                "The knowledge base is empty. A knowledge-base owner can add documents in the Knowledge base workspace."
            )
        return

    latest = history[-1]
    if len(produced) == len(history):
        market, product = produced[-1]
        st.caption(f"Answered for market: {market or 'any'} · product: {product or 'any'}")
    _render_exchange(services, latest, latest=True)
    if len(history) > 1:
        st.divider()
        st.markdown("**Earlier in this contact**")
        for exchange in reversed(history[:-1]):
            with st.expander(exchange.answer.question):
                _render_exchange(services, exchange, latest=False)


def _render_exchange(services: Services, exchange: Exchange, latest: bool) -> None:
    answer = exchange.answer
    if latest:
        st.subheader(answer.question)
    if answer.refused:
        st.warning(answer.text, icon=":material/help:")
    else:
        st.markdown(answer.text)
    for flag in answer.flags:
        st.caption(f":material/info: {flag}")
    if answer.steps and not _steps_in_text(answer.steps, answer.text):
        st.markdown("**Procedure**")
        st.markdown("\n".join(_numbered(i, step) for i, step in enumerate(answer.steps, 1)))
    if answer.citations:
        for citation in answer.citations:
            overdue = _past_review(citation.review_by)
            if overdue:
                st.warning(
                    f"[{citation.number}] {citation.title} was due for review on {citation.review_by}: "
                    "check it is still current before relying on it.",
                    icon=":material/event_busy:",
                )
        st.markdown("**Sources** — open one to read the exact passage")
        render_citations(answer.citations, key=f"agent-{exchange.question_id}")
    if answer.suggested_reply:
        st.text_area(
            "Suggested reply to the customer (edit it, then copy it into your reply)",
            value=answer.suggested_reply,
            height="content",
            key=f"agent_reply_{exchange.question_id}",
        )
    st.caption(answer_caption(answer))
    _feedback(services, exchange)


def _past_review(review_by: str, today: date | None = None) -> bool:
    """Whether a document's ``review_by`` date (ISO) has passed; dates that do not parse are not flagged."""
    try:
        due = date.fromisoformat(review_by.strip()[:10])
    except ValueError:
        return False
    return due < (today or date.today())


def _steps_in_text(steps: list[str], text: str) -> bool:
    """The extractive answer to a procedure question is the steps themselves: don't show them twice."""
    return all(step.strip()[:60] in text for step in steps)


def _numbered(index: int, step: str) -> str:
    """Steps already carry their own numbers ("1. Verify..."); don't number them twice."""
    text = step.strip()
    return text if text[:1].isdigit() else f"{index}. {text}"


def _feedback(services: Services, exchange: Exchange) -> None:
    qid = exchange.question_id
    with st.form(f"agent_feedback_{qid}", clear_on_submit=True):
        comment = st.text_input("Comment (optional)", key=f"agent_comment_{qid}")
        columns = st.columns(len(RATING_BUTTONS))
        pressed = None
        for column, (rating, label, icon) in zip(columns, RATING_BUTTONS, strict=True):
            with column:
                if st.form_submit_button(label, icon=icon, key=f"agent_rate_{rating}_{qid}", width="stretch"):
                    pressed = rating
    if pressed and qid is not None:
        # One rating per answer per contact: pressing another button replaces the earlier one.
        rater = f"agent-contact:{exchange.conversation_id}"
        services.conversations.rate(qid, pressed, rater=rater, comment=comment)  # type: ignore[arg-type]
        exchange.ratings = [pressed]
    if exchange.ratings:
        names = {r: label for r, label, _ in RATING_BUTTONS}
        st.caption("Feedback recorded: " + names[exchange.ratings[-1]] + ". Thank you.")

"""Customer self-service chat: answers from customer-facing articles only, and a person on request.

The assistant is asked with ``role="customer"``, which limits retrieval to customer-audience
documents inside the store query. When it cannot answer it says so; the customer can also ask
for a person at any time. Either way a hand-off record is created with the question, the
transcript and what was searched, and the customer is told what happens next.
"""

from __future__ import annotations

import streamlit as st

from assist.service import QuestionError
from webui.asking import Exchange, ask_and_log
from webui.common import render_sources_for_customer
from webui.services import Services

GREETING = "Hi! Ask me anything about your purchases, payments, returns or your account."
CHOOSE_MARKET = "Choose your country"
# Customers see no paths or server addresses; the details go to the log for the operators.
UNAVAILABLE = "Sorry, the help centre can't answer right now. Please try again in a few minutes."


def _state() -> dict:
    return st.session_state.setdefault("customer", {"conversation": None, "exchanges": [], "handoff": None})


def _restart() -> None:
    st.session_state.pop("customer", None)


def render(services: Services) -> None:
    state = _state()
    markets = _markets(services)
    header, country = st.columns([3, 1], vertical_alignment="bottom")
    with header:
        st.title("Help centre chat")
    with country:
        market = st.selectbox(
            CHOOSE_MARKET, markets, index=None, placeholder="Any country", key="customer_market", disabled=not markets
        )

    with st.chat_message("assistant"):
        st.markdown(GREETING)
    for exchange in state["exchanges"]:
        with st.chat_message("user"):
            st.markdown(exchange.answer.question)
        with st.chat_message("assistant"):
            st.markdown(exchange.answer.text)
            render_sources_for_customer(exchange.answer.citations)

    question = st.chat_input("Type your question", disabled=state["handoff"] is not None, key="customer_input")
    if question and state["handoff"] is None:
        _ask(services, state, question, market)

    if state["handoff"] is not None:
        with st.chat_message("assistant"):
            st.success(state["handoff"], icon=":material/support_agent:")
        st.button("Start a new conversation", on_click=_restart, key="customer_restart")
        return

    last = state["exchanges"][-1].answer if state["exchanges"] else None
    prompt = "Talk to a person" if last is None or not last.refused else "Yes, talk to a person"
    if st.button(
        prompt,
        icon=":material/support_agent:",
        type="primary" if last is not None and last.refused else "secondary",
        key="customer_handoff",
        help="Pass this conversation to our support team.",
    ):
        _hand_off(services, state, market)
        st.rerun()


def _markets(services: Services) -> list[str]:
    """Markets with documents of their own; customers pick theirs so answers follow local rules."""
    codes = {d.market.upper() for d in services.store.documents() if d.audience == "customer"}
    return sorted(codes - {"ALL", ""})


def _ask(services: Services, state: dict, question: str, market: str | None) -> None:
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        placeholder.markdown("…")
        if state["conversation"] is None:
            state["conversation"] = services.conversations.start("customer", market)
        try:
            exchange = ask_and_log(
                services,
                state["conversation"],
                question,
                role="customer",
                market=market,
                history=state["exchanges"],
                stream_into=placeholder,
            )
        except QuestionError as exc:
            placeholder.markdown(f"Sorry, I can't search for that: {exc}.")
            return
        state["exchanges"].append(exchange)
        placeholder.markdown(exchange.answer.text)
        render_sources_for_customer(exchange.answer.citations)


def _hand_off(services: Services, state: dict, market: str | None) -> None:
    """Create the hand-off record from the conversation so far and tell the customer what comes next."""
    exchanges: list[Exchange] = state["exchanges"]
    # "Yes, talk to a person" right after a refusal is about that question; otherwise the button is a
    # general request, and no answer is recorded as its trigger.
    about = len(exchanges) - 1 if exchanges and exchanges[-1].answer.refused else None
    record = services.conversations.hand_off(state["conversation"], exchanges, market=market, about=about)
    state["conversation"] = record.conversation_id
    state["handoff"] = (
        f"I've passed your conversation to our support team (reference **{record.reference}**). "
        f"{services.settings.handoff_next_steps}"
    )

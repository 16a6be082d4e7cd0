"""Customer self-service chat: answers from customer-facing articles only, and a person on request.

The assistant is asked with ``role="customer"``, which limits retrieval to customer-audience
documents inside the store query. When it cannot answer it says so; the customer can also ask
for a person at any time. Either way a hand-off record is created with the question, the
transcript and what was searched, and the customer is told what happens next. Customers of the
chat are not identified, so before passing the conversation on it asks (optionally, with their
consent) for an e-mail address or phone number the team may use for this question.

The conversation id travels in the page address (``?c=…``, an unguessable token): a customer who
reloads or comes back sees their conversation and the real status of their hand-off. Every
answer can be rated (thumbs up or down, with an optional reason; one rating per answer).
Everything shown that came from documents or a model goes through :mod:`webui.safe_markdown`.
"""

from __future__ import annotations

import html

import streamlit as st

from assist.service import QuestionError
from kb.state.conversations import valid_conversation_id
from kb.state.handoffs import Contact, HandoffRecord
from webui.asking import Exchange, ask_and_log
from webui.common import page_style, render_sources_for_customer
from webui.customer_texts import chat_language, text
from webui.safe_markdown import safe_markdown
from webui.services import Services

COUNTRIES = {"SE": "Sweden", "DE": "Germany", "NO": "Norway", "DK": "Denmark", "FI": "Finland", "NL": "Netherlands"}
# Customers see no paths or server addresses; the details go to the log for the operators.
UNAVAILABLE = "Sorry, the help centre can't answer right now. Please try again in a few minutes."
CONVERSATION_PARAM = "c"
FEEDBACK = (("helpful", "Helpful", ":material/thumb_up:"), ("not_helpful", "Not helpful", ":material/thumb_down:"))


def _state() -> dict:
    return st.session_state.setdefault(
        "customer", {"conversation": None, "exchanges": [], "handoff": None, "contact_form": False, "restored": False}
    )


def _restart() -> None:
    st.session_state.pop("customer", None)
    st.query_params.pop(CONVERSATION_PARAM, None)


def render(services: Services) -> None:
    state = _state()
    _restore(services, state)
    settings = services.settings
    markets = _markets(services)
    # The message just typed counts already: the page above the chat input is drawn before it is read.
    typed = st.session_state.get("customer_input") or ""
    asked = [e.answer.question for e in state["exchanges"]] + [state.get("pending") or "", typed]
    lang = state["language"] = chat_language(asked, st.context.locale)
    page_style()
    header, country = st.columns([3, 1], vertical_alignment="bottom")
    with header:
        st.title(f"{settings.brand_name} chat")
    with country:
        market = st.selectbox(
            text("your_country", lang),
            markets,
            index=None,
            format_func=country_name,
            placeholder=text("choose_country", lang),
            key="customer_market",
            disabled=not markets,
        )
    # Screen readers hear that a reply arrived; the region holds fixed words only, never answer text.
    announcer = st.empty()

    with st.chat_message("assistant"):
        st.markdown(_safe(services, text("greeting", lang, settings.customer_greeting)))
    for exchange in state["exchanges"]:
        with st.chat_message("user"):
            st.markdown(_safe(services, exchange.answer.question))
        with st.chat_message("assistant"):
            st.markdown(_safe(services, exchange.answer.text))
            render_sources_for_customer(exchange.answer.citations, services.settings.customer_link_domains)
            _feedback(services, state, exchange)

    handoff: HandoffRecord | None = state["handoff"]
    busy = handoff is not None or state["contact_form"]
    question = st.chat_input(text("type_question", lang), disabled=busy, key="customer_input")
    if question and not busy:
        if markets and market is None:
            state["pending"] = question  # answered once the customer says where they are
        else:
            _ask(services, state, question, market)
    pending = state.get("pending")
    if pending and market is not None:
        state.pop("pending")
        _ask(services, state, pending, market)
    elif pending and not busy:
        _ask_for_market(services, pending, markets, lang)
        _announce(announcer, "Please choose your country.")
        return
    if state["exchanges"]:
        _announce(announcer, f"{settings.brand_name} replied (reply {len(state['exchanges'])}).")

    if handoff is not None:
        _render_handoff(services, state, handoff)
        return
    if state["contact_form"]:
        _contact_form(services, state, market)
        return

    last = state["exchanges"][-1].answer if state["exchanges"] else None
    prompt = text("talk_to_person" if last is None or not last.refused else "yes_talk_to_person", lang)
    if st.button(
        prompt,
        icon=":material/support_agent:",
        type="primary" if last is not None and last.refused else "secondary",
        key="customer_handoff",
        help="Pass this conversation to our support team.",
    ):
        state["contact_form"] = True
        st.rerun()


def country_name(code: str) -> str:
    name = COUNTRIES.get(code)
    return f"{name} ({code})" if name else code


def _ask_for_market(services: Services, question: str, markets: list[str], lang: str) -> None:
    """The first question waits until the customer says which country's rules apply to them."""
    with st.chat_message("user"):
        st.markdown(_safe(services, question))
    with st.chat_message("assistant"):
        st.markdown(text("ask_market", lang))
        for column, code in zip(st.columns(max(len(markets), 1) + 1), markets, strict=False):
            with column:
                st.button(
                    country_name(code),
                    key=f"customer_market_{code}",
                    on_click=st.session_state.__setitem__,
                    args=("customer_market", code),
                )


def _announce(placeholder, text: str) -> None:
    placeholder.markdown(
        f'<div class="kb-sr-only" role="status" aria-live="polite" aria-atomic="true">{html.escape(text)}</div>',
        unsafe_allow_html=True,  # fixed words (and the configured brand, escaped); never answer text
    )


def _safe(services: Services, text: str) -> str:
    return safe_markdown(text, services.settings.customer_link_domains)


def _restore(services: Services, state: dict) -> None:
    """Once per browser session: the conversation named in the address, if there is one."""
    if state["restored"]:
        return
    state["restored"] = True
    conversation_id = st.query_params.get(CONVERSATION_PARAM)
    if state["conversation"] is not None or not valid_conversation_id(conversation_id):
        return
    exchanges, handoff = services.conversations.restore(conversation_id, rater=_rater(conversation_id))
    if not exchanges and handoff is None:
        st.query_params.pop(CONVERSATION_PARAM, None)  # unknown id: start afresh
        return
    record = services.conversations.load(conversation_id)
    if record is not None and record.market and record.market.upper() in _markets(services):
        st.session_state["customer_market"] = record.market.upper()  # the country chosen before
    state["conversation"] = conversation_id
    state["exchanges"] = exchanges
    state["handoff"] = handoff


def _remember(state: dict, conversation_id: str | None) -> None:
    state["conversation"] = conversation_id
    if conversation_id and st.query_params.get(CONVERSATION_PARAM) != conversation_id:
        st.query_params[CONVERSATION_PARAM] = conversation_id


def _rater(conversation_id: str | None) -> str:
    return f"customer:{conversation_id}"


def _markets(services: Services) -> list[str]:
    """Markets with documents of their own; customers pick theirs so answers follow local rules."""
    codes = {d.market.upper() for d in services.store.documents() if d.audience == "customer"}
    return sorted(codes - {"ALL", ""})


def _ask(services: Services, state: dict, question: str, market: str | None) -> None:
    with st.chat_message("user"):
        st.markdown(_safe(services, question))
    with st.chat_message("assistant"):
        placeholder = st.empty()
        placeholder.markdown("…")
        if state["conversation"] is None:
            _remember(state, services.conversations.start("customer", market))
        try:
            exchange = ask_and_log(
                services,
                state["conversation"],
                question,
                role="customer",
                market=market,
                history=state["exchanges"],
                stream_into=placeholder,
                shown=lambda text: _safe(services, text),
            )
        except QuestionError as exc:
            placeholder.markdown(f"Sorry, I can't search for that: {_safe(services, str(exc))}.")
            return
        state["exchanges"].append(exchange)
        _remember(state, exchange.conversation_id or state["conversation"])
        placeholder.markdown(_safe(services, exchange.answer.text))
        render_sources_for_customer(exchange.answer.citations, services.settings.customer_link_domains)
        _feedback(services, state, exchange)


# -- feedback ---------------------------------------------------------------------------------------


def _rate(services: Services, state: dict, exchange: Exchange, rating: str, comment_key: str | None = None) -> None:
    if exchange.question_id is None:
        return
    comment = str(st.session_state.get(comment_key, "")) if comment_key else ""
    # One rating per answer per conversation: the other thumb replaces the first.
    services.conversations.rate(exchange.question_id, rating, rater=_rater(state["conversation"]), comment=comment)  # type: ignore[arg-type]
    exchange.ratings = [rating]
    if comment_key:
        state.setdefault("reasons_sent", set()).add(exchange.question_id)


def _feedback(services: Services, state: dict, exchange: Exchange) -> None:
    qid = exchange.question_id
    if qid is None:
        return
    given = exchange.ratings[-1] if exchange.ratings else None
    columns = st.columns([1, 1, 4])
    for column, (rating, label, icon) in zip(columns, FEEDBACK, strict=False):
        with column:
            st.button(
                label,
                icon=icon,
                key=f"customer_rate_{rating}_{qid}",
                type="primary" if given == rating else "tertiary",
                on_click=_rate,
                args=(services, state, exchange, rating),
            )
    if given is None:
        return
    if qid in state.get("reasons_sent", set()):
        st.caption("Thanks for telling us.")
        return
    st.caption("Thanks for your feedback.")
    with st.form(f"customer_reason_{qid}", border=False, clear_on_submit=True):
        prompt = "What helped? (optional)" if given == "helpful" else "What was wrong or missing? (optional)"
        st.text_input(prompt, key=f"customer_reason_text_{qid}", max_chars=500)
        st.form_submit_button(
            "Send",
            key=f"customer_reason_send_{qid}",
            on_click=_rate,
            args=(services, state, exchange, given, f"customer_reason_text_{qid}"),
        )


# -- hand-off ---------------------------------------------------------------------------------------


def _contact_form(services: Services, state: dict, market: str | None) -> None:
    """Ask how to reach the customer (optional, with consent), then create the hand-off."""
    lang = state.get("language", "en")
    consent_text = text("consent", lang)
    with st.chat_message("assistant"):
        st.markdown(text("contact_ask", lang))
        with st.form("customer_contact", border=False):
            value = st.text_input("E-mail or phone number (optional)", key="customer_contact_value", max_chars=320)
            consent = st.checkbox(consent_text, key="customer_contact_consent")
            send = st.form_submit_button(text("pass_to_person", lang), type="primary", key="customer_contact_send")
        st.button(text("back_to_chat", lang), key="customer_contact_cancel", on_click=_cancel_contact, args=(state,))
    if not send:
        return
    contact = None
    value = value.strip()
    if value:
        if not consent:
            st.error("Tick the box to let us use it, or leave the field empty.")
            return
        kind = "email" if "@" in value else "phone"
        try:
            contact = Contact(kind, value, consent=True, consent_text=consent_text)
        except ValueError:
            what = "an e-mail address" if kind == "email" else "a phone number"
            st.error(f"That doesn't look like {what}. Check it, or leave the field empty.")
            return
    _hand_off(services, state, market, contact)
    st.rerun()


def _cancel_contact(state: dict) -> None:
    state["contact_form"] = False


def _hand_off(services: Services, state: dict, market: str | None, contact: Contact | None) -> None:
    """Create the hand-off record from the conversation so far; the page then says what comes next."""
    exchanges: list[Exchange] = state["exchanges"]
    # "Yes, talk to a person" right after a refusal is about that question; otherwise the button is a
    # general request, and no answer is recorded as its trigger.
    about = len(exchanges) - 1 if exchanges and exchanges[-1].answer.refused else None
    record = services.conversations.hand_off(
        state["conversation"], exchanges, market=market, about=about, contact=contact
    )
    _remember(state, record.conversation_id)
    state["handoff"] = record
    state["contact_form"] = False
    state["just_handed_off"] = True


def _render_handoff(services: Services, state: dict, handoff: HandoffRecord) -> None:
    """What happened to the hand-off, read from the store on every visit (a person may have claimed it)."""
    current = services.conversations.latest_handoff(state["conversation"]) or handoff
    state["handoff"] = current
    with st.chat_message("assistant"):
        if state.get("just_handed_off"):
            st.success(
                f"I've passed your conversation to our support team (reference **{current.reference}**). "
                f"{text('handoff_next_steps', state.get('language', 'en'), services.settings.handoff_next_steps)}",
                icon=":material/support_agent:",
            )
        else:
            st.info(
                f"This conversation was passed to our support team (reference **{current.reference}**).",
                icon=":material/support_agent:",
            )
        st.markdown(f"**Status:** {current.customer_status}")  # from the stored state, nothing more
    st.button(text("new_conversation", state.get("language", "en")), on_click=_restart, key="customer_restart")

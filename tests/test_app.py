"""The Streamlit apps, driven through Streamlit's AppTest against a real, small ingested KB.

The staff app (``app_streamlit.py``) is signed in to with an account created in the test's own
state store; the customer app (``app_customer.py``) serves the chat alone. Every test gets fresh
cached resources (``st.cache_resource`` is process-wide) and its own state store; the ingested
knowledge base is shared by the module to keep it fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ingest.pipeline import ingest
from kb.settings import Settings
from kb.state.store import StateStore
from kb.store import KnowledgeStore
from tests.support.app_kb import DOCS, write_kb
from tests.support.chat_server import ChatServer
from webui import evaluation

APP = str(Path(__file__).resolve().parents[1] / "app_streamlit.py")
CUSTOMER_APP = str(Path(__file__).resolve().parents[1] / "app_customer.py")
TIMEOUT = 120
PASSWORD = "correct horse battery"
USERS = {"owner": "olive", "agent": "adam"}
SIGN_IN = "FormSubmitter:staff_signin-Sign in"


@pytest.fixture(scope="module")
def kb_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("app-kb")
    data = root / "data"
    report = ingest([write_kb(root / "docs")], KnowledgeStore(Settings(data_dir=data)))
    assert report.ok and len(report.added) == len(DOCS)
    return data


@pytest.fixture
def db(tmp_path: Path) -> str:
    """The app's state store for this test (a SQLite URL)."""
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


def _state(url: str) -> StateStore:
    return StateStore(url, Settings())


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, db: str) -> AppTest:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(kb_data_dir))
    monkeypatch.setenv("KBASSIST_STATE_URL", db)
    st.cache_resource.clear()
    st.cache_data.clear()
    evaluation.forget_jobs()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    yield at
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def customer_app(monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, db: str) -> AppTest:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(kb_data_dir))
    monkeypatch.setenv("KBASSIST_STATE_URL", db)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield AppTest.from_file(CUSTOMER_APP, default_timeout=TIMEOUT)
    st.cache_resource.clear()
    st.cache_data.clear()


def _account(role: str) -> str:
    """An account of ``role`` in the state store the app under test uses (created once)."""
    state = _state(os.environ["KBASSIST_STATE_URL"])
    name = USERS[role]
    if name not in {a.username for a in state.accounts.list()}:
        state.accounts.add(name, PASSWORD, role, actor="cli:test")
    return name


def _sign_in(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    if not at.text_input:  # not run yet: the first run draws the sign-in form
        at.run()
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password)
    at.button(key=SIGN_IN).click().run()
    assert not at.exception, at.exception
    return at


def _open(at: AppTest, workspace: str, role: str = "owner") -> AppTest:
    """The staff app signed in as an account of ``role``, asked for ``workspace`` by URL."""
    at.query_params["workspace"] = workspace
    return _sign_in(at, _account(role))


def _open_chat(at: AppTest, market: str | None = "SE") -> AppTest:
    """The customer chat, with the customer's country chosen (``None``: not chosen yet)."""
    at.run()
    assert not at.exception, at.exception
    if market is not None:
        at.selectbox(key="customer_market").select(market).run()
    return at


def _titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# -- agent assist ---------------------------------------------------------------------------------


def _agent_ask(at: AppTest, question: str) -> AppTest:
    at.text_input(key="agent_question").input(question)
    at.button(key="FormSubmitter:agent_ask-Ask").click().run()
    assert not at.exception, at.exception
    return at


def test_agent_gets_cited_procedure_with_passage_reply_and_feedback(app: AppTest, db: str) -> None:
    at = _agent_ask(_open(app, "agent"), "Customer wants to dispute a purchase, what is the procedure?")
    text = _markdown(at)
    assert "Pause the invoice for 21 days" in text and "[1]" in text
    labels = [e.label for e in at.expander]
    assert any(label.startswith("[1] Handling a dispute — Procedure · en · v2 · review by 2020-01-01") for label in labels)
    assert any("Open the dispute case" in m.value for e in at.expander for m in e.markdown)
    assert any("Document `disputes`" in c.value for c in at.caption)
    # The suggested reply quotes customer-facing documents only, as plain text the agent may edit.
    assert not at.code
    for reply in at.text_area:
        assert "Pause the invoice" not in reply.value
    # The cited procedure is past its review date, and the page says so.
    assert any(
        "Handling a dispute was due for review on 2020-01-01" in w.value and "still current" in w.value
        for w in at.warning
    )

    at.text_input(key="agent_comment_1").input("Used it, card 4111 1111 1111 1111 was mentioned")
    at.button(key="agent_rate_used_1").click().run()
    assert any("Feedback recorded: Used in my reply" in c.value for c in at.caption)
    summary = _state(db).analytics.feedback_summary()
    assert summary.counts == {"used": 1}
    assert summary.comments[0][1] == "Used it, card [card] was mentioned"

    # One rating per answer: "not helpful" replaces "used in my reply", it is not added to it.
    at.button(key="agent_rate_not_helpful_1").click().run()
    assert any("Feedback recorded: Not helpful." in c.value for c in at.caption)
    assert _state(db).analytics.feedback_summary().counts == {"not_helpful": 1}


def test_agent_market_filter_narrows_sources_and_the_suggested_reply(app: AppTest) -> None:
    at = _open(app, "agent")
    at.selectbox(key="agent_market").select("DE").run()
    at = _agent_ask(at, "How many days does the customer have to return an item?")
    assert all("Returns in Sweden" not in e.label for e in at.expander)
    (reply,) = at.text_area  # the editable reply for the customer, quoted from the German article
    assert reply.label.startswith("Suggested reply to the customer")
    assert "statutory withdrawal right" in reply.value and "30 days" not in reply.value
    assert not at.code
    overdue = [w.value for w in at.warning if "due for review" in w.value]
    assert not [w for w in overdue if "Returns in Germany" in w]  # reviewed until 2030
    assert all("Handling a dispute" in w for w in overdue)  # the one past its date, if it is cited

    assert any(c.value == "Answered for market: DE · product: any" for c in at.caption)
    # Changing the filter asks the same question again under it; the German answer moves to
    # "Earlier in this contact".
    at.selectbox(key="agent_market").select("SE").run()
    assert not at.exception, at.exception
    assert any(c.value == "Answered for market: SE · product: any" for c in at.caption)
    assert [e.label for e in at.expander if e.label.startswith("How many days")] == [
        "How many days does the customer have to return an item?"
    ]
    reply = at.text_area[0]  # the latest answer's; the earlier one sits under "Earlier in this contact"
    assert "30 days of delivery" in reply.value and "withdrawal" not in reply.value
    reply.input("Hello! You have 30 days.").run()  # the agent edits it before copying
    assert at.text_area[0].value == "Hello! You have 30 days."


def test_agent_follow_up_is_searched_with_the_conversation(app: AppTest, db: str) -> None:
    at = _open(app, "agent")
    _agent_ask(at, "Customer wants to dispute a purchase, what is the procedure?")
    at = _agent_ask(at, "and how long does the store have?")
    assert "14 days to reply" in _markdown(at)
    assert any(e.label == "Customer wants to dispute a purchase, what is the procedure?" for e in at.expander)
    logged = _state(db).conversations.logged_questions()
    assert len(logged) == 2 and logged[0].conversation_id == logged[1].conversation_id
    assert logged[1].search_query.startswith("Customer wants to dispute a purchase")  # searched with the earlier turn

    new_contact = at.button(key="agent_new_contact")
    assert new_contact.label == "New contact" and new_contact not in at.sidebar.button  # in the main area
    new_contact.click().run()
    assert "14 days to reply" not in _markdown(at)


def test_agent_is_told_when_no_policy_covers_it(app: AppTest) -> None:
    at = _agent_ask(_open(app, "agent"), "Can the customer pay the invoice in bitcoin on Mars?")
    assert any("No policy in the knowledge base covers this question" in w.value for w in at.warning)
    assert any("Follow the escalation path: When no policy covers a case" in w.value for w in at.warning)
    assert any(e.label.startswith("[1] When no policy covers a case — Escalation path") for e in at.expander)


# -- hand-off queue ---------------------------------------------------------------------------------


def _queued_handoffs(db: str) -> tuple[int, int]:
    """Two hand-offs in the store: a general request, then a refusal with the customer's e-mail."""
    from kb.state.handoffs import Contact

    state = _state(db)
    ids = []
    for question, reason, contact in (
        ("", "customer_asked", None),
        (
            "Can I pay with gold bars? Mail a@b.se",
            "low_confidence",
            Contact("email", "jo@example.com", consent=True, consent_text="We'll use this only to answer this question."),
        ),
    ):
        conversation = state.conversations.start("customer", "SE")
        state.conversations.log_question(
            conversation, role="customer", market="SE", question=question or "How do returns work?",
            search_query="gold bars", answer="I'm sorry, I can't answer that.", refused=bool(question),
            confidence=0.1, doc_ids=[], latency_ms=1.0, generator="extractive",
        )  # fmt: skip
        record = state.handoffs.create(
            conversation, question=question, summary="Customer asked", reason=reason, market="SE",
            language="en", searched={"query": "gold bars", "documents": []}, contact=contact,
        )  # fmt: skip
        ids.append(record.id)
    return ids[0], ids[1]


def _queue_actions(db: str) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.target) for e in reversed(_state(db).audit_log.entries(action="handoff.*"))]


def test_agent_sees_the_queue_newest_first_and_works_a_handoff_to_resolved(app: AppTest, db: str) -> None:
    general, refused = _queued_handoffs(db)
    at = _open(app, "agent", role="agent")
    assert at.tabs[1].label == "Hand-off queue" and at.tabs[1].caption[0].value == "2 open · 0 being handled"
    table = at.tabs[1].dataframe[0].value
    assert list(table["Reference"]) == [f"H-{refused}", f"H-{general}"]  # newest first
    assert list(table["Reason"]) == ["Low confidence", "Customer asked for a person"]
    assert table["Question"][0] == "Can I pay with gold bars? Mail [email]"
    assert table["Contact"][0] == "E-mail: jo@example.com" and table["Contact"][1] == ""
    assert list(table["Market"]) == ["SE", "SE"] and list(table["Language"]) == ["en", "en"]

    at.selectbox(key="agent_handoff_pick").select(f"H-{refused}").run()
    assert not at.exception, at.exception
    assert any(s.value == f"H-{refused} — Low confidence" for s in at.header)
    transcript = [m.markdown[0].value for m in at.tabs[1].chat_message]
    assert transcript == ["Can I pay with gold bars? Mail [email]", "I'm sorry, I can't answer that."]
    assert any("Customer contact** — E-mail: jo@example.com" in m.value for m in at.markdown)
    assert any(m.value == "**Status:** Open" for m in at.markdown)

    at.button(key=f"agent_handoff_claim_{refused}").click().run()
    assert any(m.value == "**Status:** Being handled by adam" for m in at.markdown)
    assert _state(db).handoffs.get(refused).claimed_by == "adam"
    assert at.tabs[1].caption[0].value == "1 open · 1 being handled"

    at.text_area(key=f"agent_handoff_note_text_{refused}").input("Called back, card 4111 1111 1111 1111")
    at.button(key=f"agent_handoff_note_add_{refused}").click().run()
    assert not at.exception, at.exception
    assert [n.text for n in _state(db).handoffs.get(refused).notes] == ["Called back, card [card]"]
    assert any(t.value == "Called back, card [card]" for t in at.text)

    at.text_input(key=f"agent_handoff_outcome_{refused}").input("Explained the payment options")
    at.button(key=f"agent_handoff_resolve_go_{refused}").click().run()
    assert not at.exception, at.exception
    resolved = _state(db).handoffs.get(refused)
    assert resolved.status == "resolved" and resolved.resolved_by == "adam"
    assert [n.text for n in resolved.notes][-1] == "Explained the payment options"
    assert list(at.tabs[1].dataframe[0].value["Reference"]) == [f"H-{general}"]  # off the active queue
    assert at.tabs[1].caption[0].value == "1 open · 0 being handled"

    target = f"H-{refused}"
    assert _queue_actions(db) == [
        ("account:adam", "handoff.view", target),
        ("account:adam", "handoff.claim", target),
        ("account:adam", "handoff.note", target),
        ("account:adam", "handoff.resolve", target),
    ]


def test_agent_cannot_resolve_a_handoff_another_agent_claimed(app: AppTest, db: str) -> None:
    _, refused = _queued_handoffs(db)
    _account("owner")
    _state(db).handoffs.claim(refused, "olive")
    at = _open(app, "agent", role="agent")
    at.selectbox(key="agent_handoff_pick").select(f"H-{refused}").run()
    assert any(m.value == "**Status:** Being handled by olive" for m in at.markdown)
    assert any("olive is handling" in c.value for c in at.caption)
    keys = {b.key for b in at.button}
    assert f"agent_handoff_claim_{refused}" not in keys and f"agent_handoff_resolve_go_{refused}" not in keys


def test_agent_queue_is_empty_without_handoffs(app: AppTest) -> None:
    at = _open(app, "agent", role="agent")
    assert at.tabs[1].caption[0].value == "0 open · 0 being handled"
    assert any("No hand-offs here" in i.value for i in at.info)


# -- customer chat ------------------------------------------------------------------------------


def _chat(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="customer_input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def _pass_to_a_person(at: AppTest, contact: str = "", consent: bool = False) -> AppTest:
    """The contact step of "talk to a person": optional e-mail or phone, with consent."""
    if contact:
        at.text_input(key="customer_contact_value").input(contact)
    if consent:
        at.checkbox(key="customer_contact_consent").check()
    at.button(key="customer_contact_send").click().run()
    assert not at.exception, at.exception
    return at


def test_customer_is_asked_for_their_country_before_a_market_dependent_answer(customer_app: AppTest) -> None:
    at = _open_chat(customer_app, market=None)
    assert at.title[0].value == "Help centre chat"
    assert at.chat_message[0].markdown[0].value.startswith("Hi! Ask me anything")
    at = _chat(at, "How long do I have to return an item?")
    # No answer under some market's rules: the question waits and the chat asks where the customer is.
    assert "Which country are you in?" in at.chat_message[-1].markdown[0].value
    assert not at.expander and "days" not in _markdown(at)
    assert {b.label for b in at.button if (b.key or "").startswith("customer_market_")} == {
        "Germany (DE)",
        "Sweden (SE)",
    }
    assert any('aria-live="polite"' in m.value and "choose your country" in m.value for m in at.markdown)
    at.button(key="customer_market_DE").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="customer_market").value == "DE"
    assert "14 days" in at.chat_message[-1].markdown[0].value  # Germany's rule, not Sweden's
    assert any(e.label.startswith("1. Returns in Germany") for e in at.expander)
    live = [m.value for m in at.markdown if 'aria-live="polite"' in m.value]
    assert live == [
        '<div class="kb-sr-only" role="status" aria-live="polite" aria-atomic="true">'
        "Help centre replied (reply 1).</div>"
    ]


def test_customer_chat_speaks_the_customers_language(customer_app: AppTest) -> None:
    at = _open_chat(customer_app, market=None)
    at = _chat(at, "Wie lange habe ich Zeit, um etwas zurückzuschicken?")
    assert "In welchem Land sind Sie?" in at.chat_message[-1].markdown[0].value
    assert at.selectbox(key="customer_market").label == "Ihr Land"
    at.button(key="customer_market_DE").click().run()
    assert not at.exception, at.exception
    assert at.button(key="customer_handoff").label.endswith("mit einer Person sprechen")
    assert at.chat_input(key="customer_input").placeholder == "Ihre Frage"


def test_customer_chat_words_come_from_the_settings(customer_app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_BRAND_NAME", "Acme Pay")
    monkeypatch.setenv("KBASSIST_CUSTOMER_GREETING", "Welcome to Acme Pay support.")
    at = _open_chat(customer_app)
    assert at.title[0].value == "Acme Pay chat"
    assert at.chat_message[0].markdown[0].value == "Welcome to Acme Pay support."


def test_customer_gets_an_answer_with_readable_sources(customer_app: AppTest) -> None:
    at = _open_chat(customer_app)
    at = _chat(at, "How long do I have to return an item?")
    user, assistant = at.chat_message[-2], at.chat_message[-1]
    assert user.name == "user" and user.markdown[0].value == "How long do I have to return an item?"
    assert assistant.name == "assistant" and "30 days" in assistant.markdown[0].value
    assert any(e.label.startswith("1. Returns in Sweden — Return window") for e in at.expander)
    assert at.button(key="customer_handoff").label == "Talk to a person"


def test_customer_answer_is_streamed_from_the_configured_model(
    customer_app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ChatServer() as server:
        monkeypatch.setenv("KBASSIST_LLM_BASE_URL", server.url)
        monkeypatch.setenv("KBASSIST_LLM_API_KEY", "test-key")
        at = _open_chat(customer_app)
        at = _chat(at, "How long do I have to return an item?")
        answers = [b for b in server.requests if not b["messages"][0]["content"].startswith("You judge")]
    assert answers and answers[-1]["stream"] is True
    text = at.chat_message[-1].markdown[0].value
    # The test model quotes passage 1, then adds a claim citing a passage that does not exist ([9]):
    # the words are the model's, and only the citation that points at a real passage is kept.
    assert text == "You can return an item within 30 days of delivery. [1] The fee is waived on Sundays."
    assert any(e.label.startswith("1. Returns in Sweden — Return window") for e in at.expander)


def test_customer_cannot_read_agent_or_internal_documents(customer_app: AppTest) -> None:
    at = _chat(_open_chat(customer_app), "What purchase amount triggers a manual fraud review?")
    answer = at.chat_message[-1].markdown[0].value
    assert "9500" not in answer and "FRX-17" not in answer
    hidden = ("Fraud review", "Handling a dispute", "When no policy covers a case")
    assert all(title not in e.label for e in at.expander for title in hidden)


def test_customer_refusal_offers_a_person_and_the_handoff_is_recorded(customer_app: AppTest, db: str) -> None:
    at = _open_chat(customer_app)
    _chat(at, "How long do I have to return an item?")
    at = _chat(at, "Can I pay with bitcoin on Mars? Mail me at jo@example.com")
    assert "talk to a person" in at.chat_message[-1].markdown[0].value
    button = at.button(key="customer_handoff")
    assert button.label == "Yes, talk to a person"

    button.click().run()
    assert not at.exception, at.exception
    assert not _state(db).handoffs.list()  # first the chat asks how to reach the customer
    at = _pass_to_a_person(at)
    (handoff,) = _state(db).handoffs.list()
    assert any(f"reference **H-{handoff.id}**" in s.value and "contact you" in s.value for s in at.success)
    assert handoff.reason == "low_confidence" and handoff.market == "SE" and handoff.status == "open"
    assert handoff.question == "Can I pay with bitcoin on Mars? Mail me at [email]"
    assert handoff.question_id == _state(db).conversations.logged_questions()[-1].id  # the refused question
    assert [t["role"] for t in handoff.transcript] == ["user", "assistant", "user", "assistant"]
    assert handoff.searched["role"] == "customer" and "query" in handoff.searched
    assert at.chat_input(key="customer_input").disabled  # the conversation now belongs to a person


def test_customer_can_ask_for_a_person_after_an_answer(customer_app: AppTest, db: str) -> None:
    at = _chat(_open_chat(customer_app), "How long do I have to return an item in Sweden?")
    at.button(key="customer_handoff").click().run()
    _pass_to_a_person(at)
    (handoff,) = _state(db).handoffs.list()
    # The button after an answer is a general request: no answer is recorded as its trigger, and what was
    # searched last is kept as context.
    assert handoff.reason == "customer_asked" and handoff.question == "" and handoff.question_id is None
    assert handoff.searched["documents"] == ["returns-se"]
    (day,) = _state(db).analytics.deflection_by_day()
    assert (day.answered, day.deflected, day.false_deflections) == (1, 0, 1)


def _refused_then_person(at: AppTest) -> AppTest:
    at = _chat(_open_chat(at), "Can I pay with bitcoin on Mars?")
    at.button(key="customer_handoff").click().run()
    return at


def test_customer_leaves_a_contact_only_with_consent_and_it_is_stored_for_the_agent(
    customer_app: AppTest, db: str
) -> None:
    at = _refused_then_person(customer_app)
    assert any("how can our team reach you" in m.value for m in at.markdown)
    assert "We'll use this only to answer this question" in at.checkbox(key="customer_contact_consent").label

    at = _pass_to_a_person(at, contact="jo@example.com")  # no consent ticked
    assert any("Tick the box" in e.value for e in at.error) and not _state(db).handoffs.list()
    at = _pass_to_a_person(at, contact="not a number", consent=True)
    assert any("doesn't look like a phone number" in e.value for e in at.error) and not _state(db).handoffs.list()
    at = _pass_to_a_person(at, contact="jo@example.com", consent=True)

    (listed,) = _state(db).handoffs.list()
    assert listed.contact is None  # not in ordinary reads
    stored = _state(db).handoffs.get(listed.id, include_contact=True)
    assert stored.contact is not None and (stored.contact.kind, stored.contact.value) == ("email", "jo@example.com")
    assert stored.contact.consent_text.endswith("We'll use this only to answer this question.")
    assert all("jo@example.com" not in t["content"] for t in stored.transcript)
    assert any(f"**H-{listed.id}**" in s.value for s in at.success)
    assert any(m.value == "**Status:** waiting for a person" for m in at.markdown)


def test_customer_may_pass_on_without_a_contact_or_go_back_to_the_chat(customer_app: AppTest, db: str) -> None:
    at = _refused_then_person(customer_app)
    assert at.chat_input(key="customer_input").disabled
    at.button(key="customer_contact_cancel").click().run()
    assert not at.chat_input(key="customer_input").disabled and not _state(db).handoffs.list()
    at.button(key="customer_handoff").click().run()
    _pass_to_a_person(at)
    (handoff,) = _state(db).handoffs.list()
    assert _state(db).handoffs.get(handoff.id, include_contact=True).contact is None


def _come_back(monkeypatch: pytest.MonkeyPatch, conversation: str) -> AppTest:
    """A new browser session opening the chat's address again (the id is in ``?c=``)."""
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(CUSTOMER_APP, default_timeout=TIMEOUT)
    at.query_params["c"] = conversation
    return _open_chat(at, market=None)  # the country chosen before comes back with the conversation


def test_customer_coming_back_sees_the_conversation_and_the_real_status_of_the_handoff(
    customer_app: AppTest, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _pass_to_a_person(_refused_then_person(customer_app))
    conversation = at.query_params["c"]
    (handoff,) = _state(db).handoffs.list()
    assert handoff.conversation_id == conversation

    back = _come_back(monkeypatch, conversation)
    assert back.chat_message[1].markdown[0].value == "Can I pay with bitcoin on Mars?"
    assert any(f"**H-{handoff.id}**" in i.value for i in back.info) and not back.success
    assert any(m.value == "**Status:** waiting for a person" for m in back.markdown)
    assert back.chat_input(key="customer_input").disabled
    assert back.selectbox(key="customer_market").value == "SE"

    state = _state(db)
    state.accounts.add("adam", PASSWORD, "agent", actor="cli:test")
    state.handoffs.claim(handoff.id, "adam")
    assert any(m.value == "**Status:** a person is looking at it" for m in _come_back(monkeypatch, conversation).markdown)
    state.handoffs.resolve(handoff.id, "adam")
    back = _come_back(monkeypatch, conversation)
    assert any(m.value == "**Status:** resolved" for m in back.markdown)
    back.button(key="customer_restart").click().run()
    assert len(back.chat_message) == 1 and "c" not in back.query_params  # a new conversation, a clean address
    assert not back.chat_input(key="customer_input").disabled

    # An id that is not a conversation opens an empty chat, and the address forgets it.
    stranger = _come_back(monkeypatch, "A" * 32)
    assert len(stranger.chat_message) == 1 and "c" not in stranger.query_params


def test_customer_rates_an_answer_once_and_may_say_why(customer_app: AppTest, db: str) -> None:
    at = _chat(_open_chat(customer_app), "How long do I have to return an item in Sweden?")
    (question,) = _state(db).conversations.logged_questions()
    at.button(key=f"customer_rate_helpful_{question.id}").click().run()
    assert _state(db).analytics.feedback_summary().counts == {"helpful": 1}
    assert at.button(key=f"customer_rate_helpful_{question.id}").proto.type == "primary"

    # The other thumb replaces the first: one rating per answer.
    at.button(key=f"customer_rate_not_helpful_{question.id}").click().run()
    assert _state(db).analytics.feedback_summary().counts == {"not_helpful": 1}
    at.text_input(key=f"customer_reason_text_{question.id}").input("Wrong country, call me on +46 70 123 45 67")
    at.button(key=f"customer_reason_send_{question.id}").click().run()
    assert not at.exception, at.exception
    summary = _state(db).analytics.feedback_summary()
    assert summary.counts == {"not_helpful": 1}
    assert summary.comments[0][1] == "Wrong country, call me on [phone]"
    assert any(c.value == "Thanks for telling us." for c in at.caption)


def test_customer_chat_renders_no_images_and_only_allowed_links(
    customer_app: AppTest, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KBASSIST_CUSTOMER_LINK_DOMAINS", "example.com")
    state = _state(db)
    conversation = state.conversations.start("customer", "SE")
    passage = "Pack it. ![pixel](https://track.evil.test/p.gif) See [form](https://help.example.com/f). <b>x</b>"
    state.conversations.log_question(
        conversation, role="customer", market="SE", question="How do I return it?", search_query="return",
        answer="Read [our page](https://help.example.com/r) or [this](https://evil.test/r) ![](https://evil.test/p)",
        refused=False, confidence=0.9, doc_ids=["returns-se"], latency_ms=1.0, generator="extractive",
        citations=[{"number": 1, "chunk_id": "c1", "doc_id": "returns-se", "title": "Returns", "section": "Returns",
                    "version": "1", "review_by": "", "passage": passage}],
    )  # fmt: skip
    at = _come_back(monkeypatch, conversation)
    answer = at.chat_message[-1].markdown[0].value
    assert answer.strip() == "Read [our page](<https://help.example.com/r>) or this"
    shown = "\n".join(m.value for e in at.expander for m in e.markdown)
    assert "![" not in shown and "evil.test" not in shown and "Pack it. pixel See" in shown  # alt text only
    assert "[form](<https://help.example.com/f>)" in shown and "&lt;b>" in shown


def test_customer_app_shows_only_the_chat_and_ignores_the_workspace_parameter(customer_app: AppTest, db: str) -> None:
    _account("owner")  # staff accounts exist; the customer app offers no way to them all the same
    for requested in ("owner", "agent", "customer"):
        customer_app.query_params["workspace"] = requested
        at = _open_chat(customer_app)
        assert _titles(at) == ["Help centre chat"]
        assert not at.radio and not at.sidebar.button and not at.text_input  # no navigation, no sign-in form
        assert not at.get("file_uploader")
        assert not [b for b in at.button if (b.key or "").startswith(("owner_", "agent_", "staff_"))]
        assert at.chat_input(key="customer_input") is not None


def test_staff_app_does_not_serve_the_customer_chat(app: AppTest) -> None:
    _account("owner")
    app.query_params["workspace"] = "customer"
    app.run()
    assert _titles(app) == ["Sign in"] and not app.chat_input  # anonymous visitors get the sign-in form only
    at = _sign_in(app, USERS["owner"])
    assert _titles(at) == ["Agent assist"]  # an unknown workspace opens the first one the account may open
    assert at.radio(key="workspace").options == ["Agent assist", "Knowledge base"]
    assert not at.chat_input


# -- staff sign-in --------------------------------------------------------------------------------


def _nothing_of_the_workspaces(at: AppTest) -> bool:
    keys = {w.key for w in (*at.text_input, *at.button, *at.selectbox) if w.key}
    return (
        not at.radio
        and not at.get("file_uploader")
        and not at.chat_input
        and not [k for k in keys if k.startswith(("agent_", "owner_", "customer_"))]
        and not {"Agent assist", "Knowledge base", "Help centre chat"} & set(_titles(at))
        and not at.metric
        and not at.dataframe
    )


def test_without_accounts_the_staff_app_says_how_to_create_one(app: AppTest) -> None:
    for workspace in ("owner", "agent"):
        app.query_params["workspace"] = workspace
        app.run()
        assert not app.exception, app.exception
        assert _titles(app) == ["Sign in"] and _nothing_of_the_workspaces(app)
        (info,) = app.info
        assert "kbassist users add NAME --role owner" in info.value and "no default credentials" in info.value
        assert not app.text_input  # no form to try names on before an account exists


def test_nothing_of_the_staff_app_renders_before_sign_in(app: AppTest) -> None:
    _account("owner")
    for workspace in ("owner", "agent", "customer", ""):
        app.query_params["workspace"] = workspace
        app.run()
        assert not app.exception, app.exception
        assert _titles(app) == ["Sign in"] and _nothing_of_the_workspaces(app)
        assert [t.key for t in app.text_input] == ["signin_username", "signin_password"]
        assert app.text_input(key="signin_password").proto.type == app.text_input(key="signin_password").proto.PASSWORD


def test_wrong_password_or_unknown_name_gets_one_message_and_no_workspace(app: AppTest, db: str) -> None:
    name = _account("owner")
    app.query_params["workspace"] = "owner"
    shown = []
    for username, password in ((name, "not the password at all"), ("nobody", PASSWORD)):
        at = _sign_in(app, username, password)
        (error,) = at.error
        shown.append(error.value)
        assert _titles(at) == ["Sign in"] and _nothing_of_the_workspaces(at)
        assert "signin_username" in {t.key for t in at.text_input}
    assert shown == ["Wrong user name or password."] * 2  # the same words: neither says which was wrong
    failures = _state(db).audit_log.entries(action="signin.failure")
    assert [(e.target, e.details["reason"]) for e in failures] == [("nobody", "unknown_user"), (name, "wrong_password")]


def test_owner_signs_in_sees_both_workspaces_and_the_sign_in_is_audited_once(app: AppTest, db: str) -> None:
    at = _open(app, "owner")
    assert not at.error and _titles(at) == ["Knowledge base"]
    assert at.radio(key="workspace").options == ["Agent assist", "Knowledge base"]
    assert any("Signed in as **olive** (owner)" in c.value for c in at.sidebar.caption)
    at.radio(key="workspace").set_value("agent").run()
    assert _titles(at) == ["Agent assist"] and at.query_params["workspace"] == "agent"
    (entry,) = _state(db).audit_log.entries(action="signin.*")
    assert (entry.action, entry.actor, entry.target) == ("signin.success", "account:olive", "olive")


def test_agent_account_cannot_open_the_owner_workspace(app: AppTest) -> None:
    at = _open(app, "owner", role="agent")  # asked for by URL
    assert _titles(at) == ["Agent assist"] and not at.radio
    assert not at.get("file_uploader") and not [b for b in at.button if b.key and b.key.startswith("owner_")]
    assert at.query_params["workspace"] == "agent"
    at.query_params["workspace"] = "owner"  # and again, tampered with after signing in
    at.session_state["workspace"] = "owner"
    at.run()
    assert not at.exception, at.exception
    assert _titles(at) == ["Agent assist"] and not at.get("file_uploader")


def test_sign_out_ends_the_session_in_the_store(app: AppTest, db: str) -> None:
    at = _agent_ask(_open(app, "agent", role="agent"), "Customer wants to dispute a purchase, what is the procedure?")
    token = at.session_state["staff_token"]
    assert _state(db).accounts.validate_session(token) is not None
    at.sidebar.button(key="staff_signout").click().run()
    assert not at.exception, at.exception
    assert _titles(at) == ["Sign in"] and _nothing_of_the_workspaces(at)
    assert any("You are signed out" in s.value for s in at.success)
    assert "Pause the invoice" not in _markdown(at)
    assert _state(db).accounts.validate_session(token) is None  # the token itself is dead, not just forgotten
    assert [e.action for e in _state(db).audit_log.entries(action="signout")] == ["signout"]

    # A session ended elsewhere (here: the password reset from the CLI) ends on the next click.
    at = _sign_in(at, USERS["agent"])
    assert _titles(at) == ["Agent assist"]
    _state(db).accounts.reset_password(USERS["agent"], PASSWORD + "!", actor="cli:test")
    at.run()
    assert _titles(at) == ["Sign in"] and _nothing_of_the_workspaces(at)


def test_repeated_failures_back_off_then_lock_the_account(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_SIGNIN_BACKOFF_AFTER", "2")
    monkeypatch.setenv("KBASSIST_SIGNIN_BACKOFF_S", "0")  # the back-off is counted, but does not make the test wait
    monkeypatch.setenv("KBASSIST_SIGNIN_LOCKOUT_AFTER", "3")
    monkeypatch.setenv("KBASSIST_SIGNIN_LOCKOUT_MINUTES", "10")
    name = _account("owner")
    for _ in range(3):
        at = _sign_in(app, name, "not the password at all")
        assert [e.value for e in at.error] == ["Wrong user name or password."]
    at = _sign_in(app, name)  # the right password, too late
    assert [e.value for e in at.error] == ["Too many failed sign-ins. Try again in 10 minutes."]
    assert _titles(at) == ["Sign in"] and _nothing_of_the_workspaces(at)


def test_back_off_says_how_long_to_wait(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_SIGNIN_BACKOFF_AFTER", "2")
    monkeypatch.setenv("KBASSIST_SIGNIN_BACKOFF_S", "300")
    name = _account("owner")
    for _ in range(2):
        _sign_in(app, name, "not the password at all")
    at = _sign_in(app, name)
    assert [e.value for e in at.error] == ["Too many failed sign-ins. Try again in 5 minutes."]
    assert _titles(at) == ["Sign in"] and _nothing_of_the_workspaces(at)


# -- knowledge-base owner -----------------------------------------------------------------------


def test_owner_sees_stats_stale_documents_and_feedback_analytics(app: AppTest, db: str) -> None:
    log = _state(db).conversations
    conversation = log.start("customer", "SE")
    for refused, text in (
        (True, "Can I pay with bitcoin?"),
        (True, "can I pay with Bitcoin"),
        (False, "Return window?"),
    ):
        qid = log.log_question(
            conversation, role="customer", market="SE", question=text, search_query=text, answer="a",
            refused=refused, confidence=0.5, doc_ids=[], latency_ms=1.0, generator="extractive",
        )  # fmt: skip
    log.rate(qid, "helpful", rater="customer")
    # A hand-off the help desk never received (nothing listens on the discard port) is shown to the owner.
    desk = StateStore(db, Settings(handoff_webhook_url="http://127.0.0.1:9/hook", handoff_webhook_secret="s",
                                   handoff_webhook_max_attempts=1))  # fmt: skip
    desk.handoffs.create(log.start("customer", "SE"), question="Can I pay with bitcoin?", summary="", searched={},
                         reason="low_confidence", market="SE")  # fmt: skip
    assert desk.outbox.deliver_due().failed == 1
    at = _open(app, "owner")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Documents"] == str(len(DOCS)) and metrics["Past review date"] == "1"
    assert metrics["Helpful rate"] == "100%" and metrics["Deflection"] == "33%" and metrics["False deflection"] == "0%"
    frames = [df.value for df in at.dataframe]
    assert any("disputes" in set(f.get("id", [])) and "Disputes team" in set(f.get("owner", [])) for f in frames)
    unanswered = next(f for f in frames if "times asked" in f.columns)
    assert unanswered.iloc[0]["times asked"] == 2
    undelivered = next(f for f in frames if "last error" in f.columns)
    assert list(undelivered["ref"]) == ["H-1"] and undelivered["attempts"][0] == 1
    queue = next(f for f in frames if "reason" in f.columns)
    assert list(queue["status"]) == ["open"] and list(queue["reason"]) == ["low_confidence"]


def test_owner_ingests_a_folder_with_per_file_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: str) -> None:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv("KBASSIST_STATE_URL", db)
    st.cache_resource.clear()
    folder = tmp_path / "new-docs"
    folder.mkdir()
    (folder / "fees.md").write_text(
        "---\ntitle: Late fees\naudience: customer\n---\n# Late fees\n\nA reminder costs 2.50 EUR.\n"
    )
    (folder / "empty.md").write_text("")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at = _open(at, "owner")
    assert any("No documents yet" in i.value for i in at.info)
    at.text_input(key="owner_folder").input(str(folder)).run()
    at.button(key="owner_ingest_folder").click().run()
    assert not at.exception, at.exception
    assert any("1 added" in w.value and "1 failed" in w.value for w in at.warning)
    errors = next(df.value for df in at.dataframe if "problem" in df.value.columns)
    assert list(errors["file"]) == ["empty.md"] and errors["problem"][0]
    assert {m.label: m.value for m in at.metric}["Documents"] == "1"
    (entry,) = _state(db).audit_log.entries(action="kb.ingest")
    assert entry.actor == "account:olive" and entry.details["added"] == ["fees"]
    st.cache_resource.clear()


def _customer_docs(data: Path, question: str) -> dict[str, set[str]]:
    """Documents each role's retrieval returns for ``question``, from a fresh process's view of the store."""
    from assist.retrieval import HybridRetriever

    retriever = HybridRetriever(KnowledgeStore(Settings(data_dir=data)))
    return {role: {p.doc_id for p in retriever.retrieve(question, role).passages} for role in ("customer", "agent", "internal")}


def test_owner_added_document_is_unpublished_until_an_owner_previews_and_publishes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: str
) -> None:
    data = tmp_path / "data"
    store = KnowledgeStore(Settings(data_dir=data))
    assert ingest([write_kb(tmp_path / "docs", ("disputes.md",))], store).ok  # an operator's ingest: published
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(data))
    monkeypatch.setenv("KBASSIST_STATE_URL", db)
    st.cache_resource.clear()
    folder = tmp_path / "new-docs"
    folder.mkdir()
    (folder / "fees.md").write_text(
        "---\ntitle: Late fees\naudience: customer\n---\n# Late fees\n\nA payment reminder costs 2.50 EUR.\n"
    )
    question = "How much does a payment reminder cost?"
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "owner")
    assert not at.toggle, "nothing waits to be published"
    at.text_input(key="owner_folder").input(str(folder)).run()
    at.button(key="owner_ingest_folder").click().run()
    assert not at.exception, at.exception
    assert store.document("fees").published is False and store.document("disputes").published is True
    assert all("fees" not in docs for docs in _customer_docs(data, question).values()), "no role reads a draft"

    drafts = next(df.value for df in at.dataframe if "passages" in df.value.columns and "published" not in df.value)
    assert list(drafts["id"]) == ["fees"]
    at.toggle(key="owner_draft_preview").set_value(True).run()
    assert any("A payment reminder costs 2.50 EUR." in m.value for m in at.markdown)
    at.text_input(key="owner_draft_question").input(question).run()
    assert any("A payment reminder costs 2.50 EUR." in m.value for m in at.markdown)
    assert not _state(db).audit_log.entries(action="kb.publish"), "previewing publishes nothing"

    at.button(key="owner_publish").click().run()
    assert not at.exception, at.exception
    assert any("Published fees" in m.value for m in at.success)
    assert store.document("fees").published is True
    assert "fees" in _customer_docs(data, question)["customer"]
    (entry,) = _state(db).audit_log.entries(action="kb.publish")
    assert (entry.actor, entry.target, entry.details["doc_ids"]) == ("account:olive", "fees", ["fees"])
    assert not at.toggle, "nothing left to publish"
    st.cache_resource.clear()


def test_operator_ingest_publishes_a_draft_it_finds_unchanged(tmp_path: Path) -> None:
    folder = write_kb(tmp_path / "docs", ("disputes.md",))
    store = KnowledgeStore(Settings(data_dir=tmp_path / "data"))
    assert ingest([folder], store, publish=False).added == ["disputes"]
    assert [d.doc_id for d in store.unpublished()] == ["disputes"]
    again = ingest([folder], store, publish=False)
    assert again.unchanged == ["disputes"] and store.unpublished()
    assert ingest([folder], store).updated == ["disputes"]
    assert not store.unpublished()
    assert all(m.get("published") is True for _, _, m in store.document_chunks("disputes"))


def test_owner_inspects_a_document_and_removes_it_after_confirming(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: str
) -> None:
    data = tmp_path / "data"
    store = KnowledgeStore(Settings(data_dir=data))
    assert ingest([write_kb(tmp_path / "docs", ("disputes.md", "newsletter.md"))], store).ok
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(data))
    monkeypatch.setenv("KBASSIST_STATE_URL", db)
    st.cache_resource.clear()
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "owner")
    table = next(df.value for df in at.dataframe if "passages" in df.value.columns)
    assert sorted(table["id"]) == ["disputes", "newsletter"]

    at.selectbox(key="owner_doc").set_value("disputes").run()
    assert not at.exception, at.exception
    passages = next(df.value for df in at.dataframe if "tokens" in df.value.columns)
    assert len(passages) == store.document("disputes").chunk_count
    assert passages["section"].str.startswith("Handling a dispute").all() and (passages["tokens"] > 0).all()
    assert any("disputes.md" in c.value for c in at.caption)

    at.button(key="owner_remove").click().run()
    assert any("Remove **Handling a dispute**" in w.value for w in at.warning)
    at.button(key="owner_remove_cancel").click().run()
    assert store.document("disputes") is not None, "cancelled: nothing removed"
    at.button(key="owner_remove").click().run()
    # The session ends (password reset from the CLI) while the confirmation is on screen: nothing is removed.
    _state(db).accounts.reset_password(USERS["owner"], PASSWORD + "!", actor="cli:test")
    at.button(key="owner_remove_confirm").click().run()
    assert not at.exception, at.exception
    assert _titles(at) == ["Sign in"] and store.document("disputes") is not None
    assert not _state(db).audit_log.entries(action="kb.remove")

    at = _sign_in(at, USERS["owner"], PASSWORD + "!")
    at.selectbox(key="owner_doc").set_value("disputes").run()
    at.button(key="owner_remove").click().run()
    at.button(key="owner_remove_confirm").click().run()
    assert not at.exception, at.exception
    assert any("Removed Handling a dispute (disputes)" in m.value for m in at.success)
    assert store.document("disputes") is None and store.chunk_ids("disputes") == set()
    assert at.selectbox(key="owner_doc").value is None
    assert {m.label: m.value for m in at.metric}["Documents"] == "1"
    (entry,) = _state(db).audit_log.entries(action="kb.remove")
    assert (entry.actor, entry.target, entry.details["doc_ids"]) == ("account:olive", "disputes", ["disputes"])
    st.cache_resource.clear()


def _finish(at: AppTest, kind: str) -> AppTest:
    """Wait for the background job the page started, then draw the page as its next poll would."""
    job = evaluation.current_job(Settings(), kind)
    assert job is not None
    assert job.wait(timeout=TIMEOUT) and not job.running
    at.run()
    assert not at.exception, at.exception
    return at


def _status(at: AppTest) -> list[str]:
    return [s.proto.label for s in at.get("status")]


def test_owner_sees_why_an_evaluation_failed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: str) -> None:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KBASSIST_STATE_URL", db)
    st.cache_resource.clear()
    evaluation.forget_jobs()
    at = _open(AppTest.from_file(APP, default_timeout=TIMEOUT), "owner")
    at.selectbox(key="owner_eval_dataset").select("demo").run()
    at.button(key="owner_eval_run").click().run()
    assert not at.exception, at.exception
    at = _finish(at, "eval")
    assert "Evaluation on demo: failed" in _status(at)
    assert any("the knowledge base is empty" in block.value for block in at.code)
    assert any("No evaluation runs yet" in c.value for c in at.caption)
    assert not at.button(key="owner_eval_run").disabled  # a failed run does not block the next one
    st.cache_resource.clear()


def test_owner_headline_table_shows_a_dash_for_a_missing_value() -> None:
    from webui.owner import headline_table

    table = headline_table({"kbassist": {"hit@5": 0.9, "judge_grounded": None}, "baseline": {"hit@5": None}})
    assert headline_table({"kbassist": {"latency_p50_ms": 1234.4}})["kbassist"].tolist() == ["1,234"]
    assert list(table.columns) == ["metric", "kbassist", "baseline"]
    assert table.to_dict("records") == [
        {"metric": "hit@5", "kbassist": "0.900", "baseline": "–"},
        {"metric": "judge_grounded", "kbassist": "–", "baseline": "–"},
    ]
    assert "None" not in table.to_string() and "nan" not in table.to_string().lower()


def test_owner_uploads_are_saved_safely(tmp_path: Path) -> None:
    from webui.owner import save_uploads

    saved = save_uploads(
        tmp_path / "uploads",
        [
            ("../../evil.md", b"# x"),
            ("guide.pdf", b"%PDF"),
            ("guide.pdf.meta.yaml", b"audience: customer"),
            (".hidden", b""),
        ],
    )
    assert saved == [tmp_path / "uploads" / "evil.md", tmp_path / "uploads" / "guide.pdf"]
    assert (tmp_path / "uploads" / "guide.pdf.meta.yaml").read_bytes() == b"audience: customer"
    assert not (tmp_path / "evil.md").exists()


def test_owner_without_the_eval_harness_says_so(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "_harness_has", lambda module: False)
    at = _open(app, "owner")
    infos = " ".join(i.value for i in at.info)
    assert "Evaluation is not available" in infos and "coverage-gap report is not available" in infos
    assert not [b for b in at.button if b.key == "owner_eval_run"]


def test_owner_runs_an_evaluation_sees_its_charts_and_a_gap_report(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: str
) -> None:
    questions = tmp_path / "returns.jsonl"
    rows = [
        {"id": "q1", "question": "How long do I have to return an item in Sweden?", "market": "SE",
         "doc": "returns-se", "answers": ["30 days"]},
        {"id": "q2", "question": "When do I get my money back after a return?", "market": "SE",
         "doc": "returns-se", "answers": ["5 business days"]},
        {"id": "q3", "question": "Can I pay my invoice with Bitcoin?", "answerable": False},
    ]  # fmt: skip
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setattr(evaluation, "datasets", lambda: [str(questions)])
    heights: list[object] = []
    iframe = st.iframe
    monkeypatch.setattr(st, "iframe", lambda src, **kw: heights.append(kw.get("height")) or iframe(src, **kw))
    at = _open(app, "owner")
    at.button(key="owner_eval_run").click().run()  # eval.runner's own functions, in a background thread
    assert not at.exception, at.exception
    assert at.button(key="owner_eval_run").disabled  # one run at a time
    at = _finish(at, "eval")
    assert "Evaluation on returns: finished" in _status(at)
    (bar,) = at.get("progress")
    assert bar.proto.value == 100 and bar.proto.text == "Done"
    new_run = evaluation.current_job(Settings(), "eval").result.name
    assert at.selectbox(key="owner_eval_run_pick").value == new_run  # the picker shows the new run
    assert "None" not in at.dataframe[0].value.to_string()
    headline = next(df.value for df in at.dataframe if "kbassist" in df.value.columns)
    values = dict(zip(headline["metric"], headline["kbassist"], strict=True))
    assert values["hit@5"] == "1.000" and values["refusal_recall"] == "1.000"
    assert [c for c in at.caption if "3 questions" in c.value]
    (report,) = at.get("iframe")  # the run's own HTML report, charts included
    page = report.proto.srcdoc
    assert heights == ["content"]  # the frame takes the report's height: no chart is cut off
    assert page.count("<svg") >= 4 and "Deflection and false deflection against the threshold" in page
    assert "Latency per question" in page and "kbassist per category" in page

    # A question a customer asked in the chat reaches the gap report without any export step.
    log = _state(db).conversations
    chat = log.start("customer", "SE")
    log.log_question(
        chat, role="customer", market="SE", question="Do you sell travel insurance for cruises?",
        search_query="Do you sell travel insurance for cruises?", answer="", refused=True, confidence=0.2,
        doc_ids=[], latency_ms=5.0, generator="extractive",
    )  # fmt: skip
    at.button(key="owner_gaps_refresh").click().run()  # eval.gaps.gap_report, in a background thread
    assert not at.exception, at.exception
    at = _finish(at, "gaps")
    assert "Gap report: finished" in _status(at)
    assert not [label for label in _status(at) if "running" in label or "Analysing" in label]
    assert "4 questions analysed; 2 refused or low-confidence, in 2 groups." in _markdown(at)
    topics = next(df.value for df in at.dataframe if "most central questions" in df.value.columns)
    assert set(topics["most central questions"]) == {
        "Can I pay my invoice with Bitcoin?",
        "Do you sell travel insurance for cruises?",
    }
    stale = next(df.value for df in at.dataframe if "review_by" in df.value.columns)
    assert list(stale["doc_id"]) == ["disputes"]

"""Ask and record (assist.conversations) against a real ingested KB: what is stored, hand-off reasons and
triggers, restoring a conversation, and `kbassist ask` recording with channel "cli" (or not, with --no-record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assist.conversations import ConversationService
from assist.service import Assistant, QuestionError
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.state.store import StateStore
from kb.store import KnowledgeStore
from tests.support.app_kb import write_kb


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conversations-kb")
    assert ingest([write_kb(root / "docs")], KnowledgeStore(Settings(data_dir=root / "data"))).ok
    return root / "data"


@pytest.fixture(scope="module")
def assistant(kb_dir: Path) -> Assistant:
    settings = Settings(data_dir=kb_dir)
    return Assistant(KnowledgeStore(settings), settings)


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}", Settings())


def test_an_ask_is_recorded_with_its_conversation_and_context_comes_from_the_store(
    assistant: Assistant, state: StateStore
) -> None:
    service = ConversationService(assistant, state, deliver="off")
    first = service.ask("How long do I have to return an item?", role="customer", market="SE", channel="cli")
    assert first.question_id is not None and first.conversation_id and not first.answer.refused
    # A customer who comes back: no history held by the page, the stored turns are the context.
    follow = service.ask("and what about Germany?", role="customer", market="SE",
                         conversation_id=first.conversation_id)  # fmt: skip
    assert follow.conversation_id == first.conversation_id
    assert follow.answer.search_query.startswith("How long do I have to return an item?")
    restored = service.load(first.conversation_id)
    assert restored.channel == "cli" and [e.question_id for e in restored.exchanges] == [first.question_id,
                                                                                         follow.question_id]  # fmt: skip
    assert restored.exchanges[0].citations[0]["doc_id"] == "returns-se"
    assert restored.messages[0]["content"] == first.answer.question and restored.status is None
    with pytest.raises(QuestionError):
        service.ask("   ", role="customer")
    assert state.analytics.counts()["questions"] == 2, "a question that cannot be asked stores nothing"


def test_a_page_restores_the_exchanges_with_its_own_ratings_and_the_handoff(
    assistant: Assistant, state: StateStore
) -> None:
    service = ConversationService(assistant, state, deliver="off")
    first = service.ask("How long do I have to return an item?", role="customer", market="SE")
    conversation = first.conversation_id
    service.rate(first.question_id, "helpful", rater=f"customer:{conversation}")
    service.rate(first.question_id, "not_helpful", rater="agent-contact:other")
    service.hand_off(conversation, [first], market="SE")

    exchanges, handoff = service.restore(conversation, rater=f"customer:{conversation}")
    (exchange,) = exchanges
    assert exchange.question_id == first.question_id and exchange.ratings == ["helpful"]
    assert exchange.answer.text == first.answer.text and exchange.answer.citations == first.answer.citations
    assert handoff is not None and handoff.status == "open" and handoff.contact is None
    assert service.latest_handoff(conversation).id == handoff.id
    assert service.restore("A" * 32) == ([], None) and service.restore("../etc") == ([], None)


def test_queue_actions_are_audited_as_the_given_actor(assistant: Assistant, state: StateStore) -> None:
    service = ConversationService(assistant, state, deliver="off")
    state.accounts.add("adam", "correct horse battery", "agent", actor="cli:test")
    first = service.ask("How long do I have to return an item?", role="customer", market="SE")
    hid = service.hand_off(first.conversation_id, [first], market="SE").id
    assert [h.id for h in service.handoff_queue()] == [hid]
    service.read_handoff(hid, actor="account:adam")
    service.claim_handoff(hid, "adam", actor="account:adam")
    service.note_handoff(hid, "adam", "Called back", actor="account:adam")
    service.resolve_handoff(hid, "adam", "Done", actor="account:adam")
    assert service.handoff_queue() == [] and service.handoff_queue("resolved")[0].resolved_by == "adam"
    entries = list(reversed(state.audit_log.entries(action="handoff.*")))
    assert [(e.actor, e.action) for e in entries] == [
        ("account:adam", action) for action in ("handoff.view", "handoff.claim", "handoff.note", "handoff.resolve")
    ]


def test_nothing_is_stored_without_a_state_store(assistant: Assistant) -> None:
    exchange = ConversationService(assistant, None).ask("How long do I have to return an item?", role="customer")
    assert exchange.question_id is None and exchange.conversation_id is None and exchange.answer.text


def test_hand_off_reasons_and_triggers_are_what_happened(assistant: Assistant, state: StateStore) -> None:
    service = ConversationService(assistant, state, deliver="off")
    answered = service.ask("How long do I have to return an item?", role="customer", market="SE")
    refused = service.ask("Can I pay with bitcoin on Mars?", role="customer", market="SE",
                          conversation_id=answered.conversation_id, history=[answered])  # fmt: skip
    about_refusal = service.hand_off(answered.conversation_id, [answered, refused], market="SE", about=1)
    assert about_refusal.reason == "low_confidence" and about_refusal.question_id == refused.question_id
    assert about_refusal.question == "Can I pay with bitcoin on Mars?" and about_refusal.language == "en"
    general = service.hand_off(answered.conversation_id, [answered, refused], market="SE")
    assert general.reason == "customer_asked" and general.question_id is None and general.question == ""
    about_answer = service.hand_off(answered.conversation_id, [answered, refused], market="SE", about=0)
    assert about_answer.reason == "customer_asked" and about_answer.question_id == answered.question_id

    staff_only = service.ask("What purchase amount triggers a manual fraud review?", role="customer",
                             hand_off_on_refusal=True)  # fmt: skip
    assert staff_only.answer.refused and staff_only.handoff is not None
    assert staff_only.handoff.reason == "restricted_topic" and staff_only.handoff.question_id == staff_only.question_id
    assert state.conversations.load(staff_only.conversation_id).status == "waiting for a person"


def test_cli_ingest_is_audited_with_the_os_user(tmp_path: Path) -> None:
    from kb.state.audit import cli_actor
    from kbassist_cli import app

    docs = write_kb(tmp_path / "docs", names=("returns-se.md", "returns-de.md"))
    env = {"KBASSIST_DATA_DIR": str(tmp_path / "data")}
    assert CliRunner().invoke(app, ["ingest", str(docs)], env=env).exit_code == 0
    (docs / "returns-de.md").unlink()
    assert CliRunner().invoke(app, ["ingest", str(docs)], env=env).exit_code == 0
    listed = CliRunner().invoke(app, ["audit", "list", "--action", "kb.*", "--json"], env=env)
    second, first = json.loads(listed.stdout)
    assert first["actor"] == second["actor"] == cli_actor() and first["action"] == "kb.ingest"
    assert sorted(first["details"]["added"]) == ["returns-de", "returns-se"] and first["target"] == str(docs)
    assert second["details"]["deleted"] == ["returns-de"] and second["details"]["unchanged"] == 1


def _kbassist(kb_dir: Path, state_url: str, *args: str) -> dict:
    from kbassist_cli import app

    env = {"KBASSIST_DATA_DIR": str(kb_dir), "KBASSIST_STATE_URL": state_url}
    result = CliRunner().invoke(app, ["ask", *args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_asks_are_recorded_and_a_customer_refusal_is_a_stored_handoff(kb_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    refused = _kbassist(kb_dir, url, "Can I pay with bitcoin on Mars?", "--role", "customer", "--market", "SE")
    assert refused["refused"] and refused["handoff_reference"] == "H-1"
    again = _kbassist(kb_dir, url, "and with gold?", "--role", "customer", "--conversation", refused["conversation_id"])
    assert again["conversation_id"] == refused["conversation_id"]
    state = StateStore(url, Settings())
    later, handoff = state.handoffs.list()  # each refusal in the CLI is handed to a person, newest first
    assert handoff.reason == "low_confidence" and handoff.question == "Can I pay with bitcoin on Mars?"
    assert later.conversation_id == handoff.conversation_id
    conversation = state.conversations.load(refused["conversation_id"])
    assert conversation.channel == "cli" and len(conversation.exchanges) == 2

    unrecorded = _kbassist(kb_dir, url, "How long do I have to return an item?", "--role", "agent", "--no-record")
    assert unrecorded["conversation_id"] is None and unrecorded["question_id"] is None
    assert state.analytics.counts()["questions"] == 2

"""The state store on SQLite and PostgreSQL: migrations, redaction, conversations, ratings, analytics, import.

Every test runs on both backends (``state_url``): a fresh SQLite file, and a freshly created
PostgreSQL database dropped afterwards (KBASSIST_TEST_POSTGRES_URL; scripts/test sets it).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from kb.settings import Settings
from kb.state import SchemaTooNew, StateUnavailable, open_state
from kb.state.handoffs import Contact
from kb.state.models import Base
from kb.state.store import HEAD_REVISION, StateStore, alembic_config
from kb.state.types import utcnow

SECRETS = ("4111", "a@b.se", "123 45 67", "SE45", "5000 0000")


def _store(url: str, **settings: object) -> StateStore:
    return StateStore(url, Settings(**settings))


def _ask(store: StateStore, conversation: str, question: str, refused: bool, role: str = "customer") -> int:
    return store.conversations.log_question(
        conversation, role=role, market="SE", question=question, search_query=question,
        answer="I don't know." if refused else "30 days [1]", refused=refused, confidence=0.2 if refused else 0.8,
        doc_ids=[] if refused else ["refunds", "refunds"], latency_ms=12.0, generator="extractive",
    )  # fmt: skip


def _all_text(url: str) -> str:
    """Every value of every table, as the database holds it."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            return "\n".join(
                repr(tuple(row)) for table in tables for row in conn.execute(text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()


def test_default_url_is_a_file_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).state_database_url == f"sqlite:///{tmp_path / 'state.sqlite'}"
    url = "postgresql+psycopg://kb:secret@db.internal/kbassist"
    assert Settings(data_dir=tmp_path, state_url=url).state_database_url == url


def test_head_revision_is_the_newest_shipped_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]


def test_migrations_create_exactly_the_models_and_reopening_is_a_no_op(state_url: str) -> None:
    store = _store(state_url)
    assert store.revision == HEAD_REVISION
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], "the models and the migrations describe the same schema"
    conversation = store.conversations.start("customer", "SE")
    _ask(store, conversation, "How long do I have to return an item?", refused=False)
    again = _store(state_url)
    assert again.current_revision() == HEAD_REVISION
    assert len(again.conversations.logged_questions()) == 1


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with store.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    with pytest.raises(Exception, match="FOREIGN KEY"):
        store.conversations.log_question(
            "no-such-conversation-id", role="customer", market=None, question="q", search_query="q", answer="a",
            refused=False, confidence=1.0, doc_ids=[], latency_ms=1.0, generator="extractive",
        )  # fmt: skip


def test_a_database_from_a_newer_release_is_refused(state_url: str) -> None:
    _store(state_url).dispose()
    engine = create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match="'9999', written by a newer release"):
        _store(state_url)


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    url = "postgresql+psycopg://kb:hunter2-secret@127.0.0.1:1/kbassist"
    with pytest.raises(StateUnavailable) as failed:
        _store(url)
    message = str(failed.value)
    assert message.startswith("the state store postgresql+psycopg://kb:***@127.0.0.1:1/kbassist is unavailable: ")
    assert "hunter2" not in message


def test_everything_stored_is_redacted_except_the_contact_the_customer_left(
    state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = _store(state_url)
    conversation = store.conversations.start("customer", "SE")
    qid = _ask(store, conversation, "My card 4111 1111 1111 1111 was charged twice, mail me at a@b.se", refused=True)
    store.conversations.rate(qid, "not_helpful", rater="customer", comment="call me on +46 70 123 45 67")
    contact = Contact("phone", "+46 70 765 43 21", consent=True, consent_text="You may call me about this.")
    record = store.handoffs.create(
        conversation, question="IBAN SE45 5000 0000 0583 9825 7466 refund?", summary="Customer a@b.se wants a refund",
        searched={"query": "card 4111111111111111", "documents": []}, reason="customer_asked", market="SE",
        question_id=qid, contact=contact,
    )  # fmt: skip
    store.audit("cli:test", "kb.ingest", "a@b.se's folder", {"note": "card 4111 1111 1111 1111"})
    raw = _all_text(state_url)
    for secret in SECRETS:
        assert secret not in raw
    assert raw.count("+46 70 765 43 21") == 1, "the contact is kept once, in its own column"
    assert "765 43 21" not in caplog.text and "765 43 21" not in repr(record)

    handoff = store.handoffs.list()[0]
    assert handoff.question == "IBAN [iban] refund?" and handoff.searched["query"] == "card [card]"
    assert handoff.transcript[0] == {"role": "user", "content": "My card [card] was charged twice, mail me at [email]"}
    assert handoff.contact is None, "contact details only for staff reads"
    assert store.handoffs.get(record.id, include_contact=True).contact.value == "+46 70 765 43 21"


def test_a_feedback_comment_is_normalised_before_it_is_redacted(state_url: str) -> None:
    store = _store(state_url)
    conversation = store.conversations.start("customer", "SE")
    qid = _ask(store, conversation, "How long do I have to return an item?", refused=False)
    comment = (
        "my card\n4111\n1111\t1111\u00a01111 was charged, pnr 8112189876, "
        "mail anna\uff20example.se or ring 070\u200b-123 45 67 / 030 12345678"
    )
    store.conversations.rate(qid, "not_helpful", rater="customer", comment=comment)
    # A hand-off transcript and audit details are JSON, where a line break is the two characters "\n".
    store.handoffs.create(
        conversation, question="refund?", summary="s", searched={"query": "pnr 811218\n9876"},
        reason="customer_asked", market="SE", question_id=qid,
    )  # fmt: skip
    store.audit("cli:test", "kb.note", "", {"note": "card 4111\n1111\t1111\n1111", "lines": ["070\n123 45 67"]})
    raw = _all_text(state_url)
    for secret in ("4111", "1111", "8112189876", "811218", "anna", "123 45 67", "12345678"):
        assert secret not in raw
    (stored,) = [c for _, c, _ in store.analytics.feedback_summary().comments]
    assert stored == "my card\n[card] was charged, pnr [personnummer], mail [email] or ring [phone] / [phone]"


def test_conversation_ids_are_unguessable_and_a_conversation_restores_with_its_handoff(state_url: str) -> None:
    store = _store(state_url)
    ids = {store.conversations.start("customer", "SE") for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 32 for i in ids)  # 192 random bits each
    conversation = ids.pop()
    first = _ask(store, conversation, "How long do I have to return an item?", refused=False)
    _ask(store, conversation, "Can I pay with gold bars?", refused=True)
    store.conversations.rate(first, "helpful", rater="customer")
    assert store.conversations.load(conversation).status is None

    handoff = store.handoffs.create(conversation, question="Can I pay with gold bars?", summary="s", searched={},
                                    reason="low_confidence", market="SE")  # fmt: skip
    restored = store.conversations.load(conversation)
    assert [m["role"] for m in restored.messages] == ["user", "assistant", "user", "assistant"]
    assert [e.question for e in restored.exchanges] == ["How long do I have to return an item?", "Can I pay with gold bars?"]
    assert restored.exchanges[0].ratings == {"customer": "helpful"}
    assert restored.status == "waiting for a person" and restored.handoff.reference == f"H-{handoff.id}"

    store.accounts.add("alice", "correct horse battery", "agent", actor="cli:test")
    store.handoffs.claim(handoff.id, "alice")
    assert store.conversations.load(conversation).status == "a person is looking at it"
    store.handoffs.resolve(handoff.id, "alice", note="Explained the payment options")
    assert store.conversations.load(conversation).status == "resolved"

    for junk in ("", "x", "../../etc/passwd", "' OR 1=1 --", "a" * 500, conversation[:-1] + "!"):
        assert store.conversations.load(junk) is None


def test_a_rating_is_one_state_per_answer_per_rater_and_the_last_one_wins(state_url: str) -> None:
    store = _store(state_url)
    conversation = store.conversations.start("agent")
    ids = [_ask(store, conversation, f"question {i}", refused=False, role="agent") for i in range(3)]
    store.conversations.rate(ids[0], "used", rater="alice", comment="sent it as is")
    store.conversations.rate(ids[0], "not_helpful", rater="alice", comment="wrong market")  # changes her mind
    store.conversations.rate(ids[0], "helpful", rater="bob")
    store.conversations.rate(ids[1], "helpful", rater="alice")
    assert store.conversations.ratings(ids[0]) == {"alice": "not_helpful", "bob": "helpful"}
    summary = store.analytics.feedback_summary()
    assert summary.counts == {"not_helpful": 1, "helpful": 2}
    assert summary.helpful_rate == pytest.approx(2 / 3)
    assert summary.comments == [("not_helpful", "wrong market", "question 0")]
    with pytest.raises(ValueError, match="rating"):
        store.conversations.rate(ids[2], "great", rater="alice")  # type: ignore[arg-type]


def test_top_unanswered_groups_the_same_question_worded_alike(state_url: str) -> None:
    store = _store(state_url)
    conversation = store.conversations.start("customer")
    for question in ("Can I pay with bitcoin?", "can i pay with Bitcoin", "CAN I PAY WITH BITCOIN?!", "Mars?"):
        _ask(store, conversation, question, refused=True)
    _ask(store, conversation, "How long do I have to return an item?", refused=False)
    top = store.analytics.top_unanswered()
    assert [(u.count, u.question.lower().rstrip("?!")) for u in top] == [(3, "can i pay with bitcoin"), (1, "mars")]


def test_deflection_counts_handoffs_about_an_answer_general_requests_and_ratings(state_url: str) -> None:
    store = _store(state_url)
    c1 = store.conversations.start("customer")  # answered, rated helpful: deflected and confirmed
    q1 = _ask(store, c1, "return window?", refused=False)
    store.conversations.rate(q1, "helpful", rater="customer")
    c2 = store.conversations.start("customer")  # answered, then a hand-off about that answer
    q2 = _ask(store, c2, "refund timing?", refused=False)
    store.handoffs.create(c2, question="refund timing?", summary="", searched={}, reason="customer_asked",
                          market=None, question_id=q2)  # fmt: skip
    c3 = store.conversations.start("customer")  # answered but rated not helpful (deflected, yet false); refused
    q3 = _ask(store, c3, "late fee?", refused=False)
    store.conversations.rate(q3, "not_helpful", rater="customer")
    _ask(store, c3, "bitcoin?", refused=True)
    c4 = store.conversations.start("customer")  # answered, then a general request for a person later on
    _ask(store, c4, "pay in 3?", refused=False)
    store.handoffs.create(c4, question="", summary="", searched={}, reason="customer_asked", market=None)
    _ask(store, store.conversations.start("agent"), "agent question", refused=False, role="agent")  # not counted

    (day,) = store.analytics.deflection_by_day()
    assert (day.questions, day.answered, day.deflected, day.false_deflections, day.confirmed) == (5, 4, 2, 3, 1)
    assert day.deflection_rate == pytest.approx(2 / 5) and day.false_deflection_rate == pytest.approx(3 / 4)
    assert store.analytics.deflection_by_day(since=utcnow() + timedelta(days=1)) == []
    assert store.analytics.counts() == {"conversations": 5, "questions": 6, "feedback": 2, "handoffs": 2}


def test_logged_questions_export_for_the_gap_report(state_url: str, tmp_path: Path) -> None:
    store = _store(state_url)
    conversation = store.conversations.start("customer", "SE")
    _ask(store, conversation, "Can I pay with bitcoin? my mail is x@y.se", refused=True)
    _ask(store, conversation, "How long do I have to return an item?", refused=False)
    assert store.conversations.export_questions_jsonl(tmp_path / "out" / "q.jsonl") == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "q.jsonl").read_text().splitlines()]
    assert rows[0]["question"] == "Can I pay with bitcoin? my mail is [email]"
    assert rows[0]["refused"] is True and rows[1]["doc_ids"] == ["refunds"]
    assert [q.question for q in store.conversations.logged_questions(role="agent")] == []


# The schema the interaction log of earlier releases had (kb/interactions.py, migration 1).
LEGACY_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE conversations (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, market TEXT, started_at TEXT NOT NULL);
CREATE TABLE questions (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL, asked_at TEXT NOT NULL,
    role TEXT NOT NULL, market TEXT, question TEXT NOT NULL, search_query TEXT NOT NULL, answer TEXT NOT NULL,
    refused INTEGER NOT NULL, confidence REAL NOT NULL, doc_ids TEXT NOT NULL, latency_ms REAL NOT NULL,
    generator TEXT NOT NULL);
CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL, question_id INTEGER,
    speaker TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, question_id INTEGER NOT NULL, rating TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
CREATE TABLE handoffs (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL, question_id INTEGER,
    created_at TEXT NOT NULL, question TEXT NOT NULL, summary TEXT NOT NULL, transcript TEXT NOT NULL,
    searched TEXT NOT NULL, reason TEXT NOT NULL, market TEXT, status TEXT NOT NULL DEFAULT 'open');
INSERT INTO conversations VALUES ('0123456789abcdef0123456789abcdef', 'customer', 'SE', '2026-01-05T10:00:00+00:00');
INSERT INTO questions VALUES (1, '0123456789abcdef0123456789abcdef', '2026-01-05T10:00:01+00:00', 'customer', 'SE',
    'Can I pay with bitcoin?', 'Can I pay with bitcoin?', 'I''m sorry', 1, 0.2, '[]', 5.0, 'extractive');
INSERT INTO questions VALUES (2, '0123456789abcdef0123456789abcdef', '2026-01-05T10:01:00+00:00', 'customer', 'SE',
    'Return window?', 'Return window?', '30 days [1]', 0, 0.8, '["returns-se"]', 5.0, 'extractive');
INSERT INTO turns VALUES (1, '0123456789abcdef0123456789abcdef', 1, 'user', 'Can I pay with bitcoin?',
    '2026-01-05T10:00:01+00:00');
INSERT INTO turns VALUES (2, '0123456789abcdef0123456789abcdef', 1, 'assistant', 'I''m sorry',
    '2026-01-05T10:00:01+00:00');
INSERT INTO feedback VALUES (1, 2, 'helpful', '', '2026-01-05T10:02:00+00:00');
INSERT INTO feedback VALUES (2, 2, 'used', 'sent it', '2026-01-05T10:03:00+00:00');
INSERT INTO handoffs VALUES (1, '0123456789abcdef0123456789abcdef', 1, '2026-01-05T10:00:05+00:00',
    'Can I pay with bitcoin?', 'Customer asked: Can I pay with bitcoin?', '[{"role": "user", "content": "x"}]',
    '{"query": "bitcoin"}', 'low retrieval confidence', 'SE', 'open');
"""


def test_the_old_interaction_log_is_imported_once_on_first_open(state_url: str, tmp_path: Path) -> None:
    legacy = tmp_path / "data" / "interactions.sqlite"
    legacy.parent.mkdir()
    with sqlite3.connect(legacy) as conn:
        conn.executescript(LEGACY_SCHEMA)
    settings = Settings(data_dir=tmp_path / "data", state_url=state_url)
    store = open_state(settings)
    questions = store.conversations.logged_questions()
    assert [(q.question, q.refused) for q in questions] == [("Can I pay with bitcoin?", True), ("Return window?", False)]
    (handoff,) = store.handoffs.list()
    assert handoff.reason == "low_confidence" and handoff.question_id == questions[0].id and handoff.status == "open"
    assert store.analytics.feedback_summary().counts == {"helpful": 1, "used": 1}
    restored = store.conversations.load("0123456789abcdef0123456789abcdef")
    assert restored is not None and restored.status == "waiting for a person" and len(restored.messages) == 2
    (entry,) = store.audit_log.entries(action="state.import_legacy")
    assert entry.details == {"conversations": 1, "questions": 2, "messages": 2, "ratings": 2, "handoffs": 1}

    store.dispose()
    again = StateStore(settings.state_database_url, settings, legacy_log=legacy)  # another process, another open
    assert len(again.conversations.logged_questions()) == 2, "imported once, not on every open"

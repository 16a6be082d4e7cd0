"""The interaction log: versioned schema, redaction on every write, and the analytics read from it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kb import interactions
from kb.interactions import InteractionLog, SchemaTooNew
from kb.settings import Settings


def _ask(log: InteractionLog, conversation: str, question: str, refused: bool, role: str = "customer") -> int:
    return log.log_question(
        conversation,
        role=role,
        market="SE",
        question=question,
        search_query=question,
        answer="I don't know." if refused else "30 days [1]",
        refused=refused,
        confidence=0.2 if refused else 0.8,
        doc_ids=[] if refused else ["refunds", "refunds"],
        latency_ms=12.0,
        generator="extractive",
    )


def test_default_path_follows_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).interactions_path == tmp_path / "interactions.sqlite"
    assert Settings(data_dir=tmp_path, interactions_db=tmp_path / "x.db").interactions_path == tmp_path / "x.db"


def test_new_file_gets_the_current_schema_and_reopening_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InteractionLog(path)
    conversation = log.start_conversation("customer", "SE")
    _ask(log, conversation, "How long do I have to return an item?", refused=False)
    again = InteractionLog(path)
    assert again.schema_version == len(interactions.MIGRATIONS)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(interactions.MIGRATIONS),)]
    assert len(again.logged_questions()) == 1


def test_a_later_migration_applies_to_an_existing_file_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.sqlite"
    log = InteractionLog(path)
    _ask(log, log.start_conversation("agent"), "What is the late fee?", refused=False, role="agent")
    monkeypatch.setattr(
        interactions, "MIGRATIONS", [*interactions.MIGRATIONS, "ALTER TABLE handoffs ADD COLUMN assignee TEXT"]
    )
    upgraded = InteractionLog(path)
    assert upgraded.schema_version == 2
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(handoffs)")}
    assert "assignee" in columns
    assert [q.question for q in upgraded.logged_questions()] == ["What is the late fee?"]


def test_a_failing_migration_leaves_the_file_at_its_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.sqlite"
    InteractionLog(path)
    monkeypatch.setattr(
        interactions,
        "MIGRATIONS",
        [*interactions.MIGRATIONS, "CREATE TABLE extra (x INTEGER); ALTER TABLE no_such_table ADD COLUMN y TEXT"],
    )
    with pytest.raises(sqlite3.OperationalError):
        InteractionLog(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (1,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    InteractionLog(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="99"):
        InteractionLog(path)


def test_everything_stored_is_redacted(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InteractionLog(path)
    conversation = log.start_conversation("customer", "SE")
    qid = _ask(log, conversation, "My card 4111 1111 1111 1111 was charged twice, mail me at a@b.se", refused=True)
    log.add_feedback(qid, "not_helpful", "call me on +46 70 123 45 67")
    log.create_handoff(
        conversation,
        question="IBAN SE45 5000 0000 0583 9825 7466 refund?",
        summary="Customer a@b.se wants a refund",
        searched={"query": "card 4111111111111111", "documents": []},
        reason="customer asked for a person",
        market="SE",
        question_id=qid,
    )
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("log.sqlite-*"))
    for secret in (b"4111", b"a@b.se", b"123 45 67", b"SE45"):
        assert secret not in raw
    handoff = log.handoffs()[0]
    assert handoff.question == "IBAN [iban] refund?"
    assert handoff.searched["query"] == "card [card]"
    assert handoff.transcript[0] == {"role": "user", "content": "My card [card] was charged twice, mail me at [email]"}


def test_handoff_keeps_the_transcript_and_what_was_searched(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log.sqlite")
    conversation = log.start_conversation("customer", "SE")
    _ask(log, conversation, "How long do I have to return an item?", refused=False)
    qid = _ask(log, conversation, "Can I pay with gold bars?", refused=True)
    record = log.create_handoff(
        conversation,
        question="Can I pay with gold bars?",
        summary="Customer asked: Can I pay with gold bars?",
        searched={"query": "Can I pay with gold bars?", "documents": ["pay-in-3"], "confidence": 0.2},
        reason="low retrieval confidence",
        market="SE",
        question_id=qid,
    )
    assert record.id == 1 and record.status == "open"
    assert [t["role"] for t in record.transcript] == ["user", "assistant", "user", "assistant"]
    assert record.transcript[2]["content"] == "Can I pay with gold bars?"
    assert record.searched["documents"] == ["pay-in-3"]
    assert log.handoff(record.id) == record


def test_feedback_rating_is_validated(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log.sqlite")
    qid = _ask(log, log.start_conversation("agent"), "q", refused=False, role="agent")
    with pytest.raises(ValueError, match="rating"):
        log.add_feedback(qid, "great")  # type: ignore[arg-type]


def test_helpful_rate_counts_used_in_reply_as_positive(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log.sqlite")
    conversation = log.start_conversation("agent")
    ids = [_ask(log, conversation, f"question {i}", refused=False, role="agent") for i in range(4)]
    log.add_feedback(ids[0], "helpful")
    log.add_feedback(ids[1], "used", "sent it as is")
    log.add_feedback(ids[2], "not_helpful", "wrong market")
    assert log.feedback_summary().helpful_rate == pytest.approx(2 / 3)
    assert log.feedback_summary().comments[0] == ("not_helpful", "wrong market", "question 2")
    assert InteractionLog(tmp_path / "empty.sqlite").feedback_summary().helpful_rate is None


def test_top_unanswered_groups_the_same_question_worded_alike(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log.sqlite")
    conversation = log.start_conversation("customer")
    for text in (
        "Can I pay with bitcoin?",
        "can i pay with Bitcoin",
        "CAN I PAY WITH BITCOIN?!",
        "Do you ship to Mars?",
    ):
        _ask(log, conversation, text, refused=True)
    _ask(log, conversation, "How long do I have to return an item?", refused=False)
    top = log.top_unanswered()
    assert [(u.count, u.question.lower().rstrip("?!")) for u in top] == [
        (3, "can i pay with bitcoin"),
        (1, "do you ship to mars"),
    ]


def test_deflection_and_false_deflection_per_day(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log.sqlite")
    # Conversation 1: answered, satisfied (deflected).
    c1 = log.start_conversation("customer")
    _ask(log, c1, "return window?", refused=False)
    # Conversation 2: answered, then the customer asked for a person about that answer (false deflection).
    c2 = log.start_conversation("customer")
    q2 = _ask(log, c2, "refund timing?", refused=False)
    log.create_handoff(
        c2, question="refund timing?", summary="", searched={}, reason="customer asked", market=None, question_id=q2
    )
    # Conversation 3: answered but rated not helpful (deflected, yet false), then refused.
    c3 = log.start_conversation("customer")
    q3 = _ask(log, c3, "late fee?", refused=False)
    log.add_feedback(q3, "not_helpful")
    _ask(log, c3, "bitcoin?", refused=True)
    # Agent questions never count towards customer deflection.
    _ask(log, log.start_conversation("agent"), "agent question", refused=False, role="agent")

    (day,) = log.deflection_by_day()
    assert (day.questions, day.answered, day.deflected, day.false_deflections) == (4, 3, 2, 2)
    assert day.deflection_rate == pytest.approx(0.5)
    assert day.false_deflection_rate == pytest.approx(2 / 3)


def test_logged_questions_export_for_the_gap_report(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log.sqlite")
    conversation = log.start_conversation("customer", "SE")
    _ask(log, conversation, "Can I pay with bitcoin? my mail is x@y.se", refused=True)
    _ask(log, conversation, "How long do I have to return an item?", refused=False)
    assert log.export_questions_jsonl(tmp_path / "out" / "q.jsonl") == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "q.jsonl").read_text().splitlines()]
    assert rows[0]["question"] == "Can I pay with bitcoin? my mail is [email]"
    assert rows[0]["refused"] is True and rows[1]["doc_ids"] == ["refunds"]
    assert [q.question for q in log.logged_questions(role="agent")] == []

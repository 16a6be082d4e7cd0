"""One-time import of the interaction log earlier releases kept (``DATA_DIR/interactions.sqlite``).

On the first open of a state store, if that file exists, its conversations, questions, turns,
feedback and hand-offs are copied in, in one transaction, and a ``state_meta`` row records it so
it never happens twice (also when several processes open the store at once: the marker row is
inserted first, and only the process that inserted it imports). The old file is left as it
was, read-only; it can be deleted once the import is confirmed (``kbassist state info``).

The old log was already redacted; the new column types redact again on the way in, which is
harmless. Old feedback had no rater: each row becomes its own rater (``legacy:<id>``), so every
old rating still counts. Old hand-offs keep their status (``open``) and get a reason code from
their old wording.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kb.state.audit import add_entry, cli_actor
from kb.state.models import Conversation, Handoff, Message, Meta, Question, Rating

if TYPE_CHECKING:
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

META_KEY = "legacy_interactions_import"
_REASONS = {"low retrieval confidence": "low_confidence", "customer asked for a person": "customer_asked"}


def _when(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rows(conn: sqlite3.Connection, table: str) -> list[sqlite3.Row]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def read_legacy(path: Path) -> dict[str, list[sqlite3.Row]] | None:
    """The old tables, or None when ``path`` is not an interaction log of an earlier release."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        conn.row_factory = sqlite3.Row
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        wanted = ("conversations", "questions", "turns", "feedback", "handoffs")
        if "schema_version" not in names or not all(t in names for t in wanted):
            return None
        return {table: _rows(conn, table) for table in wanted}
    except sqlite3.Error as exc:
        log.warning("the old interaction log %s cannot be read: %s", path, exc)
        return None
    finally:
        conn.close()


def import_once(store: StateStore, path: Path, *, actor: str | None = None) -> dict[str, int] | None:
    """Import ``path`` unless this store already has; returns the counts, or None when nothing was done."""
    tables = read_legacy(path)
    if tables is None:
        return None
    with store.write() as session:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        # RETURNING, not rowcount: an INSERT's row count is not reported by every driver.
        marked = session.execute(
            insert(Meta)
            .values(key=META_KEY, value=json.dumps({"path": str(path), "at": datetime.now(UTC).isoformat()}))
            .on_conflict_do_nothing(index_elements=[Meta.key])
            .returning(Meta.key)
        ).first()
        if marked is None:
            return None
        counts = _copy(session, tables)
        add_entry(session, actor or cli_actor(), "state.import_legacy", str(path), counts)
    log.info("imported the old interaction log: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def _copy(session: Any, tables: dict[str, list[sqlite3.Row]]) -> dict[str, int]:
    for row in tables["conversations"]:
        if session.get(Conversation, row["id"]) is None:
            started = _when(row["started_at"])
            session.add(
                Conversation(
                    id=row["id"],
                    channel="web",
                    role=row["workspace"],
                    market=row["market"],
                    started_at=started,
                    updated_at=started,
                )
            )
    session.flush()
    question_ids: dict[int, int] = {}
    for row in tables["questions"]:
        new = Question(
            conversation_id=row["conversation_id"],
            asked_at=_when(row["asked_at"]),
            role=row["role"],
            market=row["market"],
            language=None,
            question=row["question"],
            search_query=row["search_query"],
            answer=row["answer"],
            refused=bool(row["refused"]),
            confidence=float(row["confidence"]),
            doc_ids=json.loads(row["doc_ids"] or "[]"),
            citations=[],
            latency_ms=float(row["latency_ms"]),
            generator=row["generator"],
        )
        session.add(new)
        session.flush()
        question_ids[row["id"]] = new.id
    for row in tables["turns"]:
        session.add(
            Message(
                conversation_id=row["conversation_id"],
                question_id=question_ids.get(row["question_id"]),
                speaker=row["speaker"],
                content=row["content"],
                created_at=_when(row["created_at"]),
            )
        )
    ratings = 0
    for row in tables["feedback"]:
        if row["question_id"] in question_ids:
            when = _when(row["created_at"])
            session.add(
                Rating(
                    question_id=question_ids[row["question_id"]],
                    rater=f"legacy:{row['id']}",
                    rating=row["rating"],
                    comment=row["comment"] or "",
                    created_at=when,
                    updated_at=when,
                )
            )
            ratings += 1
    for row in tables["handoffs"]:
        when = _when(row["created_at"])
        session.add(
            Handoff(
                conversation_id=row["conversation_id"],
                question_id=question_ids.get(row["question_id"]),
                created_at=when,
                updated_at=when,
                question=row["question"],
                summary=row["summary"],
                transcript=json.loads(row["transcript"] or "[]"),
                searched=json.loads(row["searched"] or "{}"),
                reason=_REASONS.get(row["reason"], "customer_asked"),
                market=row["market"],
                contact_consent=False,
                status=row["status"] if row["status"] in ("open", "claimed", "resolved") else "open",
            )
        )
    session.flush()
    return {
        "conversations": len(tables["conversations"]),
        "questions": len(question_ids),
        "messages": len(tables["turns"]),
        "ratings": ratings,
        "handoffs": len(tables["handoffs"]),
    }

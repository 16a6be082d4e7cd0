"""What people asked and what happened next: conversations, feedback and hand-offs, in SQLite.

This is the memory behind the KB owner's analytics (helpful rate, unanswered questions,
deflection) and the coverage-gap report (logged questions). Every piece of free text passes
through :func:`kb.redact.redact` inside this module, so no caller can store personal data by
forgetting to redact it.

The schema is versioned: ``schema_version`` holds the version applied, and :data:`MIGRATIONS`
lists the steps from an empty file to the current schema. Opening a file applies the missing
steps in one transaction; a file written by a newer release is refused rather than guessed at.
Each call opens its own short-lived connection (WAL mode), so the web app's threads and a
separate reporting process can share one file.

Every write is one transaction, so a write that fails (disk full, read-only folder) leaves the
file as it was; the failure is raised as :class:`InteractionLogUnavailable` with the reason the
operating system gives, for the app to show instead of a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kb.diskcheck import disk_problem
from kb.redact import redact

log = logging.getLogger(__name__)

Workspace = Literal["agent", "customer", "owner"]
Rating = Literal["helpful", "not_helpful", "used"]
RATINGS: tuple[str, ...] = ("helpful", "not_helpful", "used")

# Each entry moves the schema from version N-1 to N. Never edit a released entry: append one.
MIGRATIONS: list[str] = [
    # 1: the initial schema.
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        market TEXT,
        started_at TEXT NOT NULL
    );
    CREATE TABLE questions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        asked_at TEXT NOT NULL,
        role TEXT NOT NULL,
        market TEXT,
        question TEXT NOT NULL,
        search_query TEXT NOT NULL,
        answer TEXT NOT NULL,
        refused INTEGER NOT NULL,
        confidence REAL NOT NULL,
        doc_ids TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        generator TEXT NOT NULL
    );
    CREATE INDEX questions_asked_at ON questions(asked_at);
    CREATE INDEX questions_conversation ON questions(conversation_id);
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        question_id INTEGER REFERENCES questions(id),
        speaker TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX turns_conversation ON turns(conversation_id);
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        question_id INTEGER NOT NULL REFERENCES questions(id),
        rating TEXT NOT NULL CHECK (rating IN ('helpful', 'not_helpful', 'used')),
        comment TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE INDEX feedback_question ON feedback(question_id);
    CREATE TABLE handoffs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        question_id INTEGER REFERENCES questions(id),
        created_at TEXT NOT NULL,
        question TEXT NOT NULL,
        summary TEXT NOT NULL,
        transcript TEXT NOT NULL,
        searched TEXT NOT NULL,
        reason TEXT NOT NULL,
        market TEXT,
        status TEXT NOT NULL DEFAULT 'open'
    );
    CREATE INDEX handoffs_conversation ON handoffs(conversation_id);
    """,
]


# SQLite primary result codes that are about the file or its disk, not about the SQL:
# PERM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_FILE_ERRORS = frozenset({3, 8, 10, 11, 13, 14, 26})


class SchemaTooNew(RuntimeError):
    """The database was written by a newer release; opening it could corrupt it."""


class InteractionLogUnavailable(RuntimeError):
    """The interaction log cannot be opened or written (read-only or full disk, damaged file)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _normalise(question: str) -> str:
    """Grouping key for "the same question": case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^\w\s\[\]]", " ", question.lower()).split())


@dataclass(frozen=True)
class LoggedQuestion:
    """One question as stored (already redacted): the input of the coverage-gap report."""

    id: int
    conversation_id: str
    asked_at: str
    role: str
    market: str | None
    question: str
    search_query: str
    refused: bool
    confidence: float
    doc_ids: list[str]


@dataclass(frozen=True)
class HandoffRecord:
    id: int
    conversation_id: str
    question_id: int | None
    created_at: str
    question: str
    summary: str
    transcript: list[dict[str, str]]
    searched: dict[str, Any]
    reason: str
    market: str | None
    status: str


@dataclass(frozen=True)
class UnansweredQuestion:
    question: str
    count: int
    last_asked: str


@dataclass(frozen=True)
class DeflectionDay:
    """Customer questions of one day (UTC).

    ``deflected``: answered, and the customer did not ask for a person about that answer.
    ``false_deflections``: answered, but then rated not helpful or handed off to a person — the
    live signal that an answer did not actually resolve the question.
    """

    day: str
    questions: int
    answered: int
    deflected: int
    false_deflections: int

    @property
    def deflection_rate(self) -> float:
        return self.deflected / self.questions if self.questions else 0.0

    @property
    def false_deflection_rate(self) -> float:
        return self.false_deflections / self.answered if self.answered else 0.0


@dataclass
class FeedbackSummary:
    counts: dict[str, int] = field(default_factory=dict)
    comments: list[tuple[str, str, str]] = field(default_factory=list)  # (rating, comment, question)

    @property
    def rated(self) -> int:
        return sum(self.counts.values())

    @property
    def helpful_rate(self) -> float | None:
        """Share of rated answers rated helpful or used in a reply; None before any rating."""
        positive = self.counts.get("helpful", 0) + self.counts.get("used", 0)
        return positive / self.rated if self.rated else None


class InteractionLog:
    """The SQLite file of one deployment. Cheap to construct; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InteractionLogUnavailable(
                f"the interaction log {self.path} is unavailable: {exc.strerror or exc}"
            ) from exc
        self.schema_version = self._migrate()

    def _unavailable(self, exc: sqlite3.Error) -> InteractionLogUnavailable:
        """SQLite says "disk I/O error" or "unable to open database file"; the folder says why."""
        reason = disk_problem(self.path.parent) or str(exc)
        return InteractionLogUnavailable(f"the interaction log {self.path} is unavailable: {reason}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            yield conn
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _FILE_ERRORS:
                raise self._unavailable(exc) from exc
            raise
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite may already have rolled back (it does on a full disk or an I/O error); a
                # second ROLLBACK would then fail and hide the error that matters.
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> int:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
        with self._transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row["version"] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"{self.path} has schema version {current}; this release knows up to {len(MIGRATIONS)}"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (version,))
                log.info("interactions schema migrated to version %d", version)
            return len(MIGRATIONS)

    # -- writing ------------------------------------------------------------------------------

    def start_conversation(self, workspace: Workspace, market: str | None = None) -> str:
        """A new conversation id (one agent contact, or one customer chat)."""
        conversation_id = uuid.uuid4().hex
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO conversations (id, workspace, market, started_at) VALUES (?, ?, ?, ?)",
                (conversation_id, workspace, market, _now()),
            )
        return conversation_id

    def log_question(
        self,
        conversation_id: str,
        *,
        role: str,
        market: str | None,
        question: str,
        search_query: str,
        answer: str,
        refused: bool,
        confidence: float,
        doc_ids: Sequence[str],
        latency_ms: float,
        generator: str,
    ) -> int:
        """Store one question and its answer, and append both to the conversation's transcript."""
        now = _now()
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO questions (conversation_id, asked_at, role, market, question, search_query, answer,"
                " refused, confidence, doc_ids, latency_ms, generator) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    now,
                    role,
                    market,
                    redact(question),
                    redact(search_query),
                    redact(answer),
                    int(refused),
                    float(confidence),
                    json.dumps(list(dict.fromkeys(doc_ids))),
                    float(latency_ms),
                    generator,
                ),
            )
            question_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO turns (conversation_id, question_id, speaker, content, created_at) VALUES (?, ?, ?, ?, ?)",
                [
                    (conversation_id, question_id, "user", redact(question), now),
                    (conversation_id, question_id, "assistant", redact(answer), now),
                ],
            )
        log.info("logged question id=%d refused=%s", question_id, refused)
        return question_id

    def add_feedback(self, question_id: int, rating: Rating, comment: str = "") -> int:
        if rating not in RATINGS:
            raise ValueError(f"rating must be one of {', '.join(RATINGS)}, got {rating!r}")
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO feedback (question_id, rating, comment, created_at) VALUES (?, ?, ?, ?)",
                (question_id, rating, redact(comment.strip()), _now()),
            )
        log.info("feedback question_id=%d rating=%s", question_id, rating)
        return int(cur.lastrowid or 0)

    def create_handoff(
        self,
        conversation_id: str,
        *,
        question: str,
        summary: str,
        searched: dict[str, Any],
        reason: str,
        market: str | None,
        question_id: int | None = None,
    ) -> HandoffRecord:
        """Record a hand-off to a person; the transcript is the conversation's stored turns."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT speaker, content FROM turns WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
            transcript = [{"role": r["speaker"], "content": r["content"]} for r in rows]
            clean_searched = json.loads(redact(json.dumps(searched, ensure_ascii=False, default=str)))
            cur = conn.execute(
                "INSERT INTO handoffs (conversation_id, question_id, created_at, question, summary, transcript,"
                " searched, reason, market) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    question_id,
                    _now(),
                    redact(question),
                    redact(summary),
                    json.dumps(transcript, ensure_ascii=False),
                    json.dumps(clean_searched, ensure_ascii=False),
                    redact(reason),  # a fixed phrase today; redacted like every other text that may quote a customer
                    market,
                ),
            )
            handoff_id = int(cur.lastrowid or 0)
        log.info("hand-off id=%d created conversation=%s", handoff_id, conversation_id)
        return self.handoff(handoff_id)  # type: ignore[return-value]

    # -- reading ------------------------------------------------------------------------------

    def handoff(self, handoff_id: int) -> HandoffRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM handoffs WHERE id = ?", (handoff_id,)).fetchone()
        return _handoff(row) if row else None

    def handoffs(self, status: str | None = None, limit: int = 200) -> list[HandoffRecord]:
        """Newest first."""
        query = "SELECT * FROM handoffs" + (" WHERE status = ?" if status else "") + " ORDER BY id DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(query, ((status, limit) if status else (limit,))).fetchall()
        return [_handoff(r) for r in rows]

    def transcript(self, conversation_id: str) -> list[dict[str, str]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT speaker, content FROM turns WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [{"role": r["speaker"], "content": r["content"]} for r in rows]

    def logged_questions(self, since: str | None = None, role: str | None = None) -> list[LoggedQuestion]:
        """Every logged question (redacted), oldest first: what the coverage-gap report clusters."""
        clauses, params = [], []
        if since:
            clauses.append("asked_at >= ?")
            params.append(since)
        if role:
            clauses.append("role = ?")
            params.append(role)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM questions{where} ORDER BY id", params).fetchall()
        return [
            LoggedQuestion(
                id=r["id"],
                conversation_id=r["conversation_id"],
                asked_at=r["asked_at"],
                role=r["role"],
                market=r["market"],
                question=r["question"],
                search_query=r["search_query"],
                refused=bool(r["refused"]),
                confidence=r["confidence"],
                doc_ids=json.loads(r["doc_ids"]),
            )
            for r in rows
        ]

    def export_questions_jsonl(self, path: Path, since: str | None = None) -> int:
        """Write the logged questions as JSON lines (for ``kbassist gaps`` or other tools). Returns the count."""
        questions = self.logged_questions(since)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for q in questions:
                out.write(json.dumps(q.__dict__, ensure_ascii=False) + "\n")
        return len(questions)

    def feedback_summary(self, comments: int = 20) -> FeedbackSummary:
        with self._connect() as conn:
            counts = {
                r["rating"]: r["n"]
                for r in conn.execute("SELECT rating, COUNT(*) AS n FROM feedback GROUP BY rating").fetchall()
            }
            rows = conn.execute(
                "SELECT f.rating, f.comment, q.question FROM feedback f JOIN questions q ON q.id = f.question_id"
                " WHERE f.comment != '' ORDER BY f.id DESC LIMIT ?",
                (comments,),
            ).fetchall()
        return FeedbackSummary(counts, [(r["rating"], r["comment"], r["question"]) for r in rows])

    def top_unanswered(self, limit: int = 10, role: str | None = None) -> list[UnansweredQuestion]:
        """Refused questions grouped by normalised text, most frequent first."""
        query = "SELECT question, asked_at FROM questions WHERE refused = 1" + (" AND role = ?" if role else "")
        with self._connect() as conn:
            rows = conn.execute(query, (role,) if role else ()).fetchall()
        groups: dict[str, list[sqlite3.Row]] = defaultdict(list)
        for row in rows:
            groups[_normalise(row["question"])].append(row)
        ranked = sorted(groups.values(), key=lambda g: (-len(g), -max(_ts(r) for r in g)))
        result = []
        for group in ranked[:limit]:
            wording = Counter(r["question"] for r in group).most_common(1)[0][0]
            result.append(UnansweredQuestion(wording, len(group), max(r["asked_at"] for r in group)))
        return result

    def deflection_by_day(self) -> list[DeflectionDay]:
        """Deflection and false deflection of customer questions, per UTC day, oldest first."""
        with self._connect() as conn:
            questions = conn.execute(
                "SELECT id, conversation_id, asked_at, refused FROM questions WHERE role = 'customer' ORDER BY id"
            ).fetchall()
            handed_off = {
                r["question_id"]
                for r in conn.execute("SELECT DISTINCT question_id FROM handoffs WHERE question_id IS NOT NULL")
            }
            unhelpful = {
                r["question_id"]
                for r in conn.execute("SELECT DISTINCT question_id FROM feedback WHERE rating = 'not_helpful'")
            }
        days: dict[str, list[int]] = {}
        for q in questions:
            counts = days.setdefault(q["asked_at"][:10], [0, 0, 0, 0])
            counts[0] += 1
            if q["refused"]:
                continue
            counts[1] += 1
            if q["id"] not in handed_off:
                counts[2] += 1
            if q["id"] in handed_off or q["id"] in unhelpful:
                counts[3] += 1
        return [DeflectionDay(day, *counts) for day, counts in sorted(days.items())]

    def counts(self) -> dict[str, int]:
        """Row counts for a quick overview."""
        with self._connect() as conn:
            return {
                table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("conversations", "questions", "feedback", "handoffs")
            }


def _ts(row: sqlite3.Row) -> float:
    return datetime.fromisoformat(row["asked_at"]).timestamp()


def _handoff(row: sqlite3.Row) -> HandoffRecord:
    return HandoffRecord(
        id=row["id"],
        conversation_id=row["conversation_id"],
        question_id=row["question_id"],
        created_at=row["created_at"],
        question=row["question"],
        summary=row["summary"],
        transcript=json.loads(row["transcript"]),
        searched=json.loads(row["searched"]),
        reason=row["reason"],
        market=row["market"],
        status=row["status"],
    )

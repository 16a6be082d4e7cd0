"""Conversations, their turns, the questions asked in them, and how people rated the answers.

A conversation id is a random 192-bit token: the customer's way back to their chat (carried in a
URL or cookie by the page), so it must not be guessable. Every text stored here is redacted by
the column types; what comes back out is the redacted text.

Ratings are one state per answer per rater: rating again replaces the earlier verdict, so an
answer is never both "used in my reply" and "not helpful" for the same person.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kb.state.models import RATINGS, Conversation, Message, Question, Rating
from kb.state.types import utcnow

if TYPE_CHECKING:
    from kb.state.handoffs import HandoffRecord
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

RatingValue = Literal["helpful", "not_helpful", "used"]
Channel = Literal["web", "cli"]
_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_conversation_id() -> str:
    return secrets.token_urlsafe(24)


def valid_conversation_id(value: object) -> bool:
    """Whether ``value`` could be a conversation id at all (checked before any query; URLs carry junk)."""
    return isinstance(value, str) and bool(_CONVERSATION_ID.fullmatch(value))


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
class StoredExchange:
    """A question and its answer as stored, with the ratings it has now (rater → rating)."""

    question_id: int
    asked_at: datetime
    question: str
    answer: str
    refused: bool
    confidence: float
    search_query: str
    citations: list[dict[str, Any]]
    ratings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConversationRecord:
    """Everything a page needs to restore a chat after a reload, or when the customer comes back."""

    id: str
    channel: str
    role: str
    market: str | None
    started_at: datetime
    updated_at: datetime
    messages: list[dict[str, str]]
    exchanges: list[StoredExchange]
    handoff: HandoffRecord | None

    @property
    def status(self) -> str | None:
        """What the customer may be told about their hand-off, or None when there is none."""
        return self.handoff.customer_status if self.handoff else None


class Conversations:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    # -- writing --------------------------------------------------------------------------------

    def start(self, role: str, market: str | None = None, *, channel: Channel = "web") -> str:
        """A new conversation (one customer chat, one agent contact, one CLI ask); returns its id."""
        now = utcnow()
        conversation_id = new_conversation_id()
        with self.store.write() as session:
            session.add(
                Conversation(
                    id=conversation_id, channel=channel, role=role, market=market, started_at=now, updated_at=now
                )
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
        citations: Sequence[dict[str, Any]] = (),
        language: str | None = None,
    ) -> int:
        """Store one question and its answer, and append both to the conversation's turns."""
        now = utcnow()
        with self.store.write() as session:
            row = Question(
                conversation_id=conversation_id,
                asked_at=now,
                role=role,
                market=market,
                language=language,
                question=question,
                search_query=search_query,
                answer=answer,
                refused=bool(refused),
                confidence=float(confidence),
                doc_ids=list(dict.fromkeys(doc_ids)),
                citations=list(citations),
                latency_ms=float(latency_ms),
                generator=generator,
            )
            session.add(row)
            session.flush()
            session.add_all(
                [
                    Message(
                        conversation_id=conversation_id,
                        question_id=row.id,
                        speaker="user",
                        content=question,
                        created_at=now,
                    ),
                    Message(
                        conversation_id=conversation_id,
                        question_id=row.id,
                        speaker="assistant",
                        content=answer,
                        created_at=now,
                    ),
                ]
            )
            _touch(session, conversation_id, now)
            question_id = row.id
        log.info("logged question id=%d refused=%s", question_id, refused)
        return question_id

    def add_message(self, conversation_id: str, speaker: str, content: str) -> None:
        """A turn that is not a question and answer (e.g. what the chat told the customer after a hand-off)."""
        now = utcnow()
        with self.store.write() as session:
            session.add(Message(conversation_id=conversation_id, speaker=speaker, content=content, created_at=now))
            _touch(session, conversation_id, now)

    def rate(self, question_id: int, rating: RatingValue, *, rater: str, comment: str = "") -> None:
        """``rater``'s verdict on one answer; a second rating by the same rater replaces the first."""
        if rating not in RATINGS:
            raise ValueError(f"rating must be one of {', '.join(RATINGS)}, got {rating!r}")
        now = utcnow()
        values = {
            "question_id": question_id,
            "rater": rater,
            "rating": rating,
            "comment": comment.strip(),
            "created_at": now,
            "updated_at": now,
        }
        with self.store.write() as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = insert(Rating).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=[Rating.question_id, Rating.rater],
                set_={
                    "rating": statement.excluded.rating,
                    "comment": statement.excluded.comment,
                    "updated_at": statement.excluded.updated_at,
                },
            )
            session.execute(statement)
        log.info("feedback question_id=%d rating=%s", question_id, rating)

    # -- reading --------------------------------------------------------------------------------

    def exists(self, conversation_id: str) -> bool:
        if not valid_conversation_id(conversation_id):
            return False
        with self.store.read() as session:
            return session.get(Conversation, conversation_id) is not None

    def transcript(self, conversation_id: str) -> list[dict[str, str]]:
        with self.store.read() as session:
            return _transcript(session, conversation_id)

    def ratings(self, question_id: int) -> dict[str, str]:
        with self.store.read() as session:
            rows = session.execute(select(Rating.rater, Rating.rating).where(Rating.question_id == question_id)).all()
        return {rater: rating for rater, rating in rows}

    def load(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation with its turns, answers, ratings and latest hand-off; None for an unknown id.

        The hand-off comes without the customer's contact details: this is what a customer's own
        page shows. Staff read contact details through :class:`kb.state.handoffs.Handoffs`.
        """
        from kb.state.handoffs import latest_for_conversation

        if not valid_conversation_id(conversation_id):
            return None
        with self.store.read() as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                return None
            questions = session.scalars(
                select(Question).where(Question.conversation_id == conversation_id).order_by(Question.id)
            ).all()
            ratings: dict[int, dict[str, str]] = {}
            if questions:
                for qid, rater, rating in session.execute(
                    select(Rating.question_id, Rating.rater, Rating.rating).where(
                        Rating.question_id.in_([q.id for q in questions])
                    )
                ):
                    ratings.setdefault(qid, {})[rater] = rating
            exchanges = [
                StoredExchange(
                    question_id=q.id,
                    asked_at=q.asked_at,
                    question=q.question,
                    answer=q.answer,
                    refused=q.refused,
                    confidence=q.confidence,
                    search_query=q.search_query,
                    citations=q.citations,
                    ratings=ratings.get(q.id, {}),
                )
                for q in questions
            ]
            return ConversationRecord(
                id=conversation.id,
                channel=conversation.channel,
                role=conversation.role,
                market=conversation.market,
                started_at=conversation.started_at,
                updated_at=conversation.updated_at,
                messages=_transcript(session, conversation_id),
                exchanges=exchanges,
                handoff=latest_for_conversation(session, conversation_id, include_contact=False),
            )

    def logged_questions(self, since: datetime | None = None, role: str | None = None) -> list[LoggedQuestion]:
        """Every logged question (redacted), oldest first: what the coverage-gap report clusters."""
        query = select(Question).order_by(Question.id)
        if since is not None:
            query = query.where(Question.asked_at >= since)
        if role:
            query = query.where(Question.role == role)
        with self.store.read() as session:
            rows = session.scalars(query).all()
        return [
            LoggedQuestion(
                id=r.id,
                conversation_id=r.conversation_id,
                asked_at=r.asked_at.isoformat(timespec="seconds"),
                role=r.role,
                market=r.market,
                question=r.question,
                search_query=r.search_query,
                refused=r.refused,
                confidence=r.confidence,
                doc_ids=list(r.doc_ids),
            )
            for r in rows
        ]

    def export_questions_jsonl(self, path: Path, since: datetime | None = None) -> int:
        """Write the logged questions as JSON lines (for ``kbassist gaps --questions`` or other tools)."""
        questions = self.logged_questions(since)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for q in questions:
                out.write(json.dumps(asdict(q), ensure_ascii=False) + "\n")
        return len(questions)

    def count(self) -> int:
        with self.store.read() as session:
            return session.scalar(select(func.count()).select_from(Conversation)) or 0


def _touch(session: Session, conversation_id: str, now: datetime) -> None:
    session.execute(update(Conversation).where(Conversation.id == conversation_id).values(updated_at=now))


def _transcript(session: Session, conversation_id: str) -> list[dict[str, str]]:
    rows = session.execute(
        select(Message.speaker, Message.content).where(Message.conversation_id == conversation_id).order_by(Message.id)
    ).all()
    return [{"role": speaker, "content": content} for speaker, content in rows]

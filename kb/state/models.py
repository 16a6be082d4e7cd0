"""The state store's tables, as SQLAlchemy 2.x typed models.

One schema for SQLite and PostgreSQL: text columns with no database-specific types, JSON kept
as (redacted) text, datetimes in UTC. The schema itself is created and changed only by the
Alembic migrations in ``kb/state/migrations``; these models must match them (a test compares
the two).

Free text is redacted by the column types (:mod:`kb.state.types`). The customer's contact for a
hand-off (``handoffs.contact_value``) is the one plain column: the team must be able to reach
the customer. It is never logged and only staff services return it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kb.state.types import RedactedJSON, RedactedText, UTCDateTime

# Stable constraint names, so later migrations can alter them on SQLite (batch mode) and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RATINGS = ("helpful", "not_helpful", "used")
HANDOFF_REASONS = ("customer_asked", "low_confidence", "restricted_topic")
HANDOFF_STATUSES = ("open", "claimed", "resolved")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
ROLES = ("agent", "owner")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Meta(Base):
    """Facts about the store itself (e.g. that the old interaction log was imported)."""

    __tablename__ = "state_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Conversation(Base):
    """One customer chat, one agent contact, or one command-line conversation.

    The id is a random 192-bit token: it is what a customer carries (URL, cookie) to come back.
    """

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # "web" | "cli"
    role: Mapped[str] = mapped_column(String(16))  # who asks: customer | agent | internal
    market: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Question(Base):
    """One question and what the assistant did with it: the input of analytics and the gap report."""

    __tablename__ = "questions"
    __table_args__ = (Index(None, "asked_at"), Index(None, "conversation_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    role: Mapped[str] = mapped_column(String(16))
    market: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(16))
    question: Mapped[str] = mapped_column(RedactedText())
    search_query: Mapped[str] = mapped_column(RedactedText())
    answer: Mapped[str] = mapped_column(RedactedText())
    refused: Mapped[bool] = mapped_column(Boolean)
    confidence: Mapped[float] = mapped_column(Float)
    doc_ids: Mapped[list[str]] = mapped_column(RedactedJSON())
    citations: Mapped[list[dict[str, Any]]] = mapped_column(RedactedJSON())
    latency_ms: Mapped[float] = mapped_column(Float)
    generator: Mapped[str] = mapped_column(String(64))


class Message(Base):
    """A turn of a conversation as shown to the people in it (user or assistant)."""

    __tablename__ = "messages"
    __table_args__ = (Index(None, "conversation_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    question_id: Mapped[int | None] = mapped_column(ForeignKey("questions.id", ondelete="SET NULL"))
    speaker: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(RedactedText())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Rating(Base):
    """One rater's current verdict on one answer: rating again replaces it (last one wins)."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("question_id", "rater"),
        CheckConstraint(_in("rating", RATINGS), name="rating"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"))
    rater: Mapped[str] = mapped_column(String(128))
    rating: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(RedactedText(), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Handoff(Base):
    """A conversation passed to a person: open → claimed (by an agent) → resolved."""

    __tablename__ = "handoffs"
    __table_args__ = (
        Index(None, "status", "created_at"),
        Index(None, "conversation_id"),
        CheckConstraint(_in("reason", HANDOFF_REASONS), name="reason"),
        CheckConstraint(_in("status", HANDOFF_STATUSES), name="status"),
        CheckConstraint("contact_value IS NULL OR contact_consent", name="contact_needs_consent"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    question_id: Mapped[int | None] = mapped_column(ForeignKey("questions.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    question: Mapped[str] = mapped_column(RedactedText())
    summary: Mapped[str] = mapped_column(RedactedText())
    transcript: Mapped[list[dict[str, str]]] = mapped_column(RedactedJSON())
    searched: Mapped[dict[str, Any]] = mapped_column(RedactedJSON())
    reason: Mapped[str] = mapped_column(String(32))
    market: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(16))
    customer_ref: Mapped[str | None] = mapped_column(String(128))
    contact_kind: Mapped[str | None] = mapped_column(String(8))
    contact_value: Mapped[str | None] = mapped_column(String(320))  # deliberately not redacted: see module doc
    contact_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_text: Mapped[str | None] = mapped_column(RedactedText())
    status: Mapped[str] = mapped_column(String(16), default="open")
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HandoffNote(Base):
    """What the person handling a hand-off wrote down (redacted like every other text)."""

    __tablename__ = "handoff_notes"
    __table_args__ = (Index(None, "handoff_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(RedactedText())


class WebhookDelivery(Base):
    """The outbox: one event for the help desk, retried with back-off until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(32))
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(RedactedJSON())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(RedactedText())
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Account(Base):
    """A member of staff who signs in to the agent or owner workspace."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StaffSession(Base):
    """A signed-in session. Only the SHA-256 of its token is stored: a copy of the database signs no one in."""

    __tablename__ = "staff_sessions"
    __table_args__ = (Index(None, "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigninThrottle(Base):
    """Recent failed sign-ins per account name or per client, keyed by a hash of the name or client key.

    Kept per *submitted* name, existing or not, so a locked or slowed-down name says nothing about
    whether such an account exists.
    """

    __tablename__ = "signin_throttle"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "account" | "client"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what, when: sign-ins, account changes, changes to the knowledge base, hand-off work."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"), Index(None, "action"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(RedactedText())
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(RedactedText(), default="")
    details: Mapped[dict[str, Any]] = mapped_column(RedactedJSON())

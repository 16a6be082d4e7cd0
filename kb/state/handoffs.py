"""The hand-off queue: conversations passed to a person, and their way from open to resolved.

``open`` (waiting for a person) → ``claimed`` (an agent is on it) → ``resolved``. Claiming is one
conditional UPDATE (``... WHERE status = 'open'``), so when two agents claim the same hand-off at
the same moment exactly one wins and the other is told who did, on SQLite and PostgreSQL alike.

A hand-off carries the (redacted) transcript, the question that triggered it (none when the
customer asked for a person about something else), why it was made, what was searched, market
and language. A customer who is not identified may leave an e-mail address or a phone number,
with their consent and the consent text they were shown: that is the one value stored
unredacted, because the team must reach them. It is never logged and only staff reads return it
(``include_contact=True``); the customer's own page gets the status and the reference.

Creating a hand-off (and, if configured, resolving one) queues a webhook event for the help desk
in the same transaction (:mod:`kb.state.outbox`): no hand-off without its event, and no event
for a hand-off that was rolled back.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kb.state.audit import add_entry
from kb.state.models import HANDOFF_REASONS, Account, Handoff, HandoffNote
from kb.state.types import utcnow

if TYPE_CHECKING:
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

HandoffReason = Literal["customer_asked", "low_confidence", "restricted_topic"]
HandoffStatus = Literal["open", "claimed", "resolved"]

# What a customer is told about their hand-off: derived from the real state, nothing more.
CUSTOMER_STATUS: dict[str, str] = {
    "open": "waiting for a person",
    "claimed": "a person is looking at it",
    "resolved": "resolved",
}

_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{5,24}")


class HandoffNotFound(LookupError):
    """No hand-off with that id."""


class HandoffConflict(RuntimeError):
    """The hand-off is not in a state that allows this (already claimed by someone else, resolved)."""


@dataclass(frozen=True)
class Contact:
    """How the team may reach a customer who is not identified, given with their consent."""

    kind: Literal["email", "phone"]
    value: str = field(repr=False)
    consent: bool
    consent_text: str

    def __post_init__(self) -> None:
        if self.kind not in ("email", "phone"):
            raise ValueError("contact kind must be 'email' or 'phone'")
        if not self.consent or not self.consent_text.strip():
            raise ValueError("contact details are stored only with the customer's consent and the text they agreed to")
        pattern = _EMAIL if self.kind == "email" else _PHONE
        if not pattern.fullmatch(self.value.strip()) or (
            self.kind == "phone" and sum(ch.isdigit() for ch in self.value) < 6
        ):
            raise ValueError(
                f"that does not look like {'an e-mail address' if self.kind == 'email' else 'a phone number'}"
            )


@dataclass(frozen=True)
class HandoffNoteRecord:
    author: str
    created_at: datetime
    text: str


@dataclass(frozen=True)
class HandoffRecord:
    id: int
    conversation_id: str
    question_id: int | None
    created_at: datetime
    updated_at: datetime
    question: str
    summary: str
    transcript: list[dict[str, str]]
    searched: dict[str, Any]
    reason: str
    market: str | None
    language: str | None
    status: str
    claimed_by: str | None
    claimed_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    customer_ref: str | None = None
    notes: list[HandoffNoteRecord] = field(default_factory=list)
    contact: Contact | None = field(default=None, repr=False)

    @property
    def reference(self) -> str:
        """What the customer and the team call it: ``H-42``."""
        return f"H-{self.id}"

    @property
    def customer_status(self) -> str:
        return CUSTOMER_STATUS[self.status]


def _record(session: Session, row: Handoff, include_contact: bool) -> HandoffRecord:
    notes = session.scalars(select(HandoffNote).where(HandoffNote.handoff_id == row.id).order_by(HandoffNote.id)).all()
    contact = None
    if include_contact and row.contact_value and row.contact_kind in ("email", "phone"):
        contact = Contact(row.contact_kind, row.contact_value, row.contact_consent, row.consent_text or "")  # type: ignore[arg-type]
    return HandoffRecord(
        id=row.id,
        conversation_id=row.conversation_id,
        question_id=row.question_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        question=row.question,
        summary=row.summary,
        transcript=row.transcript,
        searched=row.searched,
        reason=row.reason,
        market=row.market,
        language=row.language,
        status=row.status,
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        customer_ref=row.customer_ref,
        notes=[HandoffNoteRecord(n.author, n.created_at, n.text) for n in notes],
        contact=contact,
    )


def latest_for_conversation(session: Session, conversation_id: str, *, include_contact: bool) -> HandoffRecord | None:
    row = session.scalars(
        select(Handoff).where(Handoff.conversation_id == conversation_id).order_by(Handoff.id.desc()).limit(1)
    ).first()
    return _record(session, row, include_contact) if row is not None else None


class Handoffs:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def create(
        self,
        conversation_id: str,
        *,
        question: str,
        summary: str,
        searched: dict[str, Any],
        reason: HandoffReason,
        market: str | None,
        language: str | None = None,
        question_id: int | None = None,
        contact: Contact | None = None,
        customer_ref: str | None = None,
    ) -> HandoffRecord:
        """Record a hand-off; the transcript is the conversation's stored turns. Queues the help-desk event."""
        from kb.state.conversations import _transcript
        from kb.state.outbox import enqueue

        if reason not in HANDOFF_REASONS:
            raise ValueError(f"hand-off reason must be one of {', '.join(HANDOFF_REASONS)}, got {reason!r}")
        now = utcnow()
        with self.store.write() as session:
            row = Handoff(
                conversation_id=conversation_id,
                question_id=question_id,
                created_at=now,
                updated_at=now,
                question=question,
                summary=summary,
                transcript=_transcript(session, conversation_id),
                searched=searched,
                reason=reason,
                market=market,
                language=language,
                customer_ref=customer_ref,
                contact_kind=contact.kind if contact else None,
                contact_value=contact.value.strip() if contact else None,
                contact_consent=bool(contact and contact.consent),
                consent_text=contact.consent_text if contact else None,
                status="open",
            )
            session.add(row)
            session.flush()
            session.refresh(row)  # read back what was stored (redacted), not the values passed in
            enqueue(session, self.store.settings, "handoff.created", row)
            record = _record(session, row, include_contact=True)
        log.info("hand-off id=%d created reason=%s contact=%s", record.id, reason, "yes" if contact else "no")
        return record

    def get(self, handoff_id: int, *, include_contact: bool = False) -> HandoffRecord | None:
        with self.store.read() as session:
            row = session.get(Handoff, handoff_id)
            return _record(session, row, include_contact) if row is not None else None

    def list(
        self, status: HandoffStatus | None = None, limit: int = 200, *, include_contact: bool = False
    ) -> list[HandoffRecord]:
        """Newest first (the queue screen may sort differently; this is the stored order)."""
        query = select(Handoff).order_by(Handoff.id.desc()).limit(limit)
        if status:
            query = query.where(Handoff.status == status)
        with self.store.read() as session:
            return [_record(session, row, include_contact) for row in session.scalars(query).all()]

    def for_conversation(self, conversation_id: str) -> HandoffRecord | None:
        """The conversation's latest hand-off, as the customer may see it (no contact details)."""
        with self.store.read() as session:
            return latest_for_conversation(session, conversation_id, include_contact=False)

    def claim(self, handoff_id: int, agent: str, *, actor: str | None = None) -> HandoffRecord:
        """``agent`` takes the hand-off. Exactly one of several simultaneous claims wins; the others raise.

        ``actor`` is who did it for the audit log when that is not the agent (``cli:<os user>``).
        """
        now = utcnow()
        with self.store.write() as session:
            _require_account(session, agent)
            won = session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == "open")
                .values(status="claimed", claimed_by=agent, claimed_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won != 1:
                raise _conflict(session, handoff_id, "claim")
            add_entry(session, actor or agent, "handoff.claim", f"H-{handoff_id}", {"agent": agent})
            record = _record(session, session.get(Handoff, handoff_id, populate_existing=True), include_contact=True)  # type: ignore[arg-type]
        log.info("hand-off id=%d claimed", handoff_id)
        return record

    def release(self, handoff_id: int, agent: str, *, actor: str | None = None) -> HandoffRecord:
        """The agent who claimed it puts it back in the queue."""
        now = utcnow()
        with self.store.write() as session:
            done = session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == "claimed", Handoff.claimed_by == agent)
                .values(status="open", claimed_by=None, claimed_at=None, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if done != 1:
                raise _conflict(session, handoff_id, "release", agent)
            add_entry(session, actor or agent, "handoff.release", f"H-{handoff_id}", {"agent": agent})
            record = _record(session, session.get(Handoff, handoff_id, populate_existing=True), include_contact=True)  # type: ignore[arg-type]
        return record

    def resolve(self, handoff_id: int, agent: str, note: str = "", *, actor: str | None = None) -> HandoffRecord:
        """Close the hand-off (claimed by ``agent``, or still open), with an optional note."""
        from kb.state.outbox import enqueue

        now = utcnow()
        with self.store.write() as session:
            _require_account(session, agent)
            done = session.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff_id,
                    (Handoff.status == "open") | ((Handoff.status == "claimed") & (Handoff.claimed_by == agent)),
                )
                .values(status="resolved", resolved_by=agent, resolved_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if done != 1:
                raise _conflict(session, handoff_id, "resolve", agent)
            if note.strip():
                session.add(HandoffNote(handoff_id=handoff_id, author=agent, created_at=now, text=note.strip()))
            details = {"agent": agent, "note": bool(note.strip())}
            add_entry(session, actor or agent, "handoff.resolve", f"H-{handoff_id}", details)
            row = session.get(Handoff, handoff_id, populate_existing=True)
            assert row is not None
            if self.store.settings.handoff_webhook_on_resolve:
                enqueue(session, self.store.settings, "handoff.resolved", row)
            record = _record(session, row, include_contact=True)
        log.info("hand-off id=%d resolved", handoff_id)
        return record

    def add_note(self, handoff_id: int, author: str, text: str, *, actor: str | None = None) -> HandoffRecord:
        """A note by ``author`` (an account name), audited as ``actor`` (default: the author)."""
        if not text.strip():
            raise ValueError("a note needs some text")
        with self.store.write() as session:
            row = session.get(Handoff, handoff_id)
            if row is None:
                raise HandoffNotFound(f"no hand-off H-{handoff_id}")
            session.add(HandoffNote(handoff_id=handoff_id, author=author, created_at=utcnow(), text=text.strip()))
            session.flush()
            add_entry(session, actor or author, "handoff.note", f"H-{handoff_id}", {"agent": author})
            return _record(session, row, include_contact=True)

    def open_for_reading(self, handoff_id: int, *, actor: str) -> HandoffRecord:
        """The hand-off in full, contact included, for a member of staff; the reading is audited."""
        with self.store.write() as session:
            row = session.get(Handoff, handoff_id)
            if row is None:
                raise HandoffNotFound(f"no hand-off H-{handoff_id}")
            add_entry(session, actor, "handoff.view", f"H-{handoff_id}", {"contact": bool(row.contact_value)})
            return _record(session, row, include_contact=True)

    def counts(self) -> dict[str, int]:
        """Hand-offs per status (every status present, zero or not)."""
        from sqlalchemy import func

        with self.store.read() as session:
            rows = session.execute(select(Handoff.status, func.count()).group_by(Handoff.status)).all()
        return {"open": 0, "claimed": 0, "resolved": 0} | {status: n for status, n in rows}


def _require_account(session: Session, username: str) -> None:
    if session.scalar(select(Account.id).where(Account.username == username)) is None:
        raise HandoffConflict(f"no staff account {username!r}: only signed-in staff work on hand-offs")


def _conflict(session: Session, handoff_id: int, action: str, agent: str | None = None) -> Exception:
    row = session.get(Handoff, handoff_id, populate_existing=True)
    if row is None:
        return HandoffNotFound(f"no hand-off H-{handoff_id}")
    if row.status == "claimed":
        if action == "claim":
            return HandoffConflict(f"H-{handoff_id} is already claimed by {row.claimed_by}")
        return HandoffConflict(f"H-{handoff_id} is claimed by {row.claimed_by}, not {agent}")
    if row.status == "resolved":
        return HandoffConflict(f"H-{handoff_id} is already resolved")
    return HandoffConflict(f"H-{handoff_id} is {row.status}: cannot {action} it")

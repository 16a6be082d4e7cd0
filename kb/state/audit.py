"""The audit log: who did what, when, to what — sign-ins, account changes, knowledge-base changes.

Entries are only ever appended. ``details`` holds ids and counts (never document text or what a
customer wrote); like every text column it is redacted on the way in all the same.

Changing the knowledge base from anywhere (the CLI's ``ingest`` and ``kb remove``, the owner
workspace's upload and ingest) records one entry through :func:`record_kb_change`.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.state.models import AuditEntry
from kb.state.types import utcnow

if TYPE_CHECKING:
    from kb.settings import Settings
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

# The knowledge-base actions the audit log knows; other modules add their own names freely.
KB_ACTIONS = ("kb.ingest", "kb.upload", "kb.remove", "kb.publish")


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


def cli_actor() -> str:
    """``cli:<os user>``: who ran a command, as far as the machine knows."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no LOGNAME/USER
        user = "unknown"
    return f"cli:{user}"


def add_entry(
    session: Session, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None
) -> int:
    """Append an entry inside the caller's transaction, so the change and its record commit together."""
    entry = AuditEntry(at=utcnow(), actor=actor, action=action, target=target, details=details or {})
    session.add(entry)
    session.flush()
    log.info("audit id=%d action=%s", entry.id, action)
    return entry.id


class AuditLog:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def record(self, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None) -> int:
        with self.store.write() as session:
            return add_entry(session, actor, action, target, details)

    def entries(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Newest first. ``action`` may end in ``.*`` to mean a family (``signin.*``)."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action:
            if action.endswith(".*"):
                query = query.where(AuditEntry.action.startswith(action[:-1]))
            else:
                query = query.where(AuditEntry.action == action)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        if since:
            query = query.where(AuditEntry.at >= since)
        with self.store.read() as session:
            rows = session.scalars(query).all()
        return [AuditRecord(r.id, r.at, r.actor, r.action, r.target, r.details) for r in rows]


def ingest_details(report: Any) -> dict[str, Any]:
    """What an ingest did, for its audit entry: document ids per outcome and counts (an IngestReport)."""
    return {
        "added": list(report.added),
        "updated": list(report.updated),
        "deleted": list(report.deleted),
        "replaced": [r.doc_id for r in getattr(report, "replaced", [])],
        "unchanged": len(report.unchanged),
        "failed": len(report.errors),
        "chunks_written": report.chunks_written,
    }


def record_kb_change(
    settings: Settings,
    *,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> int:
    """Audit one change to the knowledge base (``kb.ingest``, ``kb.upload``, ``kb.remove``, ``kb.publish``).

    The one call for every command or page that changes the knowledge base, e.g. after removing
    documents: ``record_kb_change(settings, actor=cli_actor(), action="kb.remove",
    target="refunds-se", details={"doc_ids": ["refunds-se"], "chunks": 12})``.
    """
    from kb.state.store import open_state

    return open_state(settings).audit(actor, action, target, details)

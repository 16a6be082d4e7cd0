"""The app's state store (SQLAlchemy + Alembic): conversations, feedback, hand-offs, webhook outbox,
staff accounts and sessions, and the audit log, in one SQLite file or one PostgreSQL database.

Importing this package is cheap; SQLAlchemy loads on the first :func:`open_state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kb.state.errors import SchemaTooNew, StateUnavailable

if TYPE_CHECKING:
    from kb.settings import Settings
    from kb.state.store import StateStore

__all__ = ["SchemaTooNew", "StateUnavailable", "open_state"]


def open_state(settings: Settings | None = None) -> StateStore:
    """The process's state store for these settings, opened and migrated once (see kb.state.store)."""
    from kb.state.store import open_state as _open_state

    return _open_state(settings)

"""Alembic environment for the state store: always run from code, on a connection it is handed.

``StateStore.migrate`` (and ``kbassist state upgrade``) pass an open connection inside a locked
transaction in ``config.attributes["connection"]``; there is no alembic.ini and no URL here.
How to write a new migration: kb/state/migrations/README.md.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.types import TypeDecorator

from kb.state.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the state store's migrations run through kb.state (StateStore.migrate), not the alembic CLI")


def render_item(kind: str, obj: Any, _context: Any) -> str | bool:
    """Migrations spell out plain SQL types: redaction is the models' business, not the schema's."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


# Batch mode lets later migrations alter tables on SQLite (copy-and-move) and PostgreSQL alike.
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()

"""Column types that redact on the way in, so no caller can store personal data by forgetting to.

Every free-text column of the state store is :class:`RedactedText` or :class:`RedactedJSON`:
SQLAlchemy passes each bound value through :func:`kb.redact.redact` before it reaches the
database, whichever repository, script or migration wrote it. The one deliberate exception, a
customer's contact details for a hand-off, is a plain column (``HandoffRow.contact_value``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from kb.redact import redact


class RedactedText(TypeDecorator[str]):
    """Text with e-mails, phone numbers, card numbers, IBANs and personnummer replaced."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else redact(value)


class RedactedJSON(TypeDecorator[Any]):
    """A JSON document (stored as text, the same on SQLite and PostgreSQL), redacted as a whole."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        # Each string first: once encoded, a line break or tab inside a number is the two
        # characters "\n", which would glue its groups to a letter. Then the document as a whole,
        # for numbers stored as JSON numbers.
        return redact(json.dumps(_redact_strings(value), ensure_ascii=False, default=str, sort_keys=True))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def _redact_strings(value: Any) -> Any:
    """``value`` with every string in it (keys included) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact_strings(k) if isinstance(k, str) else k: _redact_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_strings(v) for v in value]
    return value


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no zone; PostgreSQL keeps one)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, in UTC, to the microsecond (the resolution both backends keep)."""
    return datetime.now(UTC)

"""A fresh database per test for the state store: a SQLite file, or a PostgreSQL database made for it.

PostgreSQL comes from ``KBASSIST_TEST_POSTGRES_URL`` (``scripts/test`` starts the server and sets
it, so in CI these tests always run); without the variable, locally, the PostgreSQL cases skip.
Each PostgreSQL case creates a uniquely named database and drops it afterwards, whatever happened.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_ENV = "KBASSIST_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``base_url``; yields its SQLAlchemy URL, drops it on exit."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    name = f"kbassist_test_{uuid.uuid4().hex[:16]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from kb.state.store import close_all

        close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite'}"
        return
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (scripts/test sets it)")
    with postgres_database(base) as url:
        yield url

"""The state store: one SQLAlchemy engine per database, migrated on open, failures as one clear error.

SQLite (the default, a file in the data folder) runs in WAL mode with foreign keys on and a busy
timeout; every write transaction starts with ``BEGIN IMMEDIATE``, so two writers queue for the
lock instead of failing when a read turns into a write. PostgreSQL is for deployments with
several processes or machines; its connections are checked before use, so a restarted server
costs one failed request, not a restart of the app.

Opening a store applies any missing Alembic migration (shipped in ``kb/state/migrations``, no
``alembic.ini`` needed) in one transaction, under a lock, so two processes starting together
migrate once. A database migrated by a newer release is refused with :class:`SchemaTooNew`.
Anything that makes the database unusable (server unreachable, disk full, read-only or damaged
file) is raised as :class:`StateUnavailable` with the reason, never a driver traceback.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kb.diskcheck import disk_problem
from kb.state.errors import SchemaTooNew, StateUnavailable

if TYPE_CHECKING:
    from kb.settings import Settings
    from kb.state.accounts import Accounts
    from kb.state.analytics import Analytics
    from kb.state.audit import AuditLog
    from kb.state.conversations import Conversations
    from kb.state.handoffs import Handoffs
    from kb.state.outbox import Outbox

log = logging.getLogger(__name__)

# The newest migration this release ships; a test checks it is the head of kb/state/migrations.
HEAD_REVISION = "0001"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 10.0
# Any constant will do: it only has to be the same in every process migrating the same database.
_PG_MIGRATION_LOCK = 0x6B6261_7374_61


# SQLite primary result codes about the file or its disk, not about the SQL:
# PERM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_SQLITE_FILE_ERRORS = frozenset({3, 8, 10, 11, 13, 14, 26})


def _pg_unavailable(sqlstate: str | None) -> bool:
    """Connection failures (08), resources such as a full disk (53), shutdowns (57P), system errors (58),
    a read-only server (25006); a connect that failed before any SQLSTATE has none."""
    return sqlstate is None or sqlstate.startswith(("08", "53", "57P", "58")) or sqlstate == "25006"


class StateStore:
    """The app's state in one database: conversations, feedback, hand-offs, accounts, sessions, audit.

    Cheap to share between threads; build one per process with :func:`open_state`. Repositories
    hang off it (``store.conversations``, ``store.handoffs``, ``store.accounts``, ``store.outbox``,
    ``store.analytics``) and ``store.audit(...)`` records who changed what.
    """

    def __init__(self, url: str, settings: Settings | None = None, *, legacy_log: Path | None = None) -> None:
        from kb.settings import load_settings

        self.settings = settings or load_settings()
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.where = self._describe()
        self.engine = self._create_engine()
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False)
        self.revision = self.migrate()
        if legacy_log is not None and legacy_log.is_file():
            from kb.state.legacy import import_once

            import_once(self, legacy_log)

    # -- engine ------------------------------------------------------------------------------------

    def _describe(self) -> str:
        """The file for SQLite; the URL without its password otherwise (it goes into error messages)."""
        if self.is_sqlite:
            return self.url.database or ":memory:"
        return self.url.render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StateUnavailable(
                        f"the state store {self.where} is unavailable: {exc.strerror or exc}"
                    ) from exc
            engine = create_engine(self.url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        args: dict[str, Any] = {"connect_timeout": 5} if self.url.get_backend_name() == "postgresql" else {}
        return create_engine(self.url, pool_pre_ping=True, connect_args=args)

    def unavailable(self, exc: BaseException) -> StateUnavailable:
        """``exc`` as the one message a user sees; SQLite's vague messages get the folder's real reason."""
        orig = getattr(exc, "orig", exc)
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if self.is_sqlite and self.url.database:
            reason = disk_problem(Path(self.url.database).parent) or reason
        return StateUnavailable(f"the state store {self.where} is unavailable: {reason}")

    def _is_unavailable(self, exc: DBAPIError) -> bool:
        orig = exc.orig
        if isinstance(orig, sqlite3.Error):
            return getattr(orig, "sqlite_errorcode", 0) & 0xFF in _SQLITE_FILE_ERRORS
        if self.is_sqlite:
            return False
        sqlstate = getattr(orig, "sqlstate", None)
        if isinstance(exc, OperationalError):
            return _pg_unavailable(sqlstate)
        return sqlstate is not None and _pg_unavailable(sqlstate)

    @contextmanager
    def _session(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        try:
            with factory() as session, session.begin():
                yield session
        except DBAPIError as exc:
            if exc.connection_invalidated or self._is_unavailable(exc):
                raise self.unavailable(exc) from exc
            raise

    def read(self) -> AbstractContextManager[Session]:
        """A session for reading (and writes that need no lock ordering)."""
        return self._session(self._read)

    def write(self) -> AbstractContextManager[Session]:
        """A session for one write transaction: committed whole, or not at all."""
        return self._session(self._write)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------------

    def current_revision(self) -> str | None:
        with self.read() as session:
            connection = session.connection()
            if not inspect(connection).has_table("alembic_version"):
                return None
            return session.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def migrate(self) -> str:
        """Bring the schema to this release's head; a no-op (one query) when it is there already."""
        current = self.current_revision()
        if current == HEAD_REVISION:
            return current
        from alembic import command
        from alembic.script import ScriptDirectory

        config = alembic_config()
        known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
        if current is not None and current not in known:
            raise SchemaTooNew(
                f"the state store {self.where} has schema revision {current!r}, written by a newer release; "
                f"this one knows up to {HEAD_REVISION!r}. Upgrade kbassist, or point KBASSIST_STATE_URL elsewhere."
            )
        with self.write() as session:
            connection = session.connection()
            if not self.is_sqlite:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        log.info("state store migrated from=%s to=%s", current, HEAD_REVISION)
        return HEAD_REVISION

    # -- repositories ----------------------------------------------------------------------------------

    @property
    def conversations(self) -> Conversations:
        from kb.state.conversations import Conversations

        return Conversations(self)

    @property
    def handoffs(self) -> Handoffs:
        from kb.state.handoffs import Handoffs

        return Handoffs(self)

    @property
    def outbox(self) -> Outbox:
        from kb.state.outbox import Outbox

        return Outbox(self)

    @property
    def accounts(self) -> Accounts:
        from kb.state.accounts import Accounts

        return Accounts(self)

    @property
    def analytics(self) -> Analytics:
        from kb.state.analytics import Analytics

        return Analytics(self)

    @property
    def audit_log(self) -> AuditLog:
        from kb.state.audit import AuditLog

        return AuditLog(self)

    def audit(self, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None) -> int:
        """Record that ``actor`` did ``action`` to ``target`` (ids, counts in ``details``). Returns the entry id."""
        return self.audit_log.record(actor, action, target, details)


def alembic_config() -> Any:
    """Alembic's configuration for the shipped migrations, built in code: no alembic.ini at run time."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Transactions are begun explicitly (see _sqlite_begin), not by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_begin(connection: Any) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


_stores: dict[str, StateStore] = {}
_stores_lock = threading.Lock()


def open_state(settings: Settings | None = None, *, fresh: bool = False) -> StateStore:
    """The process's store for ``settings.state_database_url``, opened (and migrated) once.

    The first open also imports the interaction log of earlier releases, if there is one.
    """
    from kb.settings import get_settings

    settings = settings or get_settings()
    url = settings.state_database_url
    # The same database under other settings (timeouts, webhook) is another store.
    secret = settings.handoff_webhook_secret.get_secret_value() if settings.handoff_webhook_secret else ""
    key = settings.model_dump_json() + secret
    with _stores_lock:
        store = None if fresh else _stores.get(key)
        if store is None:
            store = StateStore(url, settings, legacy_log=settings.interactions_path)
            _stores[key] = store
        return store


def close_all() -> None:
    """Dispose every cached engine (tests, and processes that fork)."""
    with _stores_lock:
        for store in _stores.values():
            store.dispose()
        _stores.clear()

"""Staff accounts and sign-in: roles ``agent`` and ``owner``, sessions, back-off and lockout.

There are no default credentials: a fresh install has no accounts, and ``kbassist users add``
creates the first one. Passwords are hashed with Argon2id (argon2-cffi); session tokens are
random 256-bit values of which only the SHA-256 is stored, so a copy of the database signs no
one in. A session ends after ``session_idle_minutes`` without use, ``session_max_hours`` after
sign-in whatever happens, on sign-out, and when the account's password is reset or the account
is removed.

Failed sign-ins are counted per submitted account name (existing or not) and per client key
(what the page knows of the client, e.g. its address): after ``signin_backoff_after`` failures
each further attempt must wait, doubling from ``signin_backoff_s``; after
``signin_lockout_after`` (per name) or ``signin_client_lockout_after`` (per client) attempts
are refused for ``signin_lockout_minutes``. While an attempt must wait, the password is not
even checked. An unknown name and a wrong password give the same answer in about the same
time (an unknown name is verified against a dummy hash); only the audit log, for owners, says
which it was.

The page calls :func:`authenticate`, :func:`validate_session` and :func:`sign_out`; none of
them raises for a bad password or token, they return what to show.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kb.state.audit import add_entry
from kb.state.models import ROLES, Account, SigninThrottle, StaffSession
from kb.state.types import utcnow

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from kb.settings import Settings
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

Role = Literal["agent", "owner"]
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
SIGNIN_FAILED = "Wrong user name or password."
SIGNIN_WAIT = "Too many failed sign-ins. Try again in {wait}."
# Sessions are touched at most this often: a page reruns on every click, and each touch is a write.
TOUCH_EVERY = timedelta(seconds=60)
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passw0rd",
        "qwerty",
        "qwertyuiop",
        "letmein",
        "welcome",
        "iloveyou",
        "admin",
        "administrator",
        "changeme",
        "123456789012",
        "1234567890",
        "kbassist",
        "brightloop",
        "trustno1",
        "dragon",
        "monkey",
        "sunshine",
        "football",
        "baseball",
        "secret",
    }
)


class AccountError(ValueError):
    """An account operation that cannot be done as asked (unknown or duplicate name, bad role)."""


class WeakPassword(ValueError):
    """The password does not meet the minimum: the message says why."""


@dataclass(frozen=True)
class AccountRecord:
    id: int
    username: str
    role: str
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class StaffIdentity:
    """Who a valid session belongs to: what a page needs to decide what to show."""

    account_id: int
    username: str
    role: str
    expires_at: datetime

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


@dataclass(frozen=True)
class SignInResult:
    ok: bool
    message: str  # what to show; the same for an unknown name and a wrong password
    token: str | None = None
    identity: StaffIdentity | None = None
    retry_after_s: float | None = None


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's current recommended parameters


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so both failures cost the same time."""
    return _hasher().hash(secrets.token_urlsafe(16))


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.fullmatch(name):
        raise AccountError(
            "a user name is 2-64 characters: letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return name


def check_password(password: str, username: str, min_length: int) -> None:
    """Length first (the measure that matters), then the obvious guesses."""
    if len(password) < min_length:
        raise WeakPassword(f"the password must be at least {min_length} characters long")
    if len(password) > 1024:
        raise WeakPassword("the password must be at most 1024 characters long")
    lowered = password.lower()
    if normalise_username(username) and normalise_username(username) in lowered:
        raise WeakPassword("the password must not contain the user name")
    if len(set(password)) < 5:
        raise WeakPassword("the password must use at least 5 different characters")
    if lowered in _COMMON or lowered.rstrip("0123456789!") in _COMMON:
        raise WeakPassword("that password is among the first ones anyone would try")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key_hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _describe_wait(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _record(row: Account) -> AccountRecord:
    return AccountRecord(row.id, row.username, row.role, row.created_at, row.password_changed_at)


class Accounts:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.settings = store.settings

    # -- administration (the `kbassist users` commands) ---------------------------------------------

    def add(self, username: str, password: str, role: Role, *, actor: str) -> AccountRecord:
        name = check_username(username)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        check_password(password, name, self.settings.password_min_length)
        password_hash = _hasher().hash(password)
        now = utcnow()
        with self.store.write() as session:
            if session.scalar(select(Account.id).where(Account.username == name)) is not None:
                raise AccountError(f"an account {name!r} already exists")
            row = Account(
                username=name, role=role, password_hash=password_hash, created_at=now, password_changed_at=now
            )
            session.add(row)
            session.flush()
            add_entry(session, actor, "account.add", name, {"role": role, "account_id": row.id})
            record = _record(row)
        log.info("account id=%d added role=%s", record.id, role)
        return record

    def remove(self, username: str, *, actor: str) -> None:
        name = normalise_username(username)
        with self.store.write() as session:
            row = session.scalar(select(Account).where(Account.username == name))
            if row is None:
                raise AccountError(f"no account {name!r}")
            revoked = _revoke_all(session, row.id, utcnow())
            session.execute(delete(StaffSession).where(StaffSession.account_id == row.id))
            session.delete(row)
            add_entry(session, actor, "account.remove", name, {"role": row.role, "sessions_revoked": revoked})
        log.info("account removed sessions_revoked=%d", revoked)

    def reset_password(self, username: str, password: str, *, actor: str) -> int:
        """New password; every session of the account ends. Returns how many sessions were revoked."""
        name = normalise_username(username)
        check_password(password, name, self.settings.password_min_length)
        password_hash = _hasher().hash(password)
        now = utcnow()
        with self.store.write() as session:
            row = session.scalar(select(Account).where(Account.username == name))
            if row is None:
                raise AccountError(f"no account {name!r}")
            row.password_hash = password_hash
            row.password_changed_at = now
            revoked = _revoke_all(session, row.id, now)
            # A reset by an administrator lifts the name's lockout too.
            session.execute(
                delete(SigninThrottle).where(
                    SigninThrottle.kind == "account", SigninThrottle.key_hash == _key_hash("account", name)
                )
            )
            add_entry(session, actor, "account.password_reset", name, {"sessions_revoked": revoked})
        log.info("account id=%d password reset sessions_revoked=%d", row.id, revoked)
        return revoked

    def list(self) -> list[AccountRecord]:
        with self.store.read() as session:
            return [_record(r) for r in session.scalars(select(Account).order_by(Account.username)).all()]

    def count(self) -> int:
        return len(self.list())

    # -- signing in ------------------------------------------------------------------------------------

    def authenticate(
        self, username: str, password: str, *, client_key: str = "", now: datetime | None = None
    ) -> SignInResult:
        now = now or utcnow()
        name = normalise_username(username)[:128]
        keys = [("account", _key_hash("account", name))]
        if client_key:
            keys.append(("client", _key_hash("client", client_key)))
        with self.store.read() as session:
            wait = _must_wait(session, keys, now)
        if wait is not None:
            self.store.audit(f"signin:{name}", "signin.failure", name, {"reason": "throttled", "wait_s": round(wait)})
            return SignInResult(False, SIGNIN_WAIT.format(wait=_describe_wait(wait)), retry_after_s=wait)

        with self.store.read() as session:
            row = session.scalar(select(Account).where(Account.username == name))
            stored = (row.id, row.username, row.role, row.password_hash) if row is not None else None
        from argon2.exceptions import InvalidHashError, VerificationError

        hasher = _hasher()
        try:
            verified = hasher.verify(stored[3] if stored else _dummy_hash(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            verified = False

        with self.store.write() as session:
            if not verified or stored is None:
                reason = "unknown_user" if stored is None else "wrong_password"
                _count_failure(session, keys, now, self.settings)
                add_entry(session, f"signin:{name}", "signin.failure", name, {"reason": reason})
                log.info("sign-in failed")
                return SignInResult(False, SIGNIN_FAILED)
            account_id, username_, role, password_hash = stored
            if hasher.check_needs_rehash(password_hash):
                session.execute(
                    update(Account).where(Account.id == account_id).values(password_hash=hasher.hash(password))
                )
            session.execute(
                delete(SigninThrottle).where(SigninThrottle.kind == "account", SigninThrottle.key_hash == keys[0][1])
            )
            # Old sessions of anyone, long past their end, go now rather than never.
            session.execute(delete(StaffSession).where(StaffSession.expires_at < now - timedelta(days=1)))
            token = secrets.token_urlsafe(32)
            expires = now + timedelta(hours=self.settings.session_max_hours)
            session.add(
                StaffSession(
                    account_id=account_id,
                    token_hash=_hash_token(token),
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            )
            add_entry(session, f"account:{username_}", "signin.success", username_, {"role": role})
        log.info("sign-in account id=%d", account_id)
        return SignInResult(
            True, "Signed in.", token=token, identity=StaffIdentity(account_id, username_, role, expires)
        )

    def validate_session(self, token: str | None, *, now: datetime | None = None) -> StaffIdentity | None:
        """Who the session token belongs to, or None when it is unknown, expired or revoked."""
        if not token or len(token) > 256:
            return None
        now = now or utcnow()
        digest = _hash_token(token)
        with self.store.read() as session:
            found = session.execute(
                select(StaffSession, Account)
                .join(Account, Account.id == StaffSession.account_id)
                .where(StaffSession.token_hash == digest)
            ).first()
            if found is None:
                return None
            row, account = found
            if not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
                return None
            idle = timedelta(minutes=self.settings.session_idle_minutes)
            if now >= row.expires_at or now - row.last_seen_at > idle:
                return None
            identity = StaffIdentity(account.id, account.username, account.role, row.expires_at)
            session_id, last_seen = row.id, row.last_seen_at
        if now - last_seen >= TOUCH_EVERY:
            with self.store.write() as session:
                session.execute(update(StaffSession).where(StaffSession.id == session_id).values(last_seen_at=now))
        return identity

    def sign_out(self, token: str | None, *, now: datetime | None = None) -> bool:
        """End the session; True when there was one to end."""
        if not token:
            return False
        now = now or utcnow()
        with self.store.write() as session:
            row = session.scalar(select(StaffSession).where(StaffSession.token_hash == _hash_token(token)))
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = now
            account = session.get(Account, row.account_id)
            name = account.username if account else "?"
            add_entry(session, f"account:{name}", "signout", name, {})
        return True


def _revoke_all(session: Session, account_id: int, now: datetime) -> int:
    return session.execute(
        update(StaffSession)
        .where(StaffSession.account_id == account_id, StaffSession.revoked_at.is_(None), StaffSession.expires_at > now)
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


def _must_wait(session: Session, keys: list[tuple[str, str]], now: datetime) -> float | None:
    """Seconds until an attempt for these keys is allowed, or None when it is allowed now."""
    waits = []
    for kind, key in keys:
        row = session.get(SigninThrottle, (kind, key))
        if row is None:
            continue
        for until in (row.locked_until, row.not_before):
            if until is not None and until > now:
                waits.append((until - now).total_seconds())
    return max(waits) if waits else None


def _count_failure(session: Session, keys: list[tuple[str, str]], now: datetime, settings: Settings) -> None:
    window = timedelta(minutes=settings.signin_lockout_minutes)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for kind, key in keys:
        session.execute(
            insert(SigninThrottle)
            .values(kind=kind, key_hash=key, failures=0, first_failure_at=now, last_failure_at=now)
            .on_conflict_do_nothing(index_elements=[SigninThrottle.kind, SigninThrottle.key_hash])
        )
        row = session.execute(
            select(SigninThrottle)
            .where(SigninThrottle.kind == kind, SigninThrottle.key_hash == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if now - row.last_failure_at > window:  # a quiet spell forgives earlier failures
            row.failures, row.first_failure_at, row.not_before, row.locked_until = 0, now, None, None
        row.failures += 1
        row.last_failure_at = now
        backoff_after = settings.signin_backoff_after if kind == "account" else settings.signin_client_backoff_after
        lockout_after = settings.signin_lockout_after if kind == "account" else settings.signin_client_lockout_after
        if row.failures >= lockout_after:
            row.locked_until = now + window
        elif row.failures >= backoff_after:
            wait = settings.signin_backoff_s * 2 ** (row.failures - backoff_after)
            row.not_before = now + min(timedelta(seconds=wait), window)


# -- the functions a page calls ------------------------------------------------------------------------


def authenticate(store: StateStore, username: str, password: str, *, client_key: str = "") -> SignInResult:
    """Check a sign-in; on success the result carries a new session token for the page to keep."""
    return store.accounts.authenticate(username, password, client_key=client_key)


def validate_session(store: StateStore, token: str | None) -> StaffIdentity | None:
    """The signed-in member of staff for ``token``, or None (sign in again)."""
    return store.accounts.validate_session(token)


def sign_out(store: StateStore, token: str | None) -> bool:
    return store.accounts.sign_out(token)


def has_accounts(store: StateStore) -> bool:
    """False on a fresh install: the page tells the operator to run ``kbassist users add``."""
    return store.accounts.count() > 0

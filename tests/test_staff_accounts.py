"""Staff accounts and sign-in on SQLite and PostgreSQL: hashing, sessions, expiry, back-off, lockout, audit.

Time is passed in (``now=``) rather than waited for, so expiry and back-off are tested exactly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from kb.settings import Settings
from kb.state.accounts import SIGNIN_FAILED, AccountError, WeakPassword, authenticate, has_accounts
from kb.state.store import StateStore
from kb.state.types import utcnow

PASSWORD = "correct horse battery"


def _store(url: str, **settings: Any) -> StateStore:
    defaults = {"signin_backoff_after": 3, "signin_backoff_s": 2.0, "signin_lockout_after": 5,
                "signin_client_backoff_after": 8, "signin_client_lockout_after": 10, "signin_lockout_minutes": 15}  # fmt: skip
    return StateStore(url, Settings(**(defaults | settings)))


def _raw(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query))]
    finally:
        engine.dispose()


def test_a_fresh_install_has_no_accounts_and_passwords_are_argon2_hashed(state_url: str) -> None:
    store = _store(state_url)
    assert not has_accounts(store) and store.accounts.list() == []
    store.accounts.add("Alice", PASSWORD, "owner", actor="cli:root")
    assert [(a.username, a.role) for a in store.accounts.list()] == [("alice", "owner")]
    ((stored,),) = _raw(state_url, "SELECT password_hash FROM accounts")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(AccountError, match="already exists"):
        store.accounts.add("alice", PASSWORD, "agent", actor="cli:root")
    with pytest.raises(AccountError, match="role"):
        store.accounts.add("bob", PASSWORD, "admin", actor="cli:root")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 12 characters"),
        ("alice-is-my-name", "user name"),
        ("aaaaaaaaaaaaaaaa", "5 different characters"),
        ("password1234", "first ones anyone would try"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(tmp_path: Any, password: str, reason: str) -> None:
    store = _store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with pytest.raises(WeakPassword, match=reason):
        store.accounts.add("alice", password, "agent", actor="cli:root")


def test_sign_in_gives_a_session_that_expires_idle_or_absolute_and_ends_on_sign_out(state_url: str) -> None:
    store = _store(state_url, session_idle_minutes=30, session_max_hours=8)
    store.accounts.add("alice", PASSWORD, "agent", actor="cli:root")
    t0 = utcnow()
    result = store.accounts.authenticate("ALICE ", PASSWORD, client_key="10.0.0.7", now=t0)
    assert result.ok and result.token and result.identity.username == "alice" and not result.identity.is_owner
    assert _raw(state_url, f"SELECT COUNT(*) FROM staff_sessions WHERE token_hash = '{result.token}'") == [(0,)]

    accounts = store.accounts
    assert accounts.validate_session(result.token, now=t0 + timedelta(minutes=29)).role == "agent"
    # Used at minute 29, so still alive at 58; then idle for 31 minutes: gone.
    assert accounts.validate_session(result.token, now=t0 + timedelta(minutes=58)) is not None
    assert accounts.validate_session(result.token, now=t0 + timedelta(minutes=58 + 31)) is None

    second = accounts.authenticate("alice", PASSWORD, now=t0).token
    for minute in range(25, 8 * 60, 25):  # kept busy, it still ends 8 hours after sign-in
        assert accounts.validate_session(second, now=t0 + timedelta(minutes=minute)) is not None
    assert accounts.validate_session(second, now=t0 + timedelta(hours=8)) is None

    third = accounts.authenticate("alice", PASSWORD).token
    assert accounts.sign_out(third) and accounts.validate_session(third) is None
    assert not accounts.sign_out(third) and accounts.validate_session("forged-token") is None
    assert accounts.validate_session("") is None and accounts.validate_session("x" * 10_000) is None


def test_password_reset_and_removal_end_every_session(state_url: str) -> None:
    store = _store(state_url)
    store.accounts.add("alice", PASSWORD, "owner", actor="cli:root")
    tokens = [store.accounts.authenticate("alice", PASSWORD).token for _ in range(3)]
    assert store.accounts.reset_password("alice", "another long passphrase", actor="cli:root") == 3
    assert all(store.accounts.validate_session(t) is None for t in tokens)
    assert not store.accounts.authenticate("alice", PASSWORD).ok
    token = store.accounts.authenticate("alice", "another long passphrase").token
    store.accounts.remove("alice", actor="cli:root")
    assert store.accounts.validate_session(token) is None and store.accounts.list() == []


def test_unknown_user_and_wrong_password_look_the_same_and_the_audit_log_tells_them_apart(state_url: str) -> None:
    store = _store(state_url)
    store.accounts.add("alice", PASSWORD, "agent", actor="cli:root")
    unknown = authenticate(store, "mallory", PASSWORD)
    wrong = authenticate(store, "alice", "not the password at all")
    assert unknown == wrong and unknown.message == SIGNIN_FAILED and unknown.token is None
    assert authenticate(store, "alice", PASSWORD).ok
    entries = store.audit_log.entries(action="signin.*")
    assert [(e.action, e.target, e.details.get("reason")) for e in entries] == [
        ("signin.success", "alice", None),
        ("signin.failure", "alice", "wrong_password"),
        ("signin.failure", "mallory", "unknown_user"),
    ]
    assert [e.action for e in store.audit_log.entries(action="account.add")] == ["account.add"]


@pytest.mark.parametrize("name", ["alice", "nobody"])
def test_failures_back_off_then_lock_the_name_whether_it_exists_or_not(state_url: str, name: str) -> None:
    store = _store(state_url)
    store.accounts.add("alice", PASSWORD, "agent", actor="cli:root")
    t0 = utcnow()
    attempt = store.accounts.authenticate
    for i in range(3):
        assert attempt(name, "wrong password!!", now=t0 + timedelta(seconds=i)).message == SIGNIN_FAILED
    waiting = attempt(name, PASSWORD, now=t0 + timedelta(seconds=2.5))
    assert not waiting.ok and waiting.retry_after_s == pytest.approx(1.5) and "Try again in 2 seconds" in waiting.message
    assert attempt(name, "wrong password!!", now=t0 + timedelta(seconds=4)).message == SIGNIN_FAILED  # 4th
    assert attempt(name, PASSWORD, now=t0 + timedelta(seconds=7)).retry_after_s == pytest.approx(1.0), "wait doubled"
    assert attempt(name, "wrong password!!", now=t0 + timedelta(seconds=8)).message == SIGNIN_FAILED  # 5th: locked
    locked = attempt(name, PASSWORD, now=t0 + timedelta(minutes=10))
    assert not locked.ok and "minutes" in locked.message, "the right password does not get through a lockout"
    after = attempt(name, PASSWORD, now=t0 + timedelta(minutes=16))
    assert after.ok == (name == "alice") and (after.ok or after.message == SIGNIN_FAILED)


def test_one_client_failing_on_many_names_is_slowed_then_locked(state_url: str) -> None:
    store = _store(state_url)
    store.accounts.add("alice", PASSWORD, "agent", actor="cli:root")
    t0 = utcnow()
    for i in range(8):
        store.accounts.authenticate(f"guess{i}", "wrong password!!", client_key="203.0.113.9", now=t0)
    slowed = store.accounts.authenticate("alice", PASSWORD, client_key="203.0.113.9", now=t0)
    assert not slowed.ok and slowed.retry_after_s == pytest.approx(2.0)
    assert store.accounts.authenticate("alice", PASSWORD, client_key="198.51.100.1", now=t0).ok, "others unaffected"
    for minute in (1, 2):  # each after the client's wait: the 9th and 10th failures
        failed = store.accounts.authenticate(f"more{minute}", "wrong password!!", client_key="203.0.113.9",
                                             now=t0 + timedelta(minutes=minute))  # fmt: skip
        assert failed.message == SIGNIN_FAILED
    locked = store.accounts.authenticate("alice", PASSWORD, client_key="203.0.113.9", now=t0 + timedelta(minutes=5))
    assert not locked.ok and locked.retry_after_s == pytest.approx(12 * 60), "locked for 15 minutes from the 10th"


def test_a_reset_lifts_the_lockout(state_url: str) -> None:
    store = _store(state_url)
    store.accounts.add("alice", PASSWORD, "agent", actor="cli:root")
    for _ in range(5):
        store.accounts.authenticate("alice", "wrong password!!")
    assert not store.accounts.authenticate("alice", PASSWORD).ok
    store.accounts.reset_password("alice", "a brand new passphrase", actor="cli:root")
    assert store.accounts.authenticate("alice", "a brand new passphrase").ok


def test_users_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from kbassist_cli import app

    monkeypatch.setenv("KBASSIST_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    assert "No accounts yet" in runner.invoke(app, ["users", "list"]).output
    added = runner.invoke(app, ["users", "add", "alice", "--role", "owner"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0 and "added alice (owner)" in added.output
    mismatch = runner.invoke(app, ["users", "add", "bob", "--role", "agent"], input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    weak = runner.invoke(app, ["users", "add", "bob", "--role", "agent", "--password-stdin"], input="short\n")
    assert weak.exit_code == 2 and "at least 12 characters" in weak.output
    ok = runner.invoke(app, ["users", "add", "bob", "--role", "agent", "--password-stdin"], input=f"{PASSWORD}\n")
    assert ok.exit_code == 0
    reset = runner.invoke(app, ["users", "reset-password", "bob", "--password-stdin"], input="an even longer phrase\n")
    assert reset.exit_code == 0 and "0 session(s) ended" in reset.output
    assert runner.invoke(app, ["users", "remove", "bob", "--yes"]).exit_code == 0
    assert runner.invoke(app, ["users", "remove", "bob", "--yes"]).exit_code == 2
    listed = runner.invoke(app, ["users", "list"]).output
    assert "alice" in listed and "bob" not in listed
    audit = runner.invoke(app, ["audit", "list", "--json"])
    actions = [e["action"] for e in __import__("json").loads(audit.output)]
    assert actions == ["account.remove", "account.password_reset", "account.add", "account.add"]
    assert runner.invoke(app, ["state", "upgrade"]).output.endswith("schema revision 0001\n")

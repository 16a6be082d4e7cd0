"""``kbassist state | users | handoffs | audit``: the state store from the command line.

Each group is a Typer app of its own, registered by ``kbassist_cli``. SQLAlchemy and the rest of
the store load inside the commands, so other commands do not pay for them at start-up. Every
change made here is audited with the actor ``cli:<os user>``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from kb.state.store import StateStore

state_app = typer.Typer(help="The app's state store: migrate it, see what is in it.", no_args_is_help=True)
users_app = typer.Typer(help="Staff accounts for the agent and owner workspaces.", no_args_is_help=True)
handoffs_app = typer.Typer(
    help="Conversations handed to a person: the queue, and delivery to the help desk.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="Who changed what: sign-ins, accounts, the knowledge base, hand-offs.", no_args_is_help=True
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


@contextmanager
def _state() -> Iterator[StateStore]:
    """The configured store; any failure to use it is one line on stderr and exit code 2."""
    from kb.settings import load_settings
    from kb.state import SchemaTooNew, StateUnavailable, open_state

    try:
        settings = load_settings()
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    try:
        yield open_state(settings)
    except (StateUnavailable, SchemaTooNew) as exc:
        raise _fail(str(exc)) from exc


def _actor() -> str:
    from kb.state.audit import cli_actor

    return cli_actor()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- state ---------------------------------------------------------------------------------------------


@state_app.command("upgrade")
def state_upgrade() -> None:
    """Apply any missing schema migration (opening the store does the same; this does only that)."""
    with _state() as store:
        typer.echo(f"state store {store.where} is at schema revision {store.revision}")


@state_app.command("info")
def state_info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Where the store is, its schema revision, row counts and whether the old interaction log was imported."""
    from sqlalchemy import select

    from kb.state.legacy import META_KEY
    from kb.state.models import Meta

    with _state() as store:
        counts = store.analytics.counts() | {"accounts": store.accounts.count()}
        with store.read() as session:
            imported = session.scalar(select(Meta.value).where(Meta.key == META_KEY))
        info = {
            "store": store.where,
            "revision": store.revision,
            "counts": counts,
            "legacy_import": json.loads(imported) if imported else None,
        }
    if as_json:
        typer.echo(_json(info))
        return
    typer.echo(f"store:    {info['store']}\nrevision: {info['revision']}")
    typer.echo("counts:   " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    legacy = info["legacy_import"]
    typer.echo(f"imported: {legacy['path']} at {legacy['at']}" if legacy else "imported: no old interaction log")


@state_app.command("import-interactions")
def state_import(path: Annotated[Path, typer.Argument(help="An interactions.sqlite of an earlier release.")]) -> None:
    """Import an old interaction log (done automatically on first open for DATA_DIR/interactions.sqlite)."""
    from kb.state.legacy import import_once, read_legacy

    if not path.is_file() or read_legacy(path) is None:
        raise _fail(f"{path} is not an interaction log of an earlier release")
    with _state() as store:
        counts = import_once(store, path, actor=_actor())
    if counts is None:
        raise _fail("an old interaction log was already imported into this store; nothing done", code=1)
    typer.echo("imported " + ", ".join(f"{v} {k}" for k, v in counts.items()))


# -- users ---------------------------------------------------------------------------------------------


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return typer.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")


def _account_errors() -> Any:
    from kb.state.accounts import AccountError, WeakPassword

    return (AccountError, WeakPassword)


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="agent (agent workspace) or owner (knowledge base, queue, audit).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
) -> None:
    """Create an account. The password is asked twice (or read from stdin) and must meet the minimum."""
    password = _read_password(password_stdin)
    with _state() as store:
        try:
            account = store.accounts.add(username, password, role, actor=_actor())  # type: ignore[arg-type]
        except _account_errors() as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"added {account.username} ({account.role})")


@users_app.command("remove")
def users_remove(
    username: Annotated[str, typer.Argument()],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an account; its sessions end at once."""
    if not yes and not typer.confirm(f"Remove the account {username!r}?"):
        raise typer.Exit(1)
    with _state() as store:
        try:
            store.accounts.remove(username, actor=_actor())
        except _account_errors() as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"removed {username}")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every account with its role (never a password or hash)."""
    with _state() as store:
        accounts = store.accounts.list()
    if as_json:
        typer.echo(
            _json(
                [
                    {
                        "username": a.username,
                        "role": a.role,
                        "created_at": a.created_at,
                        "password_changed_at": a.password_changed_at,
                    }
                    for a in accounts
                ]
            )
        )
        return
    if not accounts:
        typer.echo("No accounts yet. Create one with: kbassist users add NAME --role owner")
        return
    for a in accounts:
        typer.echo(
            f"{a.username:32} {a.role:6} created {_when(a.created_at)}  password set {_when(a.password_changed_at)}"
        )


@users_app.command("reset-password")
def users_reset_password(
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from the first line of standard input.")
    ] = False,
) -> None:
    """Set a new password; every session of the account ends and its lockout is lifted."""
    password = _read_password(password_stdin)
    with _state() as store:
        try:
            revoked = store.accounts.reset_password(username, password, actor=_actor())
        except _account_errors() as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"password of {username} reset; {revoked} session(s) ended")


# -- hand-offs -----------------------------------------------------------------------------------------


def _handoff_errors() -> Any:
    from kb.state.handoffs import HandoffConflict, HandoffNotFound

    return (HandoffConflict, HandoffNotFound)


def _handoff_id(reference: str) -> int:
    text = reference.strip().upper().removeprefix("H-")
    if not text.isdigit():
        raise _fail(f"{reference!r} is not a hand-off reference (H-12 or 12)")
    return int(text)


def _handoff_dict(h: Any) -> dict[str, Any]:
    data = asdict(h)
    data["reference"] = h.reference
    data["customer_status"] = h.customer_status
    return data


@handoffs_app.command("list")
def handoffs_list(
    status: Annotated[str | None, typer.Option(help="open, claimed or resolved.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The queue, newest first."""
    if status not in (None, "open", "claimed", "resolved"):
        raise _fail("status must be open, claimed or resolved")
    with _state() as store:
        handoffs = store.handoffs.list(status, limit)  # type: ignore[arg-type]
    if as_json:
        typer.echo(_json([_handoff_dict(h) for h in handoffs]))
        return
    if not handoffs:
        typer.echo("No hand-offs.")
        return
    for h in handoffs:
        who = f" by {h.claimed_by}" if h.status == "claimed" else ""
        question = h.question or "(asked for a person)"
        typer.echo(
            f"{h.reference:7} {_when(h.created_at)} {h.status}{who:12} {h.reason:16} {h.market or '-':3} {question[:70]}"
        )


@handoffs_app.command("show")
def handoffs_show(
    reference: Annotated[str, typer.Argument(help="H-12 or 12.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with the contact details, for staff).")] = False,
) -> None:
    """One hand-off in full: transcript, what was searched, notes and the customer's contact."""
    with _state() as store:
        h = store.handoffs.get(_handoff_id(reference), include_contact=True)
    if h is None:
        raise _fail(f"no hand-off {reference}")
    if as_json:
        typer.echo(_json(_handoff_dict(h)))
        return
    typer.echo(
        f"{h.reference} · {h.status} ({h.customer_status}) · reason {h.reason} · market {h.market or '-'} · "
        f"language {h.language or '-'}"
    )
    typer.echo(
        f"created {_when(h.created_at)}"
        + (f" · claimed by {h.claimed_by} {_when(h.claimed_at)}" if h.claimed_by else "")
        + (f" · resolved by {h.resolved_by} {_when(h.resolved_at)}" if h.resolved_by else "")
    )
    typer.echo(f"question: {h.question or '(none: the customer asked for a person)'}\nsummary:  {h.summary}")
    if h.contact:
        typer.echo(f"contact:  {h.contact.kind} {h.contact.value} (consent given to: “{h.contact.consent_text}”)")
    typer.echo("searched: " + json.dumps(h.searched, ensure_ascii=False))
    typer.echo("\ntranscript:")
    for turn in h.transcript:
        typer.echo(f"  {turn['role']}: {turn['content']}")
    for note in h.notes:
        typer.echo(f"\nnote by {note.author} {_when(note.created_at)}: {note.text}")


@handoffs_app.command("claim")
def handoffs_claim(
    reference: Annotated[str, typer.Argument(help="H-12 or 12.")],
    agent: Annotated[str, typer.Option("--as", help="The staff account taking it.")],
) -> None:
    """Take a hand-off from the queue (fails if someone else already has)."""
    with _state() as store:
        try:
            h = store.handoffs.claim(_handoff_id(reference), agent.strip().lower(), actor=_actor())
        except _handoff_errors() as exc:
            raise _fail(str(exc), code=1) from exc
    typer.echo(f"{h.reference} claimed by {h.claimed_by}")


@handoffs_app.command("resolve")
def handoffs_resolve(
    reference: Annotated[str, typer.Argument(help="H-12 or 12.")],
    agent: Annotated[str, typer.Option("--as", help="The staff account resolving it.")],
    note: Annotated[str, typer.Option(help="What was done (redacted before it is stored).")] = "",
) -> None:
    """Close a hand-off (claimed by that account, or still open), with an optional note."""
    with _state() as store:
        try:
            h = store.handoffs.resolve(_handoff_id(reference), agent.strip().lower(), note, actor=_actor())
        except _handoff_errors() as exc:
            raise _fail(str(exc), code=1) from exc
        if store.settings.handoff_webhook_on_resolve:
            store.outbox.deliver_due()
    typer.echo(f"{h.reference} resolved by {h.resolved_by}")


@handoffs_app.command("deliver")
def handoffs_deliver(
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: deliver as events become due.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="First put failed deliveries back in the queue.")
    ] = False,
    interval: Annotated[float, typer.Option(help="With --watch: seconds between passes.")] = 5.0,
) -> None:
    """Send the help-desk webhooks that are due (retries with back-off; failures kept with their error)."""
    with _state() as store:
        outbox = store.outbox
        if retry_failed:
            typer.echo(f"{outbox.retry_failed()} failed deliveries queued again", err=True)
        while True:
            report = outbox.deliver_due()
            if report.problem:
                raise _fail(report.problem)
            if not watch:
                typer.echo(report.summary())
                return
            if report.delivered or report.retrying or report.failed:
                typer.echo(report.summary(), err=True)
            time.sleep(interval)


@handoffs_app.command("deliveries")
def handoffs_deliveries(
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Webhook deliveries, newest first, with attempts and the last error (``--status failed`` for problems)."""
    with _state() as store:
        rows = store.outbox.deliveries(status, limit)
    if as_json:
        typer.echo(_json([asdict(r) for r in rows]))
        return
    if not rows:
        typer.echo("No deliveries.")
        return
    for r in rows:
        typer.echo(
            f"{r.id:5} H-{r.handoff_id:<5} {r.event:17} {r.status:9} attempts {r.attempts:2}  "
            f"next {_when(r.next_attempt_at)}  {r.last_error or ''}"
        )


# -- audit ---------------------------------------------------------------------------------------------


@audit_app.command("list")
def audit_list(
    action: Annotated[str | None, typer.Option(help="One action (kb.ingest) or a family (signin.*).")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (cli:alice, account:bob).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The audit log, newest first."""
    with _state() as store:
        entries = store.audit_log.entries(action=action, actor=actor, limit=limit)
    if as_json:
        typer.echo(_json([asdict(e) for e in entries]))
        return
    if not entries:
        typer.echo("The audit log is empty.")
        return
    for e in entries:
        details = json.dumps(e.details, ensure_ascii=False, sort_keys=True) if e.details else ""
        typer.echo(f"{_when(e.at)} {e.actor:24} {e.action:22} {e.target[:40]:40} {details}")

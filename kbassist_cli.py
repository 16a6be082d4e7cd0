"""The ``kbassist`` command: a thin shell over ingest, kb, assist and eval."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from eval.cli import eval_app, gaps_command
from kb.bundled import demo_docs_path
from kb.settings import Settings, load_settings
from kb.state.cli import audit_app, handoffs_app, state_app, users_app

app = typer.Typer(
    help="kbassist: answers from your policy and process documents, with citations.",
    no_args_is_help=True,
    add_completion=False,
)
kb_app = typer.Typer(help="Inspect what is in the knowledge base.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")
app.command("gaps")(gaps_command)
app.add_typer(state_app, name="state")
app.add_typer(users_app, name="users")
app.add_typer(handoffs_app, name="handoffs")
app.add_typer(audit_app, name="audit")


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:  # a bad config file or KBASSIST_* value
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _store_errors(hint: str = "") -> Iterator[None]:
    """Report a store that cannot be reached or written as one line and exit 2, instead of a traceback."""
    from kb.store import StoreUnavailable

    try:
        yield
    except StoreUnavailable as exc:
        message = f"{str(exc).rstrip('.')}. {hint}" if hint else str(exc)
        typer.secho(f"error: {message}", fg="red", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _state_errors() -> Iterator[None]:
    """A state store that cannot be used is one line and exit 2, like the knowledge store."""
    from kb.state import SchemaTooNew, StateUnavailable

    try:
        yield
    except (StateUnavailable, SchemaTooNew) as exc:
        typer.secho(f"error: {exc}. Ask with --no-record to answer without recording.", fg="red", err=True)
        raise typer.Exit(2) from exc


def _open_state(settings: Settings):
    from kb.state import open_state

    with _state_errors():
        return open_state(settings)


def _open_store(settings: Settings):
    from kb.store import KnowledgeStore

    with _store_errors():
        return KnowledgeStore(settings)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens, per document.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (md, txt, html, pdf, docx).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Ingest the bundled demo knowledge base.")] = False,
    prune: Annotated[
        bool | None,
        typer.Option(
            "--prune/--no-prune", help="Remove documents deleted from a given folder. Default: on for folders."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Add or update documents in the knowledge base. Unchanged files are skipped."""
    from tqdm import tqdm

    from ingest.pipeline import ingest as run_ingest

    targets = list(paths or []) + ([demo_docs_path()] if demo else [])
    if not targets:
        typer.secho("error: give at least one file or folder, or --demo", fg="red", err=True)
        raise typer.Exit(2)
    settings = _settings()
    store = _open_store(settings)
    bar = tqdm(total=0, unit="file", desc="ingest", disable=None, file=sys.stderr)

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_postfix_str(name[-40:])
        bar.update(done - bar.n)

    try:
        with _store_errors("Documents stored before this are intact; run the same ingest again once it is fixed."):
            report = run_ingest(targets, store, prune=prune, progress=progress)
    finally:
        bar.close()
    for error in report.errors:
        typer.secho(f"error: {error}", fg="red", err=True)
    _audit_ingest(settings, targets, report)
    if as_json:
        typer.echo(json.dumps({**asdict(report), "errors": [str(e) for e in report.errors]}, indent=2, default=str))
    else:
        typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


def _audit_ingest(settings: Settings, targets: list[Path], report: object) -> None:
    """Record the ingest in the audit log; a store that cannot take it is a warning, not a failed ingest."""
    from kb.state import SchemaTooNew, StateUnavailable
    from kb.state.audit import cli_actor, ingest_details, record_kb_change

    try:
        record_kb_change(settings, actor=cli_actor(), action="kb.ingest",
                         target=", ".join(str(t) for t in targets)[:500], details=ingest_details(report))  # fmt: skip
    except (StateUnavailable, SchemaTooNew) as exc:
        typer.secho(f"warning: the ingest was not recorded in the audit log: {exc}", fg="yellow", err=True)


@kb_app.command("list")
def kb_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the documents in the knowledge base."""
    with _store_errors():
        docs = _open_store(_settings()).documents()
    if as_json:
        typer.echo(json.dumps([asdict(d) for d in docs], indent=2))
        return
    if not docs:
        typer.echo("The knowledge base is empty. Add documents with: kbassist ingest PATH")
        return
    header = f"{'id':34} {'audience':9} {'market':6} {'lang':4} {'format':8} {'chunks':>6}  {'version':8} {'review_by':10} title"
    typer.echo(header)
    for d in docs:
        typer.echo(
            f"{d.doc_id[:34]:34} {d.audience:9} {d.market:6} {d.language:4} {d.format:8} {d.chunk_count:>6}  "
            f"{d.version[:8]:8} {d.review_by:10} {d.title}"
        )


@kb_app.command("stats")
def kb_stats(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts by audience, market, language and format, and documents past their review date."""
    with _store_errors():
        stats = _open_store(_settings()).stats()
    if as_json:
        typer.echo(json.dumps(asdict(stats), indent=2))
        return
    typer.echo(f"documents: {stats.documents}\nchunks:    {stats.chunks}")
    for name in ("by_audience", "by_market", "by_language", "by_format"):
        counts = ", ".join(f"{k}={v}" for k, v in sorted(getattr(stats, name).items()))
        typer.echo(f"{name.replace('_', ' ')}: {counts or '-'}")
    typer.echo(f"past review_by: {', '.join(stats.stale) or 'none'}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    role: Annotated[
        str, typer.Option(help="Who is asking: customer, agent or internal. Decides what can be read.")
    ] = "agent",
    market: Annotated[
        str | None, typer.Option(help="Market code, e.g. SE or DE. Documents for ALL markets always count.")
    ] = None,
    product: Annotated[str | None, typer.Option(help="Only documents about this product.")] = None,
    language: Annotated[str | None, typer.Option(help="Only documents in this language (en, de, sv...).")] = None,
    doc: Annotated[str | None, typer.Option(help="Only this document id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full answer as JSON.")] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Record the question and answer (redacted) in the state store, like the app does; a customer "
            "refusal becomes a stored hand-off.",
        ),
    ] = True,
    conversation: Annotated[
        str | None, typer.Option(help="Continue this conversation (its id, printed by an earlier ask).")
    ] = None,
) -> None:
    """Answer a question with citations, or refuse and hand off when the knowledge base has no answer."""
    from assist.access import Filters
    from assist.conversations import ConversationService
    from assist.service import Assistant, QuestionError

    settings = _settings()
    assistant = Assistant(_open_store(settings), settings)
    state = _open_state(settings) if record else None
    service = ConversationService(assistant, state, deliver="inline")
    try:
        with _store_errors(), _state_errors():
            exchange = service.ask(
                question, role=role, market=market, conversation_id=conversation,
                filters=Filters(market, language, product, doc), channel="cli", hand_off_on_refusal=role == "customer",
            )  # fmt: skip
    except (QuestionError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    answer = exchange.answer
    if as_json:
        data = answer.to_dict() | {
            "conversation_id": exchange.conversation_id,
            "question_id": exchange.question_id,
            "handoff_reference": exchange.handoff.reference if exchange.handoff else None,
        }
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    typer.echo(answer.text)
    if answer.citations:
        typer.echo("\nSources:")
        for c in answer.citations:
            version = f", v{c.version}" if c.version else ""
            typer.echo(f"  [{c.number}] {c.title} — {c.section}{version} ({c.chunk_id})")
    if answer.suggested_reply:
        typer.echo("\nSuggested reply to the customer:\n" + answer.suggested_reply)
    if exchange.handoff:
        typer.echo(f"\nHand-off {exchange.handoff.reference} created for a human agent.")
    elif answer.handoff:
        typer.echo("\nA person would take over here (not recorded: --no-record).")
    typer.echo(f"\nconfidence {answer.confidence:.2f} · {answer.latency_ms:.0f} ms · {answer.generator}")
    if exchange.conversation_id:
        typer.echo(f"conversation {exchange.conversation_id} (continue with --conversation)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

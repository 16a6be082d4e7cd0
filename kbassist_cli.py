"""The ``kbassist`` command: a thin shell over ingest, kb, assist and eval.

Start-up matters here (an agent types ``kbassist ask`` and waits), so this module imports only
typer and the settings at the top; each command imports the packages it uses (chromadb, the
model, the evaluation harness) when it runs.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eval.cli import eval_app, gaps_command
from kb.bundled import demo_docs_path
from kb.settings import KNOWLEDGE_BASES, Settings, load_settings
from kb.state.cli import audit_app, handoffs_app, state_app, users_app

if TYPE_CHECKING:
    from kb.store import KnowledgeStore

app = typer.Typer(
    help="kbassist: answers from your policy and process documents, with citations.",
    no_args_is_help=True,
    add_completion=False,
)
kb_app = typer.Typer(help="Inspect, and remove, what is in the knowledge base.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")
app.command("gaps")(gaps_command)
app.add_typer(state_app, name="state")
app.add_typer(users_app, name="users")
app.add_typer(handoffs_app, name="handoffs")
app.add_typer(audit_app, name="audit")


def _settings(ctx: typer.Context, **overrides: object) -> Settings:
    """Settings with the global ``--kb`` choice (kept in the command context) applied."""
    chosen = dict(ctx.obj) if isinstance(ctx.obj, dict) else {}
    try:
        return load_settings(**{**chosen, **overrides})
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


def _open_store(settings: Settings) -> KnowledgeStore:
    from kb.store import KnowledgeStore

    with _store_errors():
        return KnowledgeStore(settings)


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens, per document.")] = False,
    kb: Annotated[
        str | None,
        typer.Option(
            "--kb",
            help="Which knowledge base every command uses: default (yours) or demo (the bundled demo, "
            "written by `kbassist ingest --demo`). Same as KBASSIST_KB.",
        ),
    ] = None,
) -> None:
    if kb is not None and kb not in KNOWLEDGE_BASES:
        raise typer.BadParameter(f"{kb!r} is not a knowledge base (use {' or '.join(KNOWLEDGE_BASES)})", param_hint="--kb")
    ctx.obj = {"kb": kb} if kb else {}
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _prepare_indexes(store: KnowledgeStore) -> None:
    """Build the role indexes for the store's new revision now, so the next question does not wait.

    A shell may call both services: ingest (which must not know about answering) writes the
    documents, then the assist side's indexes are built once, here, under their shared lock.
    """
    from assist.role_indexes import ChunkIndexes

    with _store_errors():
        ChunkIndexes(store).prepare()


def _demo_leftovers(settings: Settings) -> list[str]:
    """Demo documents left in the default knowledge base by an `ingest --demo` from before the demo had its own."""
    from kb.documents import documents_under

    if settings.is_demo:
        return []
    with _store_errors():
        return documents_under(_open_store(settings), demo_docs_path())


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (md, txt, html, pdf, docx).")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Ingest the bundled demo into its own knowledge base (use it with --kb demo or KBASSIST_KB=demo)."
        ),
    ] = False,
    prune: Annotated[
        bool | None,
        typer.Option(
            "--prune/--no-prune", help="Remove documents deleted from a given folder. Default: on for folders."
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Let a file take over the id of a document that came from another file (same `id:` or same "
            "name below another folder). Without it that is an error and the document is kept.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Add or update documents in the knowledge base. Unchanged files are skipped.

    Text files that are not UTF-8 are read in the encoding detected (and the report names it);
    a second path to a file already ingested in the run (a symlink) is skipped; files of other
    types inside a folder are listed, not ingested; a symlink leading out of a folder is not followed.
    """
    from tqdm import tqdm

    from ingest.pipeline import ingest as run_ingest

    if demo and paths:
        typer.secho(
            "error: --demo ingests the bundled demo into its own knowledge base; ingest your own files without it "
            "(or with --kb demo to add them to the demo)",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    targets = [demo_docs_path()] if demo else list(paths or [])
    if not targets:
        typer.secho("error: give at least one file or folder, or --demo", fg="red", err=True)
        raise typer.Exit(2)
    settings = _settings(ctx, kb="demo") if demo else _settings(ctx)
    store = _open_store(settings)
    bar = tqdm(total=0, unit="file", desc="ingest", disable=None, file=sys.stderr)

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_postfix_str(name[-40:])
        bar.update(done - bar.n)

    try:
        with _store_errors("Documents stored before this are intact; run the same ingest again once it is fixed."):
            report = run_ingest(targets, store, prune=prune, progress=progress, replace=replace)
    finally:
        bar.close()
    if report.changed:
        _prepare_indexes(store)
    for error in report.errors:
        typer.secho(f"error: {error}", fg="red", err=True)
    _audit_ingest(settings, targets, report)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(report.summary())
    if demo and not as_json:
        typer.echo(
            "The demo is a knowledge base of its own: `kbassist --kb demo ask \"...\"`, or KBASSIST_KB=demo for the "
            "app and every command.",
            err=True,
        )
        leftovers = _demo_leftovers(_settings(ctx, kb="default"))
        if leftovers:
            typer.echo(
                f"note: your default knowledge base still holds {len(leftovers)} demo documents from an earlier "
                f"`ingest --demo`; `kbassist kb remove --under {demo_docs_path()}` takes them out.",
                err=True,
            )
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
def kb_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the documents in the knowledge base."""
    settings = _settings(ctx)
    with _store_errors():
        docs = _open_store(settings).documents()
    if as_json:
        typer.echo(json.dumps([asdict(d) for d in docs], indent=2))
        return
    if not docs:
        if settings.is_demo:
            typer.echo("The demo knowledge base is empty. Fill it with: kbassist ingest --demo")
        else:
            typer.echo("The knowledge base is empty. Add documents with: kbassist ingest PATH (the demo: kbassist ingest --demo)")
        return
    header = f"{'id':34} {'audience':9} {'market':6} {'lang':4} {'format':8} {'chunks':>6}  {'version':8} {'review_by':10} title"
    typer.echo(header)
    for d in docs:
        typer.echo(
            f"{d.doc_id[:34]:34} {d.audience:9} {d.market:6} {d.language:4} {d.format:8} {d.chunk_count:>6}  "
            f"{d.version[:8]:8} {d.review_by:10} {d.title}{'' if d.published else '  [unpublished]'}"
        )


@kb_app.command("show")
def kb_show(
    ctx: typer.Context,
    doc_id: Annotated[str, typer.Argument(help="The document id (see `kbassist kb list`).")],
    text: Annotated[bool, typer.Option("--text", help="Print every passage in full.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (passages in full).")] = False,
) -> None:
    """A document's metadata, source file and stored passages, with their sections and token counts."""
    from kb.documents import UnknownDocuments, show_document

    try:
        with _store_errors():
            view = show_document(_open_store(_settings(ctx)), doc_id, actor="cli")
    except UnknownDocuments as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(view.to_dict(), indent=2, ensure_ascii=False))
        return
    r = view.record
    fields = {
        "title": r.title,
        "source": r.path,
        "format": r.format,
        "audience": r.audience,
        "market": r.market,
        "language": r.language,
        "product": r.product,
        "owner": r.owner,
        "version": r.version,
        "review_by": r.review_by,
        "ingested": r.ingested_at,
        "published": "yes" if r.published else "no: no role gets answers from it until an owner publishes it",
    }
    typer.echo(f"{r.doc_id}")
    for name, value in fields.items():
        typer.echo(f"  {name + ':':10} {value or '-'}")
    total = sum(c.tokens for c in view.chunks)
    typer.echo(f"\n{len(view.chunks)} passages, {total} tokens")
    for c in view.chunks:
        typer.echo(f"  [{c.position}] {c.tokens:>4} tokens  {c.section}")
        body = c.text.split("\n\n", 1)[-1]
        if text:
            typer.echo("\n".join("        " + line for line in body.splitlines()))
        else:
            preview = " ".join(body.split())
            typer.echo(f"        {preview[:100]}{'…' if len(preview) > 100 else ''}")


@kb_app.command("remove")
def kb_remove(
    ctx: typer.Context,
    doc_ids: Annotated[list[str] | None, typer.Argument(help="Document ids (see `kbassist kb list`).")] = None,
    under: Annotated[
        Path | None, typer.Option("--under", help="Also every document whose source file is inside this folder.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
) -> None:
    """Remove documents: their passages, their registry record, and what every role can retrieve of them.

    Every id is checked first; an unknown one is an error and nothing is removed. A file still in
    a folder you ingest comes back on the next ingest of that folder: delete or move the file too.
    """
    from kb.documents import UnknownDocuments, documents_under, find_documents, remove_documents

    settings = _settings(ctx)
    store = _open_store(settings)
    wanted = list(doc_ids or [])
    try:
        with _store_errors():
            if under is not None:
                wanted += documents_under(store, under)
            if not wanted:
                typer.secho("error: give document ids, or --under FOLDER with documents in it", fg="red", err=True)
                raise typer.Exit(2)
            records = find_documents(store, wanted)
    except UnknownDocuments as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    chunks = sum(r.chunk_count for r in records)
    typer.echo(f"{len(records)} document(s), {chunks} passages, from the {settings.kb} knowledge base:")
    for r in records:
        typer.echo(f"  {r.doc_id}  ({r.title}, {r.chunk_count} passages, {r.path})")
    if not yes and not typer.confirm("Remove them?", default=False):
        typer.echo("Nothing removed.")
        raise typer.Exit(1)
    with _store_errors("Documents removed before this are gone; run the same command again to finish."):
        removed = remove_documents(store, [r.doc_id for r in records], actor="cli")
    from kb.state.audit import cli_actor, record_kb_change

    with _state_errors():
        record_kb_change(
            settings,
            actor=cli_actor(),
            action="kb.remove",
            target=", ".join(r.doc_id for r in removed)[:500],
            details={"doc_ids": [r.doc_id for r in removed], "chunks": sum(r.chunks for r in removed)},
        )
    _prepare_indexes(store)
    typer.echo(f"removed {len(removed)} document(s), {sum(r.chunks for r in removed)} passages")


@kb_app.command("stats")
def kb_stats(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts by audience, market, language and format, and documents past their review date."""
    with _store_errors():
        stats = _open_store(_settings(ctx)).stats()
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
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    role: Annotated[
        str, typer.Option(help="Who is asking: customer, agent or internal. Decides what can be read.")
    ] = "agent",
    market: Annotated[
        str | None,
        typer.Option(help="Market code, e.g. SE or DE (one the knowledge base has documents for). Documents for ALL markets always count."),
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

    settings = _settings(ctx)
    store = _open_store(settings)
    if market and market.upper() != "ALL":
        with _store_errors():
            known = None if store.has_market(market) else sorted(store.markets() - {"ALL"})
        if known is not None:
            listed = ", ".join(known) if known else "none (every document is for ALL markets)"
            typer.secho(
                f"error: the knowledge base has no document for market {market.upper()!r}; markets it knows: {listed}",
                fg="red",
                err=True,
            )
            raise typer.Exit(2)
    assistant = Assistant(store, settings)
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
            language = f", {c.language}" if c.language else ""
            typer.echo(f"  [{c.number}] {c.title} — {c.section}{language}{version} ({c.chunk_id})")
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
    try:
        app()
    finally:
        # The command is done and the process is about to end: spare it the interpreter's final
        # garbage collections over everything chromadb, pydantic and numpy left on the heap (half
        # a second and more of a short `kbassist ask`). Nothing here relies on a cycle's finaliser.
        gc.freeze()


if __name__ == "__main__":
    main()

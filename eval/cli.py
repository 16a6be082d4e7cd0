"""``kbassist eval run | compare`` and ``kbassist gaps``: the harness from the command line."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from eval.bundled import dataset_names
from kb.settings import Settings, load_settings

eval_app = typer.Typer(help="Measure answer quality on a question set; compare runs.", no_args_is_help=True)


def _settings(ctx: typer.Context | None = None) -> Settings:
    """Settings, with the knowledge base chosen by ``kbassist --kb`` (kept in the command context)."""
    chosen = dict(ctx.obj) if ctx is not None and isinstance(ctx.obj, dict) else {}
    try:
        return load_settings(**chosen)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


PROGRESS_LINE = "progress {system} {done}/{total}"
PROGRESS_STEPS = 20  # plain progress lines per system when stderr is not a terminal


def default_run_dir(settings: Settings, dataset: str) -> Path:
    """Where a run goes without --out: under DATA_DIR/eval-runs (the demo's: DATA_DIR/demo/eval-runs),
    the folder `gaps` and the app read."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return settings.eval_runs_path / f"{stamp}-{Path(dataset).stem}"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


@contextmanager
def _knowledge_base(settings: Settings, docs: Path | None) -> Iterator[Any]:
    """The configured knowledge base, or ``docs`` ingested into a throw-away one.

    A store that fails while in use (a server gone for longer than its retries, a full disk)
    ends the command with one line, here, for every command that uses a knowledge base.
    """
    from ingest.pipeline import ingest
    from kb.store import KnowledgeStore, StoreUnavailable

    try:
        if docs is None:
            yield KnowledgeStore(settings)
            return
        with tempfile.TemporaryDirectory(prefix="kbassist-eval-") as tmp:
            isolated = settings.model_copy(
                update={"data_dir": Path(tmp), "chroma_url": None, "collection": "eval", "kb": "default"}
            )
            store = KnowledgeStore(isolated)
            typer.echo(f"ingesting {docs} into a temporary knowledge base…", err=True)
            report = ingest([docs], store)
            for error in report.errors:
                typer.echo(f"error: {error}", err=True)
            typer.echo(report.summary(), err=True)
            yield store
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc


def _print_headline(results: dict[str, Any]) -> None:
    systems = results["headline"]
    names = list(systems)
    metrics = list(next(iter(systems.values()))) if systems else []
    typer.echo(f"{'metric':22}" + "".join(f"{n:>20}" for n in names))
    for metric in metrics:
        cells = "".join(
            f"{'—' if systems[n].get(metric) is None else format(systems[n][metric], '.3f'):>20}" for n in names
        )
        typer.echo(f"{metric:22}{cells}")


@eval_app.command("run")
def run(
    ctx: typer.Context,
    dataset: Annotated[
        str,
        typer.Option(
            help=f"A bundled question set ({', '.join(dataset_names())}), a PolicyQA-format folder, or a .jsonl file."
        ),
    ] = "demo",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory for results.json, details.jsonl and report.html "
            "(default: DATA_DIR/eval-runs/DATE-TIME-DATASET, where `kbassist gaps` and the app find runs)."
        ),
    ] = None,
    sample: Annotated[int, typer.Option(help="Evaluate a fixed random sample of N questions (seed 0); 0 = all.")] = 0,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Run the plain LangChain pipeline beside kbassist.")
    ] = True,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            help="metric=value, repeatable: exit 1 when the metric is worse than value. A floor for "
            "higher-is-better metrics (hit@5=0.9 fails below 0.9); a ceiling for lower-is-better ones, "
            "false_deflection and latency_p50/p95/p99_ms (false_deflection=0.27 fails above 0.27).",
        ),
    ] = None,
    docs: Annotated[
        Path | None, typer.Option(help="Documents to evaluate against (default: the question set's own, if any).")
    ] = None,
    current_kb: Annotated[
        bool, typer.Option("--current-kb", help="Evaluate the configured knowledge base instead of ingesting documents.")
    ] = False,
    trim_passages: Annotated[
        int | None, typer.Option(help="Keep only this many characters of each passage in details.jsonl.")
    ] = None,
    judge: Annotated[
        bool | None,
        typer.Option(
            "--judge/--no-judge",
            help="Also have the configured language model judge groundedness (default: when KBASSIST_LLM_BASE_URL is set).",
        ),
    ] = None,
) -> None:
    """Ask every question of a set, score the answers, write results and a self-contained HTML report.

    Every metric is reported overall and per category, role and market with a 95% bootstrap
    interval, kbassist beside the plain LangChain pipeline when the set has its own documents.
    With --fail-under the run is a quality gate: exit 1 when a metric is worse than its limit,
    exit 2 for a usage error (unknown metric, unreadable question set).
    """
    from tqdm import tqdm

    from eval.compare import Gate
    from eval.datasets import DatasetError, load_dataset
    from eval.runner import run_eval, write_run

    try:
        gates = [Gate.parse(g) for g in fail_under or []]
        data = load_dataset(dataset).sample(sample or None)
    except (DatasetError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    settings = _settings(ctx)
    if out is None:
        out = default_run_dir(settings, data.name)
    source = None if current_kb else (docs or data.docs)
    if docs is not None:
        data = type(data)(data.name, data.questions, docs)
    if baseline and data.docs is None:
        typer.echo("no documents for the baseline (give --docs); running kbassist only", err=True)
        baseline = False
    bars: dict[str, Any] = {}

    def progress(system: str, done: int, total: int) -> None:
        bar = bars.get(system)
        if bar is None:
            bar = bars[system] = tqdm(total=total, desc=system, unit="q", file=sys.stderr, disable=None)
        bar.update(done - bar.n)
        if bar.disable and (done == total or done % max(1, total // PROGRESS_STEPS) == 0):
            # No terminal (a CI log, a pipe): a few plain lines instead of a bar.
            typer.echo(PROGRESS_LINE.format(system=system, done=done, total=total), err=True)

    with _knowledge_base(settings, source) as store:
        if not store.documents():
            raise _fail("the knowledge base is empty; ingest documents first or give --docs")
        if judge and not store.settings.llm_base_url:
            raise _fail("--judge needs a language model endpoint (set KBASSIST_LLM_BASE_URL)")
        result = run_eval(data, store, store.settings, baseline=baseline, progress=progress, judge=judge)
    for bar in bars.values():
        bar.close()
    typer.echo("scoring and writing the report…", err=True)
    results = write_run(result, out, trim_passages)
    _print_headline(results)
    llm = results["systems"].get("kbassist", {}).get("llm")
    if llm:
        usd = "" if llm["usd_per_answer"] is None else f", about ${llm['usd_per_answer']:.5f}"
        typer.echo(
            f"language model: {llm['prompt_tokens']:.0f} prompt + {llm['completion_tokens']:.0f} completion tokens "
            f"per answer{usd}"
        )
    typer.echo(f"\nwrote {out / 'results.json'}, {out / 'details.jsonl'} and {out / 'report.html'}")
    failures = [msg for msg in (g.check(results) for g in gates) if msg]
    for msg in failures:
        typer.secho(f"FAIL {msg}", fg="red", err=True)
    if failures:
        raise typer.Exit(1)


@eval_app.command("compare")
def compare_runs(
    run_a: Annotated[Path, typer.Argument(help="The reference run (directory or results.json).")],
    run_b: Annotated[Path, typer.Argument(help="The run to judge against it.")],
    system: Annotated[
        str | None,
        typer.Option(help="Compare only this system (default: every system both runs have, e.g. kbassist)."),
    ] = None,
    latency: Annotated[
        bool,
        typer.Option(
            "--latency", help="Judge latency too (by default it is shown but never a regression: it varies with load)."
        ),
    ] = False,
    fail_on_regression: Annotated[
        bool, typer.Option("--fail-on-regression", help="Exit 1 when any metric regressed beyond run A's 95% CI.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Metric by metric: A, B, the change, and whether B fell outside A's 95% confidence interval.

    A change inside A's interval is resampling noise and is not flagged. "Worse" follows each
    metric's direction: a drop for hit@5 or F1, a rise for false_deflection (and latency, with
    --latency). Set-up differences between the runs (threshold, settings, versions) are listed
    first; systems only one run has (a run made with --no-baseline) are named and left out.
    """
    from dataclasses import asdict

    from eval.compare import compare, differences, load_results, systems_to_compare

    try:
        a, b = load_results(run_a), load_results(run_b)
        common, only_a, only_b = systems_to_compare(a, b)
        systems = [system] if system else common
        deltas = {name: compare(a, b, name, latency=latency) for name in systems}
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(f"cannot compare: {exc}") from exc
    if not systems:
        raise _fail(f"cannot compare: the runs have no system in common (A: {only_a}, B: {only_b})")
    diffs = differences(a, b)
    left_out = {"only_in_a": only_a, "only_in_b": only_b} if not system else {}
    regressions = {n: [d.metric for d in ds if d.regression] for n, ds in deltas.items()}
    regressions = {n: r for n, r in regressions.items() if r}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "a": str(run_a),
                    "b": str(run_b),
                    "differences": [asdict(d) for d in diffs],
                    "systems": {n: [asdict(d) | {"delta": d.delta} for d in ds] for n, ds in deltas.items()},
                    "not_compared": left_out,
                    "latency_judged": latency,
                    "regressions": regressions,
                },
                indent=2,
                default=str,
            )
        )
    else:
        _print_comparison(a, b, diffs, deltas, left_out, latency)
    if regressions:
        listed = "; ".join(f"{n}: {', '.join(r)}" for n, r in regressions.items())
        count = sum(len(r) for r in regressions.values())
        typer.secho(f"{count} regression(s) beyond the CI: {listed}", fg="red", err=True)
        if fail_on_regression:
            raise typer.Exit(1)


def _print_comparison(
    a: dict[str, Any],
    b: dict[str, Any],
    diffs: list[Any],
    deltas: dict[str, list[Any]],
    left_out: dict[str, list[str]],
    latency: bool,
) -> None:
    for name, results in (("A", a), ("B", b)):
        run = results.get("run", {})
        load = run.get("load_average")
        typer.echo(
            f"{name}: {results.get('dataset', '?')}, {run.get('date', '?')}, {run.get('questions', '?')} questions, "
            f"threshold {results.get('threshold', '?')}" + (f", load average {load[0]}" if load else "")
        )
    if diffs:
        typer.echo("The runs differ in:")
        for d in diffs:
            typer.echo(f"  {d.name}: {d.a} (A) → {d.b} (B)")
    else:
        typer.echo("Same question set, threshold and settings.")
    for name, missing in (("A", left_out.get("only_in_b")), ("B", left_out.get("only_in_a"))):
        if missing:
            typer.echo(f"Not compared: {', '.join(missing)} (run {name} has no results for it, e.g. --no-baseline).")
    for system, ds in deltas.items():
        typer.echo(f"\n{system}\n{'metric':22}{'A':>10}{'B':>10}{'change':>10}  A's 95% CI")
        for d in ds:
            va = "—" if d.a is None else f"{d.a:.3f}"
            vb = "—" if d.b is None else f"{d.b:.3f}"
            change = "—" if d.delta is None else f"{d.delta:+.3f}"
            ci = f"[{d.ci_a[0]:.3f}, {d.ci_a[1]:.3f}]" if d.ci_a else ""
            flag = "  REGRESSION" if d.regression else ("  improved" if d.improvement else "")
            if not d.judged:
                flag = "  (not judged)"
            typer.echo(f"{d.metric:22}{va:>10}{vb:>10}{change:>10}  {ci}{flag}")
    if not latency and any(not d.judged for ds in deltas.values() for d in ds):
        typer.echo("\nLatency varies with the machine's load and is not judged; --latency judges it too.")


@eval_app.command("calibrate")
def calibrate(
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            help="A question set with gold labels, repeatable: demo, realistic, a .jsonl path, or PATH=DOCS to "
            "evaluate a set against its own documents (e.g. questions.jsonl=docs/). Default: demo and realistic.",
        ),
    ] = None,
    current_kb: Annotated[
        bool, typer.Option("--current-kb", help="Use the configured knowledge base for sets without their own documents.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write segments.json, answerability.json and calibration.md (default: DATA_DIR/models)."),
    ] = None,
    sample: Annotated[
        int, typer.Option(help="Use at most N questions of each set (a fixed random sample, seed 0); 0 = all.")
    ] = 0,
) -> None:
    """Fit the answer-selection and answerability models on your own questions.

    Writes both models and a report (cross-validated AUC, the reliability table, the chosen
    thresholds and the deflection / false-deflection curve). Point KBASSIST_MODELS_DIR at the
    folder to use them; the models shipped with kbassist were fitted with this command.
    Questions need gold labels: must_include facts (or answers/evidence) and answerable.
    """
    from contextlib import ExitStack

    from assist.service import Assistant
    from eval.calibration_report import write_calibration
    from eval.datasets import DatasetError, load_dataset
    from eval.fitting import fit_models

    settings = _settings()
    specs = dataset or ["demo", "realistic"]
    out = out or settings.data_dir / "models"
    bars: dict[str, Any] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            from tqdm import tqdm

            bar = bars[name] = tqdm(total=total, desc=name, unit="q", file=sys.stderr, disable=None)
        bar.update(done - bar.n)

    with ExitStack() as stack:
        runs = []
        stores: dict[str, Any] = {}
        for spec in specs:
            name, _, docs = spec.partition("=")
            try:
                data = load_dataset(name).sample(sample or None)
            except DatasetError as exc:
                raise _fail(str(exc)) from exc
            source = Path(docs) if docs else (None if current_kb else data.docs)
            if source is None and not current_kb:
                raise _fail(f"{name}: no documents to evaluate against (give {name}=DOCS or --current-kb)")
            key = str(source)
            if key not in stores:
                stores[key] = stack.enter_context(_knowledge_base(settings, source))
            store = stores[key]
            runs.append((data, Assistant(store, store.settings.model_copy(update={"confidence_threshold": 0.0}))))
        segment_model, answer_model = fit_models(runs, progress)
    for bar in bars.values():
        bar.close()
    write_calibration(out, segment_model, answer_model)
    thresholds = answer_model.info["thresholds"]
    typer.echo(
        f"cross-validated AUC: selection {segment_model.info['cv_auc']}, answerability {answer_model.info['cv_auc']}; "
        f"answer at {thresholds['answer']}, related articles from {thresholds['related']}"
    )
    typer.echo(f"wrote {out / 'segments.json'}, {out / 'answerability.json'} and {out / 'calibration.md'}")
    typer.echo(f"to use them: KBASSIST_MODELS_DIR={out}")


def _recorded_questions_store(settings: Settings) -> Any:
    """The state store holding the questions people asked, or None when there is none yet.

    A default SQLite store that was never created is not created for a report (unless an old
    interaction log waits to be imported into it).
    """
    from sqlalchemy.engine import make_url

    from kb.state import SchemaTooNew, StateUnavailable, open_state

    url = make_url(settings.state_database_url)
    sqlite_file = Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
    if sqlite_file is not None and not sqlite_file.is_file() and not settings.interactions_path.is_file():
        return None
    try:
        return open_state(settings)
    except (StateUnavailable, SchemaTooNew) as exc:
        raise _fail(f"cannot read the recorded questions: {exc}") from exc


def gaps_command(
    ctx: typer.Context,
    runs: Annotated[
        list[Path] | None,
        typer.Option(
            "--runs",
            help="Evaluation run directories, repeatable (default: the newest run per question set under "
            "DATA_DIR/eval-runs, where `eval run` and the app write them).",
        ),
    ] = None,
    questions: Annotated[
        list[Path] | None,
        typer.Option(
            "--questions",
            help="Logged questions as JSON lines, repeatable (e.g. an export of the app's log). Given, they "
            "replace the app's interaction log.",
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="Include the questions the app and `kbassist ask` recorded (the state store, KBASSIST_STATE_URL).",
        ),
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="Write gaps.md, gaps.html and gaps.json into this directory.")
    ] = None,
    docs: Annotated[
        Path | None,
        typer.Option(
            help="Judge against these documents (ingested into a temporary knowledge base) "
            "instead of the configured one."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Coverage gaps: unanswered topics by volume, documents never retrieved or past review, conflicting content.

    Refused and low-confidence questions (from evaluation runs and from what customers and agents
    asked in the app) are grouped by meaning and ranked by volume, each group named by its most
    central questions. Then the documents: never retrieved by any question, past their review_by
    date, and passages in different documents that are near-duplicates or state different numbers
    for the same thing. Markdown on the terminal; --out writes Markdown, HTML and JSON.
    """
    from eval.gaps import (
        gap_report,
        latest_runs,
        records_from_jsonl,
        records_from_logged,
        records_from_runs,
        render_html,
        render_markdown,
    )

    settings = _settings(ctx)
    root = settings.eval_runs_path
    chosen_runs = list(runs) if runs else (latest_runs(root) if root.is_dir() else [])
    logged = list(questions or [])
    for path in [*chosen_runs, *logged]:
        if not path.exists():
            raise _fail(f"no such file or folder: {path}")
    state = _recorded_questions_store(settings) if live and not logged else None
    sources = f"{len(chosen_runs)} run(s), {len(logged)} question file(s)"
    typer.echo(f"reading {sources}" + (f" and the questions recorded in {state.where}" if state else ""), err=True)

    def records() -> Iterator[Any]:
        yield from records_from_runs(chosen_runs)
        for path in logged:
            yield from records_from_jsonl(path)
        if state is not None:
            yield from records_from_logged(state.conversations.logged_questions())

    try:
        with _knowledge_base(settings, docs) as store:
            from assist.service import Assistant

            report = gap_report(records(), store, Assistant(store, store.settings).gate.answer_at)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _fail(f"cannot read the questions: {exc}") from exc
    data = report.to_dict()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gaps.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "gaps.md").write_text(render_markdown(report), encoding="utf-8")
        (out / "gaps.html").write_text(render_html(report), encoding="utf-8")
        typer.echo(f"wrote gaps.md, gaps.html and gaps.json into {out}", err=True)
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif out is None:
        typer.echo(render_markdown(report))

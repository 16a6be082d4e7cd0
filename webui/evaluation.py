"""The web app's side of the evaluation harness: start runs and gap reports, read what they wrote.

The harness is the ``eval`` package. The app calls its functions directly (``eval.runner.run_eval``
and ``write_run``, ``eval.gaps.gap_report``) with a progress callback, in a background thread, so
the page stays responsive while a run takes minutes and other users are not held up. One job of
each kind runs at a time per knowledge base; every session of the app sees its progress. What the
app reads back is the run directory (``results.json``, ``report.html``) and the coverage-gap JSON.
When the harness is not installed, the app says so instead of offering buttons that cannot work.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kb.settings import Settings

log = logging.getLogger(__name__)

RESULTS = "results.json"
REPORT = "report.html"
GAPS = "gaps.json"


def _harness_has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # an installation without the eval package
        return False


def eval_available() -> bool:
    return _harness_has("eval.runner")


def gaps_available() -> bool:
    return _harness_has("eval.gaps")


def runs_dir(settings: Settings) -> Path:
    """The selected knowledge base's runs (the demo keeps its own, under DATA_DIR/demo)."""
    return settings.eval_runs_path


def datasets() -> list[str]:
    """Datasets shipped with the harness (``eval/datasets/NAME.jsonl``)."""
    try:
        from eval.bundled import bundled_names
    except ModuleNotFoundError:  # an installation without the harness
        return []
    return bundled_names()


@dataclass(frozen=True)
class EvalRun:
    path: Path
    results: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def report(self) -> Path | None:
        report = self.path / REPORT
        return report if report.is_file() else None


def list_runs(settings: Settings) -> list[EvalRun]:
    """Finished runs (those with a readable results.json), newest first."""
    root = runs_dir(settings)
    if not root.is_dir():
        return []
    runs = []
    for folder in root.iterdir():
        results = folder / RESULTS
        if folder.is_dir() and results.is_file():
            try:
                runs.append(EvalRun(folder, json.loads(results.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
    return sorted(runs, key=lambda r: (r.path / RESULTS).stat().st_mtime, reverse=True)


def new_run_dir(settings: Settings, dataset: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return runs_dir(settings) / f"{stamp}-{Path(dataset).stem}"


class JobFailed(Exception):
    """A run that cannot be done, with the reason to show the owner."""


@dataclass
class Job:
    """One evaluation run or gap report in a background thread; the page reads it on every rerun."""

    kind: str  # "eval" or "gaps"
    label: str
    state: str = "running"  # running, complete, error
    done: int = 0
    total: int = 0
    step: str = "starting…"
    error: str = ""
    result: Path | None = None
    started: float = field(default_factory=time.monotonic)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return 1.0 if self.state == "complete" else (self.done / self.total if self.total else 0.0)

    def progress(self, done: int, total: int, step: str) -> None:
        self.done, self.total, self.step = done, total, step

    def wait(self, timeout: float | None = None) -> Job:
        if self.thread is not None:
            self.thread.join(timeout)
        return self


_jobs: dict[tuple[str, str], Job] = {}
_jobs_lock = threading.Lock()


def current_job(settings: Settings, kind: str) -> Job | None:
    """The running or last finished job of ``kind`` for this knowledge base (None: none since the app started)."""
    with _jobs_lock:
        return _jobs.get((kind, str(runs_dir(settings))))


def _start(settings: Settings, kind: str, label: str, work: Callable[[Job], Path]) -> Job:
    """``work(job)`` in a daemon thread, unless a job of ``kind`` is already running for this KB."""
    key = (kind, str(runs_dir(settings)))
    with _jobs_lock:
        running = _jobs.get(key)
        if running is not None and running.running:
            return running
        job = _jobs[key] = Job(kind, label)

    def target() -> None:
        try:
            job.result = work(job)
            job.state = "complete"
        except JobFailed as exc:
            job.error, job.state = str(exc), "error"
        except Exception as exc:  # any failure is shown to the owner, and logged in full
            log.exception("%s failed", label)
            job.error, job.state = f"{type(exc).__name__}: {exc}", "error"

    job.thread = threading.Thread(target=target, name=f"kbassist-{kind}", daemon=True)
    job.thread.start()
    return job


def start_eval_run(services: Any, dataset: str) -> Job:
    """Evaluate the configured knowledge base on ``dataset`` (kbassist only, no baseline) in the background."""

    def work(job: Job) -> Path:
        from eval.datasets import DatasetError, load_dataset
        from eval.runner import run_eval, write_run

        try:
            data = load_dataset(dataset)
        except (DatasetError, ValueError) as exc:
            raise JobFailed(str(exc)) from exc
        if not services.store.documents():
            raise JobFailed("the knowledge base is empty; ingest documents first")
        out = new_run_dir(services.settings, data.name)

        def progress(system: str, done: int, total: int) -> None:
            job.progress(done, total + 1, f"{system}: {done} of {total} questions")

        result = run_eval(data, services.store, services.settings, baseline=False, progress=progress)
        job.progress(job.total - 1, job.total, "scoring and writing the report…")
        write_run(result, out)
        return out

    return _start(services.settings, "eval", f"Evaluation on {Path(dataset).stem}", work)


def refresh_gaps(services: Any) -> Job:
    """The coverage-gap report, from the newest run per question set and every question logged, in the background.

    Written to ``eval-runs/gaps.json``, where :func:`load_gaps` finds it.
    """

    def work(job: Job) -> Path:
        from eval.gaps import gap_report, latest_runs, records_from_logged, records_from_runs

        root = runs_dir(services.settings)
        runs = latest_runs(root) if root.is_dir() else []

        def records():
            yield from records_from_runs(runs)
            yield from records_from_logged(services.state.conversations.logged_questions())

        report = gap_report(records(), services.store, services.assistant.gate.answer_at, progress=job.progress)
        target = root / GAPS
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return target

    return _start(services.settings, "gaps", "Gap report", work)


def load_gaps(settings: Settings) -> tuple[Path, Any] | None:
    """The newest coverage-gap JSON: ``eval-runs/gaps.json`` or one written inside a run directory."""
    root = runs_dir(settings)
    candidates = [root / GAPS, *(run.path / GAPS for run in list_runs(settings))]
    found = [p for p in candidates if p.is_file()]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return path, json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def forget_jobs() -> None:
    """Forget finished jobs (a running one keeps going); the tests start each app afresh with it."""
    with _jobs_lock:
        for key in [k for k, job in _jobs.items() if not job.running]:
            del _jobs[key]

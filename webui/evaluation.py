"""The web app's side of the evaluation harness: find it, start runs, read what runs wrote.

The harness is a separate part of kbassist (``kbassist eval run``, ``kbassist gaps``). The app
talks to it through its command line, in a child process, so a long run neither blocks other
users nor ties the app to the harness's internals; what the app reads back is the run directory
(``results.json``, ``report.html``) and the coverage-gap JSON. When the harness is not installed,
the app says so instead of offering buttons that cannot work.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kb.settings import Settings

RESULTS = "results.json"
REPORT = "report.html"
GAPS = "gaps.json"


def cli_commands() -> set[str]:
    """Top-level ``kbassist`` commands and command groups, e.g. {"ingest", "ask", "kb", "eval", "gaps"}."""
    import kbassist_cli

    groups = {g.name for g in kbassist_cli.app.registered_groups if g.name}
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in kbassist_cli.app.registered_commands}
    return (groups | commands) - {""}


def eval_available() -> bool:
    return "eval" in cli_commands()


def gaps_available() -> bool:
    return "gaps" in cli_commands()


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


def _stream(command: list[str], on_line: Callable[[str], None]) -> int:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            on_line(line.rstrip())
        return process.wait()


_PROGRESS = re.compile(r"^progress (\S+) (\d+)/(\d+)$")


def parse_progress(line: str) -> tuple[str, int, int] | None:
    """``(system, done, total)`` from one of the plain progress lines ``kbassist eval run`` prints
    when its output is not a terminal (as here, in a child process); ``None`` for any other line."""
    match = _PROGRESS.match(line.strip())
    if not match:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


def start_eval_run(dataset: str, out: Path, on_line: Callable[[str], None]) -> int:
    """``kbassist eval run`` of the configured knowledge base in a child process; returns its exit code."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["eval", "run", "--dataset", dataset, "--current-kb", "--out", str(out)]
    return _stream([sys.executable, "-m", "kbassist_cli", *command], on_line)


def refresh_gaps(settings: Settings, on_line: Callable[[str], None]) -> int:
    """``kbassist gaps --json`` written to ``eval-runs/gaps.json``; returns the exit code.

    The command reads the newest runs under ``eval-runs`` and the interaction log itself (the
    child process has the app's settings), so the report covers every question logged so far.
    """
    target = runs_dir(settings) / GAPS
    target.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [sys.executable, "-m", "kbassist_cli", "gaps", "--json"], capture_output=True, text=True, check=False
    )
    for line in completed.stderr.splitlines():
        on_line(line)
    if completed.returncode == 0:
        json.loads(completed.stdout)  # refuse to store something the page cannot read
        target.write_text(completed.stdout, encoding="utf-8")
    return completed.returncode


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

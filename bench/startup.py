"""What one ``kbassist ask`` costs from a cold process, stage by stage, and the first ask after an ingest.

Why: a shell command pays for its imports, the embedding model, opening the store and mapping
the role's BM25 index before it answers, and an agent running ``kbassist ask`` feels all of it.
This script ingests the bundled demo into a fresh data folder (the demo knowledge base), then:

- times whole ``kbassist ask`` processes (warm disk cache), minimum and median over ``--runs``;
- times, in fresh processes, each start-up stage: importing the CLI, importing the store
  (chromadb) and the assistant, reading settings, opening the store, loading the model,
  mapping the role's index, and the ask itself;
- lists which packages the imports spend their time in (``python -X importtime``, self time
  summed per top-level package, so the rows add up to the total);
- times the first ask after an ingest that changed the knowledge base (a one-file ingest
  before each measured ask), and that ingest itself.

The machine is shared, so every figure is the minimum over runs (the least disturbed one) with
the median beside it, and the load average is recorded. Two versions are measured in turn in
every round (A B A B ...), and their ratio is the median of the round-by-round ratios, which
holds when the machine's speed drifts during the measurement.

    python bench/startup.py                                       # this checkout
    python bench/startup.py --variant before=/path/to/an/older/checkout --variant after

A variant with a path runs that checkout of kbassist (put first on PYTHONPATH; same venv).
Writes ``bench/results/startup.json`` and ``startup.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

QUESTION = "How long do I have to return an item in Sweden?"
ASK = ["ask", QUESTION, "--role", "customer", "--market", "SE"]
RESULTS = Path(__file__).resolve().parent / "results"
STAGES = (
    "import_cli",
    "import_store",
    "import_assistant",
    "settings",
    "open_store",
    "import_model_runtime",
    "load_model",
    "open_index",
    "ask",
)
EXTRA_DOC = """---
title: Bench note {n}
audience: customer
market: SE
---
# Bench note {n}

This note changes on every run so that the knowledge base gets a new revision ({n}).
"""


def _stage_child() -> None:
    """One fresh process: time each start-up stage in the order ``kbassist ask`` goes through them."""
    marks: dict[str, float] = {}
    t = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        marks[name] = round((now - t) * 1000, 1)
        t = now

    import kbassist_cli  # noqa: F401

    mark("import_cli")
    from kb.store import KnowledgeStore

    mark("import_store")
    from assist.access import Filters
    from assist.service import Assistant

    mark("import_assistant")
    from kb.settings import load_settings

    settings = load_settings()
    mark("settings")
    store = KnowledgeStore(settings)
    mark("open_store")
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401

    mark("import_model_runtime")
    store.embedder.embed(["warm"])
    mark("load_model")
    assistant = Assistant(store, settings)
    assistant.retriever.lexical.for_role("customer")
    mark("open_index")
    assistant.ask(QUESTION, role="customer", market="SE", filters=Filters("SE"))
    mark("ask")
    print(json.dumps(marks))


def _env(data_dir: Path, code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBASSIST_")}
    env.update(KBASSIST_DATA_DIR=str(data_dir), KBASSIST_KB="demo", KBASSIST_CONFIG=str(data_dir / "none.toml"))
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kbassist_cli", *args], env=env, cwd=cwd, check=True, capture_output=True, text=True
    )
    return time.perf_counter() - started


def _summary(values: list[float], digits: int = 3) -> dict[str, float]:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits)}


ROOTS = ("kbassist_cli", "kb.store", "assist.service")


def _import_times(env: dict[str, str], cwd: Path) -> tuple[dict[str, float], dict[str, float]]:
    """What ``kbassist ask`` imports, from one ``python -X importtime`` process (ms).

    Returns the self time summed per top-level package (the rows add up to the whole), and the
    cumulative time of each module imported directly by the CLI, the store or the assistant
    (``kb.store > chromadb``: chromadb with everything it pulls in first).
    """
    code = "import " + ", ".join(ROOTS)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    by_package: dict[str, float] = defaultdict(float)
    by_child: dict[str, float] = {}
    pending: list[tuple[str, float]] = []  # depth-1 lines come before their root's line
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        # One space after the bar, then two per level of nesting.
        own, cumulative, depth, name = int(match[1]) / 1000, int(match[2]) / 1000, (len(match[3]) - 1) // 2, match[4]
        by_package[name.split(".")[0]] += own
        if depth == 1:
            pending.append((name, cumulative))
        elif depth == 0:
            if name in ROOTS:
                by_child.update({f"{name} > {child}": ms for child, ms in pending})
            pending = []
    return by_package, by_child


class Variant:
    """One checkout of kbassist with its own data folder and the measurements taken of it."""

    def __init__(self, label: str, code: Path | None, root: Path) -> None:
        self.label = label
        self.cwd = code or Path(__file__).resolve().parents[1]
        self.data = root / label / "data"
        self.extra = root / label / "extra"
        self.env = _env(self.data, code)
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.imports: list[dict[str, float]] = []
        self.children: list[dict[str, float]] = []

    def setup(self) -> None:
        self.samples["ingest_demo_s"].append(_cli(["ingest", "--demo"], self.env, self.cwd))
        self.extra.mkdir(parents=True)
        _cli(ASK, self.env, self.cwd)  # warm-up: disk cache, and the index if the ingest did not build it

    def measure_round(self, n: int) -> None:
        """One of each measurement, so variants measured in turn see the same machine."""
        self.samples["ask_s"].append(_cli(ASK, self.env, self.cwd))
        done = subprocess.run(
            [sys.executable, __file__, "--stages"], env=self.env, cwd=self.cwd, capture_output=True, text=True, check=True
        )
        for name, ms in json.loads(done.stdout.strip().splitlines()[-1]).items():
            self.samples[f"stage:{name}"].append(ms)
        (self.extra / "bench-note.md").write_text(EXTRA_DOC.format(n=n), encoding="utf-8")
        self.samples["one_file_ingest_s"].append(_cli(["ingest", str(self.extra)], self.env, self.cwd))
        self.samples["first_ask_after_ingest_s"].append(_cli(ASK, self.env, self.cwd))
        packages, children = _import_times(self.env, self.cwd)
        self.imports.append(packages)
        self.children.append(children)

    def results(self) -> dict[str, object]:
        names = set().union(*self.imports)
        imports = {name: _summary([r.get(name, 0.0) for r in self.imports], 1) for name in names}
        kids = set().union(*self.children)
        children = {name: _summary([r.get(name, 0.0) for r in self.children], 1) for name in kids}
        return {
            "ask_s": _summary(self.samples["ask_s"]),
            "first_ask_after_ingest_s": _summary(self.samples["first_ask_after_ingest_s"]),
            "one_file_ingest_s": _summary(self.samples["one_file_ingest_s"]),
            "ingest_demo_s": round(self.samples["ingest_demo_s"][0], 1),
            "stages_ms": {n: _summary(self.samples[f"stage:{n}"], 1) for n in STAGES if self.samples[f"stage:{n}"]},
            "imports_ms": dict(sorted(imports.items(), key=lambda kv: -kv[1]["min"])),
            "direct_imports_ms": dict(sorted(children.items(), key=lambda kv: -kv[1]["min"])),
        }


def _ratio(a: Variant, b: Variant, key: str) -> float:
    """Median of the run-by-run ratios a/b: robust to the machine's speed drifting between rounds."""
    return round(statistics.median(x / y for x, y in zip(a.samples[key], b.samples[key], strict=True)), 3)


def measure(runs: int, variants: list[tuple[str, Path | None]]) -> dict[str, object]:
    from common import machine

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="kbassist-startup-") as tmp:
        measured = [Variant(label, code, Path(tmp)) for label, code in variants]
        for v in measured:
            v.setup()
        loads = []
        for n in range(runs):
            for v in measured:
                v.measure_round(n)
            loads.append(os.getloadavg()[0])
    out: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "runs": runs,
        "load_average_1min": {"start": load_before[0], "min": round(min(loads), 2), "max": round(max(loads), 2)},
        "variants": {v.label: v.results() for v in measured},
    }
    if len(measured) == 2:
        first, second = measured
        out["ratios"] = {
            "label": f"{second.label} / {first.label}",
            **{k: _ratio(second, first, k) for k in ("ask_s", "first_ask_after_ingest_s", "one_file_ingest_s")},
        }
    return out


def render(results: dict) -> str:
    variants = results["variants"]
    labels = list(variants)
    load = results["load_average_1min"]
    out = ["# `kbassist ask` start-up", ""]
    out.append(
        f"Whole processes on the demo knowledge base, warm disk cache, {results['runs']} rounds; the versions are "
        "measured in turn in every round, so they see the same machine. Minimum (median), seconds."
    )
    out.append(
        f"Shared machine, 1-minute load average {load['start']} at the start, {load['min']}–{load['max']} during "
        f"the rounds ({results['date']})."
    )
    out += ["", "| | " + " | ".join(labels) + (" | ratio, median of rounds |" if "ratios" in results else " |")]
    out.append("|---|" + "---|" * (len(labels) + ("ratios" in results)))
    rows = (
        ("`kbassist ask`", "ask_s"),
        ("first ask after an ingest", "first_ask_after_ingest_s"),
        ("the one-file ingest before it", "one_file_ingest_s"),
    )
    for title, key in rows:
        cells = [f"{variants[lb][key]['min']:.2f} ({variants[lb][key]['median']:.2f})" for lb in labels]
        if "ratios" in results:
            cells.append(f"{results['ratios'][key]:.2f} ({results['ratios']['label']})")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    out += ["", "## Stages of one ask, in a fresh process (ms, minimum (median))", ""]
    out += ["| stage | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for stage in STAGES:
        cells = []
        for lb in labels:
            value = variants[lb]["stages_ms"].get(stage)
            cells.append(f"{value['min']:.0f} ({value['median']:.0f})" if value else "–")
        out.append(f"| {stage} | " + " | ".join(cells) + " |")
    out += [
        "",
        "`import_model_runtime` is onnxruntime and tokenizers (imported on the model's first use);",
        "`load_model` reads the tokenizer and creates the onnxruntime session; `ask` includes Chroma",
        "reading the collection's vector index on the first query of a process.",
    ]
    for lb in labels:
        out += ["", f"## What the CLI, the store and the assistant import, {lb} (cumulative, ms)", ""]
        out += ["| import | min | median |", "|---|---|---|"]
        for name, value in list(variants[lb].get("direct_imports_ms", {}).items())[:12]:
            out.append(f"| {name} | {value['min']:.0f} | {value['median']:.0f} |")
    for lb in labels:
        out += ["", f"## Imports by package, {lb} (`python -X importtime`, self time, ms)", ""]
        rows_ = list(variants[lb]["imports_ms"].items())
        total = sum(v["min"] for _, v in rows_)
        out += ["| package | min | median |", "|---|---|---|"]
        for name, value in rows_[:15]:
            out.append(f"| {name} | {value['min']:.0f} | {value['median']:.0f} |")
        out.append(f"| (all {len(rows_)} packages, sum of minima) | {total:.0f} | |")
    out += ["", f"Machine: {results['machine']}", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--variant",
        action="append",
        metavar="LABEL[=CHECKOUT]",
        help="A version to measure: this checkout, or another one (put first on PYTHONPATH). Repeatable; "
        "two variants also get run-by-run ratios. Default: this checkout, labelled 'this'.",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages:
        _stage_child()
        return
    variants = []
    for spec in args.variant or ["this"]:
        label, _, code = spec.partition("=")
        variants.append((label, Path(code).resolve() if code else None))
    results = measure(args.runs, variants)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(render(results), encoding="utf-8")
    print(render(results))


if __name__ == "__main__":
    main()

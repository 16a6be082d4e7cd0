"""`eval compare` on real results: latency is shown but judged only on request, set-up differences
come first, runs without the baseline compare cleanly. The runs are the committed demo report and
copies of it changed the way a second run would differ."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eval.bundled import bundled_names
from eval.compare import compare, differences, load_results, systems_to_compare
from kbassist_cli import app

REPORT = Path(__file__).resolve().parents[1] / "eval" / "reports" / "demo"


@pytest.fixture
def base() -> dict[str, Any]:
    return load_results(REPORT)


def _write(folder: Path, results: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


def _slower(results: dict[str, Any], factor: float = 3.0) -> dict[str, Any]:
    """The same run on a loaded machine: every latency far outside A's interval, nothing else changed."""
    slow = copy.deepcopy(results)
    for system in slow["systems"].values():
        for metric, entry in system["overall"].items():
            if metric.startswith("latency_") and entry["value"] is not None:
                entry["value"] = round(entry["value"] * factor, 2)
    return slow


def test_latency_is_not_a_regression_unless_asked(base: dict[str, Any], tmp_path: Path) -> None:
    slow = _slower(base)
    default = {d.metric: d for d in compare(base, slow)}
    assert default["latency_p95_ms"].delta > 0 and not default["latency_p95_ms"].judged
    assert not any(d.regression for d in default.values())
    judged = {d.metric: d for d in compare(base, slow, latency=True)}
    assert judged["latency_p95_ms"].regression and judged["latency_p50_ms"].regression

    a, b = str(_write(tmp_path / "a", base)), str(_write(tmp_path / "b", slow))
    runner = CliRunner()
    quiet = runner.invoke(app, ["eval", "compare", a, b, "--fail-on-regression"])
    assert quiet.exit_code == 0, quiet.output
    assert "(not judged)" in quiet.output and "REGRESSION" not in quiet.output
    strict = runner.invoke(app, ["eval", "compare", a, b, "--fail-on-regression", "--latency"])
    assert strict.exit_code == 1 and "REGRESSION" in strict.output and "latency_p95_ms" in strict.output


def test_setting_differences_are_shown_first(base: dict[str, Any], tmp_path: Path) -> None:
    other = copy.deepcopy(base)
    other["threshold"] = 0.5
    other["run"]["settings"]["top_k"] = 8
    found = {d.name: (d.a, d.b) for d in differences(base, other)}
    assert found == {"threshold": (base["threshold"], 0.5), "settings.top_k": (5, 8)}
    assert differences(base, copy.deepcopy(base)) == []

    shown = CliRunner().invoke(
        app, ["eval", "compare", str(_write(tmp_path / "a", base)), str(_write(tmp_path / "b", other))]
    )
    assert shown.exit_code == 0, shown.output
    head = shown.output.split("kbassist\n", 1)[0]
    assert "The runs differ in:" in head
    assert f"threshold: {base['threshold']} (A) → 0.5 (B)" in head and "settings.top_k: 5 (A) → 8 (B)" in head
    same = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "a")])
    assert "Same question set, threshold and settings." in same.output


def test_a_run_without_the_baseline_compares_cleanly(base: dict[str, Any], tmp_path: Path) -> None:
    alone = copy.deepcopy(base)
    del alone["systems"]["langchain_baseline"], alone["headline"]["langchain_baseline"]
    assert systems_to_compare(base, alone) == (["kbassist"], ["langchain_baseline"], [])
    a, b = str(_write(tmp_path / "a", base)), str(_write(tmp_path / "b", alone))
    runner = CliRunner()
    for first, second in ((a, b), (b, a)):
        shown = runner.invoke(app, ["eval", "compare", first, second, "--fail-on-regression"])
        assert shown.exit_code == 0, shown.output
        assert "Not compared: langchain_baseline" in shown.output and "\nkbassist\n" in shown.output
    data = json.loads(runner.invoke(app, ["eval", "compare", a, b, "--json"]).output)
    assert list(data["systems"]) == ["kbassist"] and data["not_compared"]["only_in_a"] == ["langchain_baseline"]
    both = json.loads(runner.invoke(app, ["eval", "compare", a, a, "--json"]).output)
    assert list(both["systems"]) == ["kbassist", "langchain_baseline"]
    asked = runner.invoke(app, ["eval", "compare", a, b, "--system", "langchain_baseline"])
    assert asked.exit_code == 2 and "run B has no results for 'langchain_baseline'" in asked.output


def test_run_help_lists_every_bundled_question_set() -> None:
    shown = CliRunner().invoke(app, ["eval", "run", "--help"], terminal_width=200)
    text = " ".join(shown.output.replace("│", " ").split())
    assert {"demo", "adversarial"} <= set(bundled_names())
    for name in [*bundled_names(), "policyqa", "policyqa-unfiltered"]:
        assert name in text, name

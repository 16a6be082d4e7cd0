"""Real small evaluation runs on the demo knowledge base: files, report, CLI gate, comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assist.models import load_model
from eval.compare import compare, load_results
from eval.datasets import Dataset, load_demo
from eval.report import render_report
from eval.runner import RunResult, load_details, run_eval, write_run
from kb.store import KnowledgeStore
from kbassist_cli import app
from tests.support.chat_server import ChatServer

SAMPLE = 40


@pytest.fixture(scope="module")
def demo_run(demo_store: KnowledgeStore, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    data = load_demo().sample(SAMPLE)
    result = run_eval(data, demo_store, baseline=True, workdir=tmp_path_factory.mktemp("baseline"))
    out = tmp_path_factory.mktemp("run")
    write_run(result, out)
    return result, out


def test_run_writes_results_details_and_a_self_contained_report(demo_run: tuple[RunResult, Path]) -> None:
    _, out = demo_run
    results = json.loads((out / "results.json").read_text())
    kb = results["systems"]["kbassist"]
    shipped = load_model("answerability").info["thresholds"]
    assert results["threshold"] == shipped["answer"] and results["run"]["settings"]["related_threshold"] == shipped["related"]
    for metric in ("hit@1", "hit@10", "mrr@10", "ndcg@10", "f1", "citation_precision", "refusal_recall",
                   "deflection", "false_deflection", "latency_p99_ms"):
        assert metric in kb["overall"]
    assert kb["overall"]["hit@1"]["value"] <= kb["overall"]["hit@5"]["value"] <= kb["overall"]["hit@10"]["value"]
    lo, hi = kb["overall"]["hit@5"]["ci"]
    assert lo <= kb["overall"]["hit@5"]["value"] <= hi
    assert {"category", "role", "market"} <= set(kb["breakdowns"])
    assert len(kb["threshold_curve"]) == 101
    at_zero = kb["threshold_curve"][0]
    assert at_zero["threshold"] == 0.0 and at_zero["deflection"] >= kb["overall"]["deflection"]["value"]
    assert kb["reliability"] and sum(row["n"] for row in kb["reliability"]) <= SAMPLE

    details = load_details(out)
    assert len(details) == 2 * SAMPLE  # kbassist and the baseline
    assert {d["system"] for d in details} == {"kbassist", "langchain_baseline"}
    baseline = results["systems"]["langchain_baseline"]["overall"]
    assert baseline["refusal_recall"]["value"] == 0.0, "the baseline never refuses"

    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 4
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_customers_are_only_ever_shown_customer_documents(
    demo_run: tuple[RunResult, Path], demo_store: KnowledgeStore
) -> None:
    result, _ = demo_run
    audience = {d.doc_id: d.audience for d in demo_store.documents()}
    customer = [r for r in result.records["kbassist"] if r.role == "customer"]
    assert any(r.must_refuse for r in customer), "the sample holds questions only agent documents answer"
    for r in customer:
        shown = {p["doc_id"] for p in [*r.ranked, *r.cited]}
        assert {audience[d] for d in shown} <= {"customer"}, r.id


def test_llm_answers_are_judged_and_costed(demo_store: KnowledgeStore, tmp_path: Path) -> None:
    with ChatServer() as server:
        settings = demo_store.settings.model_copy(
            update={
                "llm_base_url": server.url,
                "llm_usd_per_1k_prompt_tokens": 0.15,
                "llm_usd_per_1k_completion_tokens": 0.6,
            }
        )
        questions = [q for q in load_demo().questions if not q.must_refuse and not q.conversation][:6]
        result = run_eval(Dataset("demo", questions), demo_store, settings)
        judged = [b for b in server.requests if b["messages"][0]["content"].startswith("You judge")]
    records = result.records["kbassist"]
    answered = [r for r in records if r.answered0 and r.answer]
    assert answered and len(judged) == len(answered)
    # The test model quotes passage 1 and adds one claim of its own: one sentence in two is supported.
    for r in answered:
        assert r.judged_groundedness is not None and r.judged_groundedness < 1.0
    results = result.results()
    overall = results["systems"]["kbassist"]["overall"]
    assert 0 < overall["groundedness_llm"]["value"] < 1
    assert results["run"]["judge"] == {"model": settings.llm_model, "judged": len(answered), "unreadable": 0}
    llm = results["systems"]["kbassist"]["llm"]
    assert llm["prompt_tokens"] > 100 and llm["completion_tokens"] > 5
    expected = llm["prompt_tokens"] / 1000 * 0.15 + llm["completion_tokens"] / 1000 * 0.6
    assert llm["usd_per_answer"] == pytest.approx(expected, abs=1e-5)
    page = render_report(results, result.records)
    assert "<h2>Language model</h2>" in page and f"{llm['usd_per_answer']:.5f}" in page
    assert f"judged by {settings.llm_model} on {len(answered)} answers" in page


def test_compare_flags_a_real_regression(demo_run: tuple[RunResult, Path], tmp_path: Path) -> None:
    result, out = demo_run
    strict = result.results(threshold=0.95)  # nearly everything refused: answers and deflection collapse
    (tmp_path / "results.json").write_text(json.dumps(strict))
    deltas = {d.metric: d for d in compare(load_results(out), load_results(tmp_path))}
    assert deltas["deflection"].regression
    assert deltas["f1"].regression
    assert not any(d.regression for d in compare(load_results(out), load_results(out)))

    runner = CliRunner()
    shown = runner.invoke(app, ["eval", "compare", str(out), str(tmp_path), "--fail-on-regression"])
    assert shown.exit_code == 1
    assert "REGRESSION" in shown.output


def test_cli_fail_under_is_a_ci_gate(demo_store: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(demo_store.settings.data_dir))
    runner = CliRunner()
    common = ["eval", "run", "--dataset", "demo", "--current-kb", "--sample", "15", "--no-baseline"]
    failing = runner.invoke(app, [*common, "--out", str(tmp_path / "a"), "--fail-under", "hit@5=1.01"])
    assert failing.exit_code == 1, failing.output
    assert "hit@5" in failing.output
    passing = runner.invoke(
        app, [*common, "--out", str(tmp_path / "b"), "--fail-under", "hit@5=0", "--fail-under", "false_deflection=1"]
    )
    assert passing.exit_code == 0, passing.output
    assert (tmp_path / "b" / "report.html").is_file()
    # Not a terminal: plain progress lines (what the app's owner workspace turns into a progress bar).
    assert "progress kbassist 15/15" in passing.output
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "c"), "--fail-under", "hit@5"])
    assert bad.exit_code == 2
    typo = runner.invoke(app, [*common, "--out", str(tmp_path / "d"), "--fail-under", "hit5=0.9"])
    assert typo.exit_code == 2 and "unknown metric" in typo.output
    assert not (tmp_path / "d").exists(), "a misspelt gate stops the run before it starts"


def test_cli_help_explains_gates_defaults_and_sources() -> None:
    def help_text(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.replace("│", " ").split())

    run = help_text("eval", "run")
    assert "a ceiling for lower-is-better ones" in run and "false_deflection=0.27 fails above 0.27" in run
    assert "DATA_DIR/eval-runs" in run and "--no-baseline" in run
    assert "regressed beyond run A's 95% CI" in help_text("eval", "compare")
    gaps = help_text("gaps")
    assert "DATA_DIR/eval-runs" in gaps and "KBASSIST_STATE_URL" in gaps and "--no-live" in gaps


def test_runs_without_out_go_where_gaps_and_the_app_look(tmp_path: Path) -> None:
    from eval.cli import default_run_dir
    from kb.settings import Settings

    folder = default_run_dir(Settings(data_dir=tmp_path), "my-set.jsonl")
    assert folder.parent == tmp_path / "eval-runs" and folder.name.endswith("-my-set")

"""Metric functions against hand-computed values; datasets, gates and comparison on small inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from eval.compare import Gate, compare
from eval.datasets import POLICYQA_DIR, DatasetError, EvalQuestion, load_dataset, load_demo, load_policyqa, read_jsonl
from eval.judge import parse_verdict
from eval.metrics import (
    MRR,
    NDCG,
    CitationPrecision,
    CitationRecall,
    Deflection,
    ExactMatch,
    FalseDeflection,
    Groundedness,
    HitAtK,
    JudgedGroundedness,
    Passage,
    RefusalPrecision,
    RefusalRecall,
    Sample,
    SpanContainment,
    TokenF1,
    bootstrap_ci,
    groundedness,
    squad_normalise,
    summarise,
    threshold_curve,
    token_f1,
)

EVIDENCE = "You can return an item within 30 days of delivery."
OTHER = Passage("fees", "Late fees are 60 SEK.")
GOLD = Passage("refunds", "Refunds\n\n" + EVIDENCE + " Keep the receipt.")


def sample(**overrides) -> Sample:
    base = dict(
        id="q1",
        role="customer",
        category="refunds",
        market="SE",
        must_refuse=False,
        gold_doc="refunds",
        evidence=EVIDENCE,
        answers=("30 days",),
        confidence=0.7,
        answered0=True,
        answer="You can return an item within 30 days of delivery. [1]",
        ranked=(OTHER, GOLD, OTHER),
        cited=(GOLD, OTHER),
        latency_ms=10.0,
        deflection_scope=True,
        threshold=0.5,
    )
    return Sample(**{**base, **overrides})


def test_squad_normalisation_and_token_f1_by_hand() -> None:
    assert squad_normalise("The  Cat, sat!") == "cat sat"
    # pred {cat, sat} vs gold {cat, sat, on, mat}: P = 1, R = 0.5, F1 = 2/3
    assert token_f1("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert ExactMatch().score(sample(answer="30 days.")) == 1.0
    assert ExactMatch().score(sample()) == 0.0


def test_answer_metrics_on_one_sample() -> None:
    s = sample()
    # answer tokens: you can return item within 30 days of delivery (9), gold: 30 days (2) -> P 2/9, R 1
    assert TokenF1().score(s) == pytest.approx(2 * (2 / 9) / (2 / 9 + 1))
    assert SpanContainment().score(s) == 1.0
    refused = sample(confidence=0.2)
    assert TokenF1().score(refused) == 0.0, "an answerable question refused scores 0"
    assert SpanContainment().score(refused) == 0.0
    assert TokenF1().score(sample(must_refuse=True)) is None


def test_retrieval_metrics_by_hand() -> None:
    s = sample()  # relevant passage at rank 2 of 3
    assert HitAtK(1).score(s) == 0.0
    assert HitAtK(3).score(s) == 1.0
    assert MRR().score(s) == 0.5
    assert NDCG().score(s) == pytest.approx(1 / math.log2(3))
    assert HitAtK(5).score(sample(must_refuse=True)) is None


def test_span_only_counts_inside_the_gold_document() -> None:
    elsewhere = Passage("pay-in-30", "Pay within 30 days of shipping.")
    s = sample(evidence="not in any passage", ranked=(elsewhere,))
    assert HitAtK(1).score(s) == 0.0
    assert HitAtK(1).score(sample(evidence="not in any passage", ranked=(Passage("refunds", "within 30 DAYS"),))) == 1.0


def test_citation_metrics_by_hand() -> None:
    s = sample()
    assert CitationPrecision().score(s) == 0.5
    assert CitationRecall().score(s) == 1.0
    assert CitationRecall().score(sample(cited=(OTHER,))) == 0.0
    assert CitationPrecision().score(sample(confidence=0.2)) is None, "refused answers have no citations to judge"


def test_groundedness_counts_supported_sentences() -> None:
    answer = "You can return an item within 30 days. The moon is made of green cheese."
    assert groundedness(answer, [EVIDENCE]) == 0.5
    assert Groundedness().score(sample()) == 1.0
    assert groundedness("", [EVIDENCE]) == 0.0


def test_refusal_and_deflection_definitions() -> None:
    must_refuse_answered = sample(must_refuse=True, evidence=None, answers=())
    must_refuse_refused = sample(must_refuse=True, evidence=None, answers=(), confidence=0.1)
    good = sample()
    wrong = sample(answer="Late fees are 60 SEK. [1]", cited=(OTHER,))
    refused_answerable = sample(confidence=0.1)
    samples = [must_refuse_answered, must_refuse_refused, good, wrong, refused_answerable]
    # refused: must_refuse_refused (right) and refused_answerable (wrong) -> precision 1/2; recall 1/2
    assert [RefusalPrecision().score(s) for s in samples] == [None, 1.0, None, None, 0.0]
    assert [RefusalRecall().score(s) for s in samples] == [0.0, 1.0, None, None, None]
    assert [Deflection().score(s) for s in samples] == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert [FalseDeflection().score(s) for s in samples] == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert Deflection().score(sample(deflection_scope=False)) is None


def test_threshold_curve_is_derived_from_confidence() -> None:
    samples = [sample(confidence=c, threshold=0.0) for c in (0.2, 0.4, 0.6, 0.8)]
    curve = {row["threshold"]: row for row in threshold_curve(samples)}
    assert len(curve) == 101
    assert curve[0.0]["deflection"] == 1.0
    assert curve[0.5]["deflection"] == 0.5
    assert curve[0.81]["deflection"] == 0.0
    assert summarise([s.at(0.5) for s in samples])["deflection"]["value"] == curve[0.5]["deflection"]


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = np.array([0.0, 1.0] * 50 + [np.nan])
    a = bootstrap_ci(values, np.mean, seed=3)
    assert a == bootstrap_ci(values, np.mean, seed=3)
    assert a is not None and a[0] < 0.5 < a[1]
    assert bootstrap_ci(np.array([1.0]), np.mean) is None


def test_gate_parsing_and_direction() -> None:
    overall = {"hit@5": {"value": 0.9}, "false_deflection": {"value": 0.2}, "latency_p95_ms": {"value": 30.0}}
    results = {"systems": {"kbassist": {"overall": overall}}}
    assert Gate.parse("hit@5=0.85").check(results) is None
    assert Gate.parse("hit@5=0.9").check(results) is None, "the limit itself passes"
    assert "below its floor" in Gate.parse("hit@5=0.95").check(results)
    # Lower-is-better metrics: the value is a ceiling (scripts/test gates false_deflection=0.27).
    assert Gate.parse("false_deflection=0.27").upper_bound and not Gate.parse("hit@5=0.9").upper_bound
    assert Gate.parse("false_deflection=0.27").check(results) is None
    assert Gate.parse("false_deflection=0.2").check(results) is None
    assert "above its ceiling" in Gate.parse("false_deflection=0.15").check(results)
    assert Gate.parse("latency_p95_ms=50").check(results) is None
    assert "above its ceiling" in Gate.parse("latency_p95_ms=25").check(results)
    assert "not measured" in Gate.parse("f1=0.1").check(
        {"systems": {"kbassist": {"overall": {"f1": {"value": None}}}}}
    )
    for bad in ("hit@5", "=0.5", "hit@5=high", "nope=1"):
        with pytest.raises(ValueError):
            Gate.parse(bad)


def test_compare_flags_only_changes_beyond_the_interval() -> None:
    a = {"systems": {"kbassist": {"overall": {"f1": {"value": 0.5, "ci": [0.45, 0.55]}, "latency_p95_ms": {"value": 40, "ci": [35, 45]}}}}}
    b = {"systems": {"kbassist": {"overall": {"f1": {"value": 0.47, "ci": None}, "latency_p95_ms": {"value": 60, "ci": None}}}}}
    deltas = {d.metric: d for d in compare(a, b)}
    assert not deltas["f1"].regression, "inside A's interval: noise"
    assert not deltas["latency_p95_ms"].regression, "latency is not judged unless asked: it follows the load"
    assert {d.metric: d for d in compare(a, b, latency=True)}["latency_p95_ms"].regression, "lower is better"
    b["systems"]["kbassist"]["overall"]["f1"]["value"] = 0.40
    assert {d.metric: d for d in compare(a, b)}["f1"].regression


def test_demo_set_has_what_the_issue_asks_for() -> None:
    demo = load_demo()
    qs = demo.questions
    assert len(qs) >= 150
    assert sum(not q.answerable and not q.restricted for q in qs) >= 30
    assert sum(q.restricted and q.role == "customer" and q.must_refuse for q in qs) >= 20
    assert any(q.conversation for q in qs)
    assert {"SE", "DE"} <= {q.market for q in qs}
    assert demo.docs is not None and demo.docs.is_dir()
    assert demo.sample(30).questions == demo.sample(30).questions
    assert len(demo.sample(30).questions) == 30


@pytest.mark.skipif(not POLICYQA_DIR.is_dir(), reason="PolicyQA is not present")
def test_policyqa_loader_maps_to_internal_questions_filtered_by_document() -> None:
    data = load_policyqa()
    assert len(data.questions) == 3809
    q = data.questions[0]
    assert q.role == "internal" and q.filters == {"doc_id": q.doc} and q.answers and q.evidence
    assert not q.must_refuse
    unfiltered = load_dataset("policyqa-unfiltered")
    assert unfiltered.questions[0].filters == {} and unfiltered.questions[0].doc == q.doc
    assert load_dataset(str(POLICYQA_DIR)).questions == data.questions


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "ok?"}) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"set\.jsonl:2"):
        read_jsonl(path)
    path.write_text(json.dumps({"id": "a", "question": "ok?", "role": "boss"}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="role"):
        read_jsonl(path)
    restricted = EvalQuestion.from_record({"question": "limit?", "role": "agent", "restricted": True, "market": "ALL"})
    assert not restricted.must_refuse and restricted.market is None


def test_judge_verdicts_are_read_strictly() -> None:
    assert parse_verdict('{"supported": [1, 3]}', 3) == {1, 3}
    assert parse_verdict('Sure. {"supported": [2, 2]} done', 3) == {2}
    assert parse_verdict('{"supported": []}', 3) == set(), "nothing supported is a verdict"
    for unreadable in ('{"supported": [2, 7]}', '{"supported": [0]}', '{"supported": [true]}', '{"supported": ["1"]}'):
        assert parse_verdict(unreadable, 3) is None, f"{unreadable} is not partly read"
    assert parse_verdict('{"supported": [1]} and {"supported": [2]}', 3) is None
    assert parse_verdict("NO_ANSWER", 3) is None and parse_verdict("", 3) is None
    assert parse_verdict('{"verdict": [1]}', 3) is None and parse_verdict('{"supported": null}', 3) is None
    assert parse_verdict("sentence 1 is supported", 3) is None
    assert parse_verdict('{"supported": "all"}', 3) is None
    assert parse_verdict("{not json}", 3) is None
    judged = sample(judged_groundedness=0.5)
    assert JudgedGroundedness().score(judged) == 0.5
    assert JudgedGroundedness().score(sample()) is None, "no judge ran"
    assert JudgedGroundedness().score(sample(judged_groundedness=0.5, confidence=0.1)) is None, "refused"

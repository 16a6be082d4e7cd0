"""The answer models' fitting: regression, folds, AUC, reliability and thresholds on synthetic data."""

from __future__ import annotations

import numpy as np

from assist.answerability import FEATURES, Gate
from assist.models import LogisticModel, load_model
from eval.datasets import EvalQuestion
from eval.fitting import (
    answer_right,
    as_model,
    auc,
    choose_thresholds,
    cross_validated,
    fit_logistic,
    reliability,
    states_needed,
)


def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(0.5 + 2.0 * x[:, 0] - 1.0 * x[:, 1])))
    return x, (rng.random(n) < p).astype(float)


def test_the_regression_recovers_known_coefficients() -> None:
    x, y = _data()
    w, _mean, scale = fit_logistic(x, y, l2=0.0)
    raw = w[1:] / scale  # back to the unstandardised scale
    assert abs(raw[0] - 2.0) < 0.3 and abs(raw[1] + 1.0) < 0.25 and abs(raw[2]) < 0.2


def test_cross_validated_predictions_are_out_of_fold_and_calibrated() -> None:
    x, y = _data()
    groups = [f"g{i // 4}" for i in range(len(y))]
    predicted = cross_validated(x, y, groups, np.ones(len(y)))
    assert 0.8 < (auc(y, predicted) or 0) < 0.95
    for row in reliability(y, predicted):
        if row["n"] >= 100:
            assert abs(row["predicted"] - row["observed"]) < 0.1


def test_auc_edges() -> None:
    assert auc(np.array([1.0, 0.0]), np.array([0.9, 0.1])) == 1.0
    assert auc(np.array([1.0, 0.0]), np.array([0.1, 0.9])) == 0.0
    assert auc(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert auc(np.array([1.0, 1.0]), np.array([0.3, 0.4])) is None


def test_the_answer_threshold_answers_only_where_answers_are_more_often_useful_than_not() -> None:
    # At 0.9 answers are useful 9 times in 10; at 0.4, 4 times in 10: not worth a wrong answer,
    # but worth showing as related articles; at 0.1, 1 time in 10: refused.
    p = np.r_[np.full(100, 0.9), np.full(100, 0.4), np.full(100, 0.1)]
    y = np.r_[np.ones(90), np.zeros(10), np.ones(40), np.zeros(60), np.ones(10), np.zeros(90)]
    chosen = choose_thresholds(y, p, np.ones(len(y)))
    assert chosen["answer"] == 0.9
    assert chosen["related"] == 0.4


def test_labels_follow_the_gold() -> None:
    q = EvalQuestion("q", "late fee?", must_include=[("60 SEK",), ("10 days",)], must_not_include=["2.50 EUR"])
    assert answer_right("The fee is 60 SEK, 10 days after the due date.", q)
    assert not answer_right("The fee is 60 SEK or 2.50 EUR, 10 days after the due date.", q)
    assert states_needed("60 SEK", q) and not states_needed("Pay in the app.", q)
    refuse = EvalQuestion("r", "crypto?", answerable=False)
    assert not answer_right("anything", refuse)
    span = EvalQuestion("s", "how long?", answers=["30 days"], evidence="You can return it within 30 days.")
    assert states_needed("You can return it within 30 days.", span)


def test_the_gate_answers_relates_or_refuses_by_its_two_thresholds() -> None:
    weights = (0.0, 4.0) + (0.0,) * (len(FEATURES) - 1)
    model = LogisticModel(FEATURES, weights, (0.5,) + (0.0,) * (len(FEATURES) - 1), (1.0,) * len(FEATURES),
                          {"thresholds": {"answer": 0.7, "related": 0.4}})
    gate = Gate(model)
    values = dict.fromkeys(FEATURES, 0.0)
    assert gate.decide({**values, "best_segment": 0.9}, True).verdict == "answer"
    assert gate.decide({**values, "best_segment": 0.5}, True).verdict == "related"
    assert gate.decide({**values, "best_segment": 0.1}, True).verdict == "refuse"
    assert gate.decide({**values, "best_segment": 0.9}, False).verdict == "refuse", "nothing chosen, nothing to say"
    assert Gate(model, answer_at=0.95).decide({**values, "best_segment": 0.9}, True).verdict == "related"


def test_the_shipped_models_load_and_say_how_they_were_fitted() -> None:
    for name in ("segments", "answerability"):
        model = load_model(name)
        assert len(model.weights) == len(model.features) + 1
    info = load_model("answerability").info
    assert 0.0 < info["thresholds"]["answer"] <= 1.0 and info["cv_auc"] > 0.7
    assert as_model(("a",), (np.zeros(2), np.zeros(1), np.ones(1)), {}).probability_of({"a": 3.0}) == 0.5

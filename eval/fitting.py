"""Fitting the answer layer's two small models on question sets with gold labels.

1. **Sentence selection** (``segments``): for every candidate segment of the top passages,
   does the unit it would quote state something the question needs (a ``must_include`` fact,
   a gold answer span, or a piece of the gold evidence)? Fitted over all candidates.
2. **Answerability** (``answerability``): with that selection in place, does the knowledge
   base answer the question for the asker *and* does the answer about to be given state what
   the question needs (:func:`states_needed`)? Must-refuse questions are negatives by
   definition. Predicting full correctness instead (every fact, no wrong market) refused too
   many answerable questions for the sake of partly right answers; predicting mere
   answerability let through answers that quote the wrong passage. Thresholds are chosen from
   cross-validated predictions, never from the fitted model's own (optimistic) ones.

Both are L2-regularised logistic regressions (Newton's method, a few lines of NumPy) on
standardised features; every question set weighs the same in total, so a large public set does
not drown the product's own. Cross-validation folds split whole conversations, so a follow-up
never lands in another fold than the turn it follows. Everything the fit saw and scored goes
into the model file's ``info``: data, cross-validated AUC, the reliability table, thresholds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from assist.access import Filters
from assist.answerability import FEATURES as ANSWER_FEATURES
from assist.compose import compose
from assist.models import LogisticModel
from assist.selection import SEGMENT_FEATURES, Selector
from assist.service import Assistant
from eval.datasets import Dataset, EvalQuestion
from eval.metrics import contains_span, facts_correct, has_fact, norm, reliability

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# A wrong answer costs this many refusals: the threshold maximises useful answers minus this
# many times the others, on cross-validated predictions (1: answer when more likely useful than not).
WRONG_ANSWER_COST = 1.0
# The "related articles" band starts where an answer is still right this often.
RELATED_PRECISION = 0.3


# -- the regression -------------------------------------------------------------------------------


def fit_logistic(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, l2: float = 1.0, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coefficients with the intercept first, feature means, feature scales)."""
    weights = np.ones(len(y)) if weights is None else weights
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = l2 * np.diag(np.r_[0.0, np.ones(z.shape[1] - 1)])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -40, 40)))
        gradient = z.T @ (weights * (p - y)) + penalty @ w
        hessian = (z * (weights * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w, mean, scale


def as_model(features: Sequence[str], fitted: tuple[np.ndarray, np.ndarray, np.ndarray], info: dict) -> LogisticModel:
    w, mean, scale = fitted
    return LogisticModel(tuple(features), tuple(map(float, w)), tuple(map(float, mean)), tuple(map(float, scale)), info)


def cross_validated(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], weights: np.ndarray, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold predicted probabilities, folds drawn over whole groups (conversations)."""
    names = sorted(set(groups))
    fold_of = dict(zip(names, np.random.default_rng(seed).permutation(len(names)) % folds, strict=True))
    fold = np.array([fold_of[g] for g in groups])
    out = np.zeros(len(y))
    for k in range(folds):
        test = fold == k
        if not test.any() or test.all():
            continue
        model = as_model([str(i) for i in range(x.shape[1])], fit_logistic(x[~test], y[~test], weights[~test]), {})
        out[test] = model.probability(x[test])
    return out


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    positives, negatives = p[y == 1], p[y == 0]
    if not len(positives) or not len(negatives):
        return None
    order = np.argsort(np.r_[positives, negatives], kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    values = np.r_[positives, negatives]
    for value in np.unique(values):  # average ranks of ties
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives)))


# -- labels ---------------------------------------------------------------------------------------


def states_needed(text: str, q: EvalQuestion) -> bool:
    """The text states something the question needs: a required fact, a gold span, or gold evidence."""
    if q.must_include:
        return any(has_fact(text, item) for item in q.must_include)
    if q.answers and contains_span(text, q.answers):
        return True
    return bool(q.evidence) and len(norm(text)) >= 12 and norm(text) in norm(q.evidence or "")


def answer_right(text: str, q: EvalQuestion) -> bool:
    """The answer is one a person could act on, by the gold at hand."""
    if q.must_refuse or not text:
        return False
    if q.must_include:
        return facts_correct(text, q.must_include, q.must_not_include)
    return states_needed(text, q)


# -- collecting -----------------------------------------------------------------------------------


@dataclass
class Collected:
    """Rows for one model: features, labels, groups (for folds) and weights (per question set)."""

    features: tuple[str, ...]
    rows: list[list[float]] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    right: list[float] = field(default_factory=list)  # answers only: the answer was fully right
    refuse: list[float] = field(default_factory=list)  # answers only: the question had to be refused

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.array(self.rows, dtype=np.float64).reshape(-1, len(self.features))
        y = np.array(self.labels, dtype=np.float64)
        counts = {name: self.sets.count(name) for name in set(self.sets)}
        per_set = len(self.sets) / max(len(counts), 1)
        w = np.array([per_set / counts[name] for name in self.sets], dtype=np.float64)
        return x, y, w


def _group(q: EvalQuestion, dataset: str) -> str:
    """Questions of one conversation share a group (for folds): the conversation's first user turn."""
    first = next((t["content"] for t in q.conversation if t.get("role") == "user"), q.question)
    return f"{dataset}:{first}"


def _filters(q: EvalQuestion) -> Filters:
    return Filters(market=q.market, language=q.filters.get("language"), product=q.filters.get("product"),
                   doc_id=q.filters.get("doc_id"))


def collect(
    assistant: Assistant, dataset: Dataset, segments: Collected, answers: Collected | None,
    progress: Progress | None = None,
) -> None:
    """Run every question of ``dataset`` up to the answer and add its rows to ``segments`` / ``answers``."""
    for i, q in enumerate(dataset.questions):
        plan, _ = assistant.prepare(q.question, q.role, q.market, q.conversation, _filters(q))
        group = _group(q, dataset.name)
        if not q.must_refuse:
            for candidate in plan.selection.candidates:
                unit = Selector.unit(candidate, plan.passages, plan.market)
                segments.rows.append([candidate.features[name] for name in segments.features])
                segments.labels.append(float(states_needed("\n".join(unit.texts), q)))
                segments.groups.append(group)
                segments.sets.append(dataset.name)
        if answers is not None:
            text = compose(plan.units).text if plan.units else ""
            answers.rows.append([plan.decision.features.get(name, 0.0) for name in answers.features])
            answers.labels.append(float(not q.must_refuse and states_needed(text, q)))
            answers.right.append(float(answer_right(text, q)))
            answers.refuse.append(float(q.must_refuse))
            answers.groups.append(group)
            answers.sets.append(dataset.name)
        if progress:
            progress(dataset.name, i + 1, len(dataset.questions))


# -- fitting --------------------------------------------------------------------------------------


def fit_segments(data: Collected, l2: float = 5.0) -> LogisticModel:
    x, y, w = data.arrays()
    predicted = cross_validated(x, y, data.groups, w)
    info = {
        "what": "P(the unit a segment brings states something the question needs)",
        "candidates": len(y),
        "positive_share": round(float(y.mean()), 4),
        "sets": {name: data.sets.count(name) for name in sorted(set(data.sets))},
        "cv_auc": _round(auc(y, predicted)),
        "l2": l2,
    }
    return as_model(data.features, fit_logistic(x, y, w, l2), info)


def choose_thresholds(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """The answer threshold that maximises right minus WRONG_ANSWER_COST x wrong answers, and
    the lowest threshold at which answers are still right RELATED_PRECISION of the time."""
    best_t, best_gain = 1.0, 0.0
    candidates = np.unique(np.round(p, 3))
    for t in candidates:
        answered = p >= t
        gain = float((w * answered * (y - WRONG_ANSWER_COST * (1 - y))).sum())
        if gain > best_gain:
            best_t, best_gain = float(t), gain
    related = best_t
    total = float(w.sum())
    for t in sorted(candidates[candidates < best_t], reverse=True):
        band = (p >= t) & (p < best_t)
        weight = float((w * band).sum())
        # A band of a handful of questions says nothing yet: judge it once it holds 2% of them.
        if weight >= 0.02 * total and float((w * band * y).sum()) / weight < RELATED_PRECISION:
            break
        related = float(t)
    return {"answer": round(best_t, 3), "related": round(related, 3)}


def fit_answerability(data: Collected, l2: float = 5.0) -> LogisticModel:
    x, y, w = data.arrays()
    predicted = cross_validated(x, y, data.groups, w)
    thresholds = choose_thresholds(y, predicted, w)
    right, refuse = np.array(data.right), np.array(data.refuse)
    answered = predicted >= thresholds["answer"]
    per_set = {}
    for name in sorted(set(data.sets)):
        mask = np.array([s == name for s in data.sets])
        answerable = mask & (refuse == 0)
        per_set[name] = {
            "questions": int(mask.sum()),
            "right_share": round(float(y[mask].mean()), 4),
            "cv_auc": _round(auc(y[mask], predicted[mask])),
            "cv_at_threshold": {
                "answer_correct": _share(answered & (right == 1), answerable),
                "false_refusal": _share(~answered, answerable),
                "refusal_recall": _share(~answered, mask & (refuse == 1)),
                "wrong_answers": _share(answered & ((refuse == 1) | (right == 0)), mask),
            },
        }
    info = {
        "what": "P(the knowledge base answers this for the asker and the answer about to be given states what it needs)",
        "questions": len(y),
        "right_share": round(float(y.mean()), 4),
        "sets": per_set,
        "cv_auc": _round(auc(y, predicted)),
        "thresholds": thresholds,
        "wrong_answer_cost": WRONG_ANSWER_COST,
        "related_precision": RELATED_PRECISION,
        "reliability_cv": reliability(y, predicted),
        "curve_cv": answer_curve(y, predicted, w),
        "l2": l2,
    }
    return as_model(data.features, fit_logistic(x, y, w, l2), info)


def answer_curve(y: np.ndarray, p: np.ndarray, w: np.ndarray, step: float = 0.05) -> list[dict[str, float]]:
    """Share of questions answered, answered right and answered wrong, per threshold (weighted)."""
    total = float(w.sum()) or 1.0
    rows = []
    for t in np.arange(0.0, 1.0 + 1e-9, step):
        answered = p >= t
        rows.append(
            {
                "threshold": round(float(t), 2),
                "answered": round(float((w * answered).sum()) / total, 4),
                "right": round(float((w * answered * y).sum()) / total, 4),
                "wrong": round(float((w * answered * (1 - y)).sum()) / total, 4),
            }
        )
    return rows


def fit_models(
    runs: Sequence[tuple[Dataset, Assistant]], progress: Progress | None = None
) -> tuple[LogisticModel, LogisticModel]:
    """Fit the selection model, then (with it in place) the answerability model, on every set."""
    segments = Collected(SEGMENT_FEATURES)
    for dataset, assistant in runs:
        assistant.selector.model = LogisticModel.untrained(SEGMENT_FEATURES)
        collect(assistant, dataset, segments, None, progress)
    segment_model = fit_segments(segments)
    answers = Collected(ANSWER_FEATURES)
    for dataset, assistant in runs:
        assistant.selector.model = segment_model
        collect(assistant, dataset, Collected(SEGMENT_FEATURES), answers, progress)
    return segment_model, fit_answerability(answers)


def _share(hits: np.ndarray, within: np.ndarray) -> float | None:
    return round(float(hits[within].mean()), 4) if within.any() else None


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)

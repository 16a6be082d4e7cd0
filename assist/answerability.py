"""Whether to answer: one calibrated gate instead of thresholds in several places.

No single signal separates questions the knowledge base answers from those it does not: the
best passage's similarity, term coverage and the best sentence's similarity each overlap badly
on real phrasing (a long story scores low on everything, a near-miss topic scores high on
everything). So the gate is a logistic model over several signals of retrieval, of the chosen
answer and of the message itself (:data:`FEATURES`), fitted by ``eval.fitting`` with
cross-validation on the evaluation sets, its coefficients and thresholds committed in
``assist/models/answerability.json``. Its output is a probability that the answer about to be
given is right, which is what :attr:`Answer.confidence` reports.

Three outcomes, by two thresholds from the same file (a setting can override the first):
- ``answer`` at or above ``answer_at``;
- ``related`` between ``related_at`` and ``answer_at``: not confident enough to state an
  answer, so the asker is shown the articles that look related and offered a person;
- ``refuse`` below ``related_at``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from assist.models import LogisticModel, load_model
from assist.selection import Selection
from assist.understanding import Understood

Verdict = Literal["answer", "related", "refuse"]

FEATURES = (
    "best_segment",
    "segment_margin",
    "best_cosine",
    "dense_top",
    "coverage_top",
    "answer_coverage",
    "agreement",
    "unknown_share",
    "known_terms",
    "follow_up",
)
# Left out on purpose: raw BM25 scores, chunk counts per document and the like, whose scale
# follows the size and layout of one knowledge base, so a gate fitted on one would not carry.


class ScoredPassage(Protocol):
    doc_id: str
    dense: float
    lexical: float
    coverage: float


@dataclass
class Decision:
    verdict: Verdict
    probability: float
    features: dict[str, float] = field(default_factory=dict)


def features(
    understood: Understood,
    passages: Sequence[ScoredPassage],
    selection: Selection,
    answer_coverage: float,
) -> dict[str, float]:
    """The gate's inputs for one message (all bounded, none tied to one knowledge base's scale)."""
    top = list(passages[:5])
    probabilities = sorted((c.probability for c in selection.candidates), reverse=True)
    cosines = [c.features["cosine"] for c in selection.candidates]
    total_terms = understood.known_terms + understood.unknown_terms
    agreement = 0.0
    if top:
        by_dense = max(top, key=lambda p: p.dense)
        by_lexical = max(top, key=lambda p: p.lexical)
        agreement = float(by_dense.doc_id == by_lexical.doc_id)
    return {
        "best_segment": probabilities[0] if probabilities else 0.0,
        "segment_margin": probabilities[0] - probabilities[1] if len(probabilities) > 1 else (probabilities or [0.0])[0],
        "best_cosine": max(cosines, default=0.0),
        "dense_top": top[0].dense if top else 0.0,
        "coverage_top": top[0].coverage if top else 0.0,
        "answer_coverage": answer_coverage,
        "agreement": agreement,
        "unknown_share": understood.unknown_terms / total_terms if total_terms else 1.0,
        "known_terms": math.log1p(understood.known_terms),
        "follow_up": float(understood.follow_up),
    }


class Gate:
    """Applies the fitted model and its thresholds."""

    def __init__(self, model: LogisticModel | None = None, answer_at: float | None = None) -> None:
        self.model = model or load_model("answerability")
        thresholds = self.model.info.get("thresholds", {})
        self.answer_at = float(answer_at if answer_at is not None else thresholds.get("answer", 0.5))
        self.related_at = min(float(thresholds.get("related", self.answer_at)), self.answer_at)

    def decide(self, values: dict[str, float], has_answer: bool) -> Decision:
        probability = self.model.probability_of(values) if has_answer else 0.0
        if has_answer and probability >= self.answer_at:
            verdict: Verdict = "answer"
        elif has_answer and probability >= self.related_at:
            verdict = "related"
        else:
            verdict = "refuse"
        return Decision(verdict, probability, values)

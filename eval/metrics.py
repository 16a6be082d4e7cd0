"""Evaluation metrics: small dataclasses, each with a pure per-question ``score`` (RAGAS style).

Why per question: every metric is the mean of per-question scores over the questions where it
is defined (``score`` returns ``None`` elsewhere). That one shape gives overall numbers,
breakdowns per category/role/market, seeded bootstrap confidence intervals and the
threshold curve from the same code, and makes each metric testable by hand.

Relevance follows the PolicyQA definition: a passage is relevant when it contains the gold
evidence, or a gold answer span, after whitespace/case normalisation. A span match counts only
inside the gold document when one is known, because short spans ("80", "30 days") occur in
unrelated passages too.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import pairwise
from typing import Protocol

import numpy as np

from ingest.clean import clean_text

_CITATION_MARK = re.compile(r"\s*\[\d{1,3}\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)
# Short function words ignored when judging whether a sentence is supported by a passage.
_STOP = frozenset(
    "a an the and or of to in on for at by with from is are was were be been it its this that these those "
    "you your we our they their he she i me my if then than as not no do does did can will may".split()
)
GROUNDED_SENTENCE = 0.6  # share of a sentence's content words found in one cited passage
GROUNDED_ANSWER = 0.5  # share of supported sentences for an answer to count as grounded
CORRECT_F1 = 0.5  # token F1 at or above this counts as a correct answer when no gold span is contained


# -- text normalisation -------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def norm(text: str) -> str:
    """Whitespace- and case-normalised text, for containment checks.

    Cached: the same few hundred passages are checked against every question at every threshold.
    """
    return " ".join(clean_text(text).lower().split())


def squad_normalise(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def strip_citations(text: str) -> str:
    return _CITATION_MARK.sub("", text)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between a prediction and one gold span."""
    pred, ref = squad_normalise(prediction).split(), squad_normalise(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, golds: Sequence[str]) -> float:
    return max((token_f1(prediction, g) for g in golds), default=0.0)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    p = squad_normalise(prediction)
    return float(any(p == squad_normalise(g) for g in golds))


def contains_span(text: str, golds: Sequence[str]) -> bool:
    t = norm(text)
    return any(norm(g) and norm(g) in t for g in golds)


@lru_cache(maxsize=1 << 20)
def is_relevant(text: str, doc_id: str, evidence: str | None, answers: tuple[str, ...], gold_doc: str | None) -> bool:
    """The passage holds the gold evidence, or a gold span inside the gold document (module docstring)."""
    t = norm(text)
    if evidence and norm(evidence) and norm(evidence) in t:
        return True
    if gold_doc and doc_id != gold_doc:
        return False
    return any(norm(a) and norm(a) in t for a in answers)


_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


@lru_cache(maxsize=65536)
def fact_norm(text: str) -> str:
    """Text reduced to its words and numbers, space-padded for whole-word containment.

    NFKC (so fullwidth digits and ligatures compare equal), lower case, citation markers gone,
    every character that is not a letter or digit a space: "2.50 EUR" and "2,50 eur" both hold
    the words "2 50 eur", and " 30 days " is not inside " 130 days ".
    """
    text = unicodedata.normalize("NFKC", strip_citations(text)).lower()
    return " " + " ".join(_NOT_ALNUM.sub(" ", text).split()) + " "


def has_fact(text: str, alternatives: Sequence[str]) -> bool:
    """Any one of the alternatives appears in ``text`` as whole words (see :func:`fact_norm`)."""
    haystack = fact_norm(text)
    return any(fact_norm(a).strip() and fact_norm(a) in haystack for a in alternatives)


def facts_correct(text: str, must_include: Sequence[Sequence[str]], must_not_include: Sequence[str]) -> bool:
    """Every required fact present (one alternative each) and no excluded string."""
    return all(has_fact(text, item) for item in must_include) and not any(
        has_fact(text, [banned]) for banned in must_not_include
    )


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def sentences(text: str) -> list[str]:
    parts = (s.strip(" -*\t") for s in _SENTENCE.split(strip_citations(text)))
    return [s for s in parts if content_words(s)]


def groundedness(answer: str, passages: Sequence[str]) -> float:
    """Share of answer sentences whose content words appear (>= 60 %) in one cited passage."""
    said = sentences(answer)
    if not said:
        return 0.0
    sources = [content_words(p) for p in passages]
    supported = 0
    for sentence in said:
        words = content_words(sentence)
        if any(len(words & src) / len(words) >= GROUNDED_SENTENCE for src in sources):
            supported += 1
    return supported / len(said)


# -- the per-question sample ------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    doc_id: str
    text: str


@dataclass(frozen=True)
class Sample:
    """What one question produced, at a given threshold, with its gold labels.

    ``answered0`` is whether the system answered with the refusal threshold at 0; ``answered``
    applies the threshold being evaluated (``at``). ``answer`` is ``None`` for a pipeline without
    a generator (the retrieval-only baseline).
    """

    id: str
    role: str
    category: str
    market: str
    must_refuse: bool
    gold_doc: str | None
    evidence: str | None
    answers: tuple[str, ...]
    confidence: float
    answered0: bool
    answer: str | None
    ranked: tuple[Passage, ...]
    cited: tuple[Passage, ...]
    latency_ms: float
    deflection_scope: bool = False  # counts towards deflection (self-service questions)
    threshold: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    judged_groundedness: float | None = None  # from an LLM judge, when one ran (eval/judge.py)
    must_include: tuple[tuple[str, ...], ...] = ()
    must_not_include: tuple[str, ...] = ()
    related_at: float | None = None  # from here up to ``threshold``: related articles instead of an answer

    @property
    def answered(self) -> bool:
        return self.answered0 and self.confidence >= self.threshold

    @property
    def related(self) -> bool:
        """Not answered, but shown the articles that looked related (and offered a person)."""
        return (
            self.related_at is not None
            and self.answered0
            and self.related_at <= self.confidence < self.threshold
        )

    @property
    def gold(self) -> bool:
        """The question has gold labels to judge an answer against."""
        return not self.must_refuse and bool(self.evidence or self.answers)

    def at(self, threshold: float) -> Sample:
        related_at = None if self.related_at is None else min(self.related_at, threshold)
        return replace(self, threshold=threshold, related_at=related_at)

    def relevant(self, passage: Passage) -> bool:
        return is_relevant(passage.text, passage.doc_id, self.evidence, self.answers, self.gold_doc)

    @property
    def grounded(self) -> bool:
        if self.answer is None:  # no generator: the retrieved context is all there is
            return True
        return groundedness(self.answer, [p.text for p in self.cited]) >= GROUNDED_ANSWER

    @property
    def correct(self) -> bool:
        """The answer is right: by its required facts when the question has them, else by span.

        With ``must_include`` gold, right means every required fact present and nothing
        excluded (:func:`facts_correct`); otherwise a gold span contained, or token F1 >= 0.5.
        Without a generator, the best a reader could do: a relevant passage among those retrieved.
        """
        if not self.gold:
            return False
        if self.answer is None:
            return any(self.relevant(p) for p in self.ranked)
        if self.must_include:
            return facts_correct(self.answer, self.must_include, self.must_not_include)
        text = strip_citations(self.answer)
        return contains_span(text, self.answers) or best_f1(text, self.answers) >= CORRECT_F1


class Metric(Protocol):
    name: str
    higher_is_better: bool

    def score(self, s: Sample) -> float | None: ...


# -- retrieval ------------------------------------------------------------------------------------


def first_relevant(s: Sample, k: int) -> int | None:
    return next((i for i, p in enumerate(s.ranked[:k]) if s.relevant(p)), None)


@dataclass(frozen=True)
class HitAtK:
    """A relevant passage among the first k retrieved."""

    k: int
    higher_is_better: bool = True

    @property
    def name(self) -> str:
        return f"hit@{self.k}"

    def score(self, s: Sample) -> float | None:
        if not s.gold:
            return None
        return float(first_relevant(s, self.k) is not None)


@dataclass(frozen=True)
class MRR:
    """Reciprocal rank of the first relevant passage within the first k (0 when none)."""

    k: int = 10
    name: str = "mrr@10"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold:
            return None
        rank = first_relevant(s, self.k)
        return 0.0 if rank is None else 1.0 / (rank + 1)


@dataclass(frozen=True)
class NDCG:
    """Binary-relevance nDCG@k; the ideal ranking puts the relevant passages retrieved first."""

    k: int = 10
    name: str = "ndcg@10"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold:
            return None
        rel = [float(s.relevant(p)) for p in s.ranked[: self.k]]
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
        ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(rel, reverse=True)))
        return dcg / ideal if ideal else 0.0


# -- answers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenF1:
    """SQuAD token F1 against the best gold span; a refusal of an answerable question scores 0."""

    name: str = "f1"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold or not s.answers or s.answer is None:
            return None
        return best_f1(strip_citations(s.answer), s.answers) if s.answered else 0.0


@dataclass(frozen=True)
class ExactMatch:
    name: str = "exact_match"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold or not s.answers or s.answer is None:
            return None
        return exact_match(strip_citations(s.answer), s.answers) if s.answered else 0.0


@dataclass(frozen=True)
class SpanContainment:
    """The answer contains a gold span (what an extractive answer can be held to)."""

    name: str = "span_containment"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold or not s.answers or s.answer is None:
            return None
        return float(s.answered and contains_span(strip_citations(s.answer), s.answers))


@dataclass(frozen=True)
class AnswerCorrect:
    """The answer holds every fact a person needs to act and nothing that makes it wrong.

    Defined for answerable questions with ``must_include`` gold; a refusal scores 0. Stricter
    than span containment, which counts a quoted table holding both markets' figures as right.
    """

    name: str = "answer_correct"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold or not s.must_include or s.answer is None:
            return None
        return float(s.answered and facts_correct(s.answer, s.must_include, s.must_not_include))


@dataclass(frozen=True)
class FalseRefusal:
    """Of the questions the knowledge base answers for the asker, the share refused."""

    name: str = "false_refusal"
    higher_is_better: bool = False

    def score(self, s: Sample) -> float | None:
        return None if s.must_refuse else float(not s.answered)


@dataclass(frozen=True)
class RelatedOffered:
    """Share of questions answered with "these articles look related" instead of an answer.

    Scored as refusals everywhere else (no deflection, and a false refusal when the knowledge
    base had the answer): this only says how often the middle band is used.
    """

    name: str = "related_offered"
    higher_is_better: bool = False

    def score(self, s: Sample) -> float | None:
        return None if s.related_at is None else float(s.related)


@dataclass(frozen=True)
class RelatedHit:
    """Of the related-articles replies to answerable questions, the share listing the gold document."""

    name: str = "related_hit"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.related or not s.gold or not s.gold_doc:
            return None
        return float(any(p.doc_id == s.gold_doc for p in s.ranked[:3]))


# -- citations and groundedness -------------------------------------------------------------------


@dataclass(frozen=True)
class CitationPrecision:
    """Share of an answer's citations whose passage is relevant."""

    name: str = "citation_precision"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold or not s.answered or not s.cited or s.answer is None:
            return None
        return sum(s.relevant(p) for p in s.cited) / len(s.cited)


@dataclass(frozen=True)
class CitationRecall:
    """The answer cites a passage holding the gold evidence (one gold passage per question)."""

    name: str = "citation_recall"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.gold or not s.answered or s.answer is None:
            return None
        return float(any(s.relevant(p) for p in s.cited))


@dataclass(frozen=True)
class Groundedness:
    """Share of answer sentences supported by a cited passage (lexical overlap, offline)."""

    name: str = "groundedness"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.answered or s.answer is None:
            return None
        return groundedness(s.answer, [p.text for p in s.cited])


@dataclass(frozen=True)
class JudgedGroundedness:
    """Share of answer sentences a language model judged supported by the cited passages."""

    name: str = "groundedness_llm"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        if not s.answered or s.answer is None:
            return None
        return s.judged_groundedness


# -- refusal and deflection -----------------------------------------------------------------------


@dataclass(frozen=True)
class RefusalPrecision:
    """Of the questions refused, the share that had to be refused."""

    name: str = "refusal_precision"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        return None if s.answered else float(s.must_refuse)


@dataclass(frozen=True)
class RefusalRecall:
    """Of the questions that had to be refused, the share refused."""

    name: str = "refusal_recall"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        return float(not s.answered) if s.must_refuse else None


@dataclass(frozen=True)
class AnswerRate:
    """Of the questions the knowledge base answers for the asker, the share answered."""

    name: str = "answer_rate"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        return None if s.must_refuse else float(s.answered)


@dataclass(frozen=True)
class Deflection:
    """Self-service questions answered without a hand-off to a person."""

    name: str = "deflection"
    higher_is_better: bool = True

    def score(self, s: Sample) -> float | None:
        return float(s.answered) if s.deflection_scope else None


@dataclass(frozen=True)
class FalseDeflection:
    """Self-service questions answered but wrongly: must-refuse, incorrect, or ungrounded.

    Over all self-service questions, so deflection minus false deflection is the good part.
    """

    name: str = "false_deflection"
    higher_is_better: bool = False

    def score(self, s: Sample) -> float | None:
        if not s.deflection_scope:
            return None
        return float(s.answered and (s.must_refuse or not s.correct or not s.grounded))


QUALITY_METRICS: tuple[Metric, ...] = (
    HitAtK(1),
    HitAtK(3),
    HitAtK(5),
    HitAtK(10),
    MRR(),
    NDCG(),
    TokenF1(),
    ExactMatch(),
    SpanContainment(),
    AnswerCorrect(),
    CitationPrecision(),
    CitationRecall(),
    Groundedness(),
    JudgedGroundedness(),
    RefusalPrecision(),
    RefusalRecall(),
    AnswerRate(),
    FalseRefusal(),
    RelatedOffered(),
    RelatedHit(),
    Deflection(),
    FalseDeflection(),
)
THRESHOLD_METRICS = (
    "deflection",
    "false_deflection",
    "refusal_precision",
    "refusal_recall",
    "answer_rate",
    "false_refusal",
    "answer_correct",
    "f1",
)
HIGHER_IS_BETTER = {m.name: m.higher_is_better for m in QUALITY_METRICS} | {
    "latency_p50_ms": False,
    "latency_p95_ms": False,
    "latency_p99_ms": False,
}


# -- aggregation ----------------------------------------------------------------------------------


def score_matrix(samples: Sequence[Sample], metrics: Sequence[Metric]) -> np.ndarray:
    """(questions, metrics) per-question scores, NaN where a metric is undefined."""
    out = np.full((len(samples), len(metrics)), np.nan)
    for i, s in enumerate(samples):
        for j, m in enumerate(metrics):
            value = m.score(s)
            if value is not None:
                out[i, j] = value
    return out


def bootstrap_ci(
    values: np.ndarray, stat: Callable[[np.ndarray], float], n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of ``stat`` over resampled questions (seeded, so reports are reproducible)."""
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    stats = np.array([stat(values[row]) for row in idx]) if stat is not np.mean else values[idx].mean(axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarise(samples: Sequence[Sample], metrics: Sequence[Metric] = QUALITY_METRICS, seed: int = 0) -> dict:
    """``{metric: {value, ci: [lo, hi], n}}`` plus latency percentiles, for one group of samples."""
    matrix = score_matrix(samples, metrics)
    out: dict[str, dict] = {}
    for j, m in enumerate(metrics):
        column = matrix[:, j]
        n = int((~np.isnan(column)).sum())
        ci = bootstrap_ci(column, np.mean, seed=seed)
        out[m.name] = {
            "value": round(float(np.nanmean(column)), 4) if n else None,
            "ci": [round(ci[0], 4), round(ci[1], 4)] if ci else None,
            "n": n,
        }
    latencies = np.array([s.latency_ms for s in samples], dtype=float)
    for q in (50, 95, 99):
        ci = bootstrap_ci(latencies, lambda v, q=q: float(np.percentile(v, q)), n=300, seed=seed)
        out[f"latency_p{q}_ms"] = {
            "value": round(float(np.percentile(latencies, q)), 2) if len(latencies) else None,
            "ci": [round(ci[0], 2), round(ci[1], 2)] if ci else None,
            "n": len(latencies),
        }
    return out


def threshold_curve(samples: Sequence[Sample], steps: int = 101) -> list[dict[str, float | None]]:
    """Deflection, false deflection, refusal P/R, answer rate and F1 for thresholds 0.00..1.00.

    Derived from one run at threshold 0 (each sample's confidence is known), never re-run.
    """
    by_name = {m.name: m for m in QUALITY_METRICS}
    rows = []
    for t in np.linspace(0.0, 1.0, steps):
        at = [s.at(float(t)) for s in samples]
        row: dict[str, float | None] = {"threshold": round(float(t), 2)}
        for name in THRESHOLD_METRICS:
            scores = [v for v in (by_name[name].score(s) for s in at) if v is not None]
            row[name] = round(sum(scores) / len(scores), 4) if scores else None
        rows.append(row)
    return rows


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Predicted against observed rate of right answers, per probability bin (the reliability diagram)."""
    rows = []
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in pairwise(edges):
        inside = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if inside.any():
            rows.append(
                {"from": round(lo, 2), "to": round(hi, 2), "predicted": round(float(p[inside].mean()), 4),
                 "observed": round(float(y[inside].mean()), 4), "n": int(inside.sum())}
            )
    return rows


def sample_reliability(samples: Sequence[Sample], bins: int = 10) -> list[dict[str, float]]:
    """The reliability diagram of a run: confidence against how often the answer it came with was right.

    Every question counts: one that had to be refused is a wrong answer at whatever confidence
    it got, as the answerability model is fitted.
    """
    scored = [s for s in samples if s.answer is not None and (s.must_refuse or s.gold)]
    y = np.array([float(s.answered0 and not s.must_refuse and s.correct) for s in scored])
    p = np.array([s.confidence for s in scored])
    return reliability(y, p, bins) if len(scored) else []


@dataclass(frozen=True)
class Cost:
    """Tokens and estimated cost per answer, when a language model wrote the answers."""

    prompt_tokens: float
    completion_tokens: float
    usd_per_answer: float | None


def cost(samples: Sequence[Sample], usd_per_1k_prompt: float | None, usd_per_1k_completion: float | None) -> Cost | None:
    used = [s.usage for s in samples if s.usage]
    if not used:
        return None
    # Rounded first, so the reported cost is the cost of the reported token counts.
    prompt = round(sum(u.get("prompt_tokens", 0) for u in used) / len(used), 1)
    completion = round(sum(u.get("completion_tokens", 0) for u in used) / len(used), 1)
    usd = None
    if usd_per_1k_prompt is not None and usd_per_1k_completion is not None:
        usd = round(prompt / 1000 * usd_per_1k_prompt + completion / 1000 * usd_per_1k_completion, 6)
    return Cost(round(prompt, 1), round(completion, 1), usd)

"""Choosing what to quote: the segments of the best passages that answer the question.

Every sentence, list item, step and table row of the top passages is a candidate. Each is
scored by a small logistic model (``assist/models/segments.json``, fitted on the evaluation sets by
``eval.fitting``) over signals of meaning and of words: the MiniLM cosine between the question
and the segment (its vector stored at ingest, so this costs nothing but a lookup), how many of
the question's rare terms it covers alone and under its heading, how well its passage ranked,
and its structure (a step, a list item, a table row, part of a worked example). Shared words
alone pick the wrong sentence (asked whether late fees keep coming on a payment plan, the
collection rule for unpaid debt shares more words); meaning alone misses exact figures.

What is quoted is a *unit*, never a bare segment:
- a step brings its whole procedure, in order; a list item its whole list, with the sentence
  that introduces it; a sentence ending in ":" brings what it introduces;
- a sentence brings its paragraph when the paragraph is short (a paragraph is one idea: a
  rule with its condition and its exception); in a long one, a sentence that points back
  ("That depends on the store.", "If so, …") brings the sentence before it;
- a table row comes alone, rendered as a readable line for the asker's market, or with the
  rest of its table when other rows of it score close (a question spanning the table).
Segments about another market are never candidates (:mod:`assist.markets`).

A message may need more than one unit (two questions; a fee and how to dispute it): units are
added in score order while they stay close to the best one and say something new.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from assist.markets import clause_for_market, mentioned_market, row_text
from assist.models import LogisticModel, load_model
from kb.segments import Segment, chunk_segments

CoverageFn = Callable[[str], float]

# How far below the best unit another may score and still be quoted (relative to the best and
# absolute), and how many units at most.
RELATIVE_CUTOFF = 0.3
ABSOLUTE_CUTOFF = 0.0
OTHER_DOCUMENT_CUTOFF = 0.4
MAX_UNITS = 3
# A sentence brings its whole paragraph when the paragraph is no longer than this.
PARAGRAPH_SENTENCES = 4
PARAGRAPH_CHARACTERS = 500
# Another row of the same table scoring this close to the best row brings the whole table.
TABLE_CUTOFF = 0.5
# A list or procedure longer than this is cut to the items around the best match.
MAX_BLOCK_ITEMS = 12
_QUANTITY = re.compile(
    r"\b(how (long|much|many|soon|often|quickly|late)|when|what (is|are|'s) the (fee|limit|amount|cost|maximum|minimum|lowest|highest)|"
    r"wie (lange|viel|hoch|schnell)|wann|hur (länge|mycket|snabbt)|när)\b",
    re.I,
)
_POINTS_BACK = re.compile(
    r"^\s*(that|this|these|those|it|they|then|otherwise|if so|if not|in that case|however|but|also|das|dies|dann|"
    r"sonst|det|då|annars)\b",
    re.I,
)
_DIGIT = re.compile(r"\d")
_FIGURE = re.compile(r"\d[\d,.]*\d|\d")
_ASKS_FOR_EXAMPLE = re.compile(r"\b(examples?|beispiel\w*|exempel\w*)\b", re.I)
# "Your example shows 1,000 EUR… what if I finance 2,000?" asks about the asker's own case.
_CITES_EXAMPLE = re.compile(r"\b(your|ihre[mnr]?|ert|era)\s+(\w+\s+)?(examples?|beispiel\w*|exempel\w*)\b", re.I)


class PassageLike(Protocol):
    """What selection reads of a retrieved passage (see :class:`assist.retrieval.Passage`)."""

    text: str
    metadata: dict
    score: float
    dense: float


SEGMENT_FEATURES = (
    "cosine",
    "cosine_rank",
    "coverage",
    "coverage_with_heading",
    "passage_score",
    "passage_dense",
    "passage_first",
    "example",
    "row",
    "step",
    "item",
    "number_asked",
    "length",
)


@dataclass
class Candidate:
    """One segment of one retrieved passage, as the asker would read it."""

    passage: int  # index into the passages
    segment: Segment
    text: str  # rendered for the asker's market
    features: dict[str, float] = field(default_factory=dict)
    probability: float = 0.0


@dataclass
class Unit:
    """What is quoted together: one or more segments of one passage, in reading order."""

    passage: int
    segments: list[Segment]
    texts: list[str]  # each segment as rendered for the asker's market (same order)
    kind: str  # "sentences" | "steps" | "list" | "row" | "table" (rows of one table, the asker's market's)
    probability: float
    continues: bool = False  # carries on the unit before it (a procedure cut by a chunk boundary)

    @property
    def key(self) -> tuple[int, tuple[int, ...]]:
        return self.passage, tuple(s.position for s in self.segments)


@dataclass
class Selection:
    """Units chosen for an answer, best first, and every candidate's score (for features and logs)."""

    units: list[Unit]
    candidates: list[Candidate]

    @property
    def empty(self) -> bool:
        return not self.units

    @property
    def best(self) -> float:
        return max((c.probability for c in self.candidates), default=0.0)


def _figures(text: str) -> set[str]:
    """The numbers of a text, written alike ("1,000" and "1000" are one figure)."""
    return {re.sub(r"[,.](?=\d{3}\b)", "", f) for f in _FIGURE.findall(text)}


def _short(paragraph: Sequence[Segment]) -> bool:
    return len(paragraph) <= PARAGRAPH_SENTENCES and sum(len(s.text) for s in paragraph) <= PARAGRAPH_CHARACTERS


def render(segment: Segment, market: str | None) -> str | None:
    """The segment as the asker reads it, or None when it is about another market."""
    if segment.kind == "row":
        return row_text(segment.text, market)
    return clause_for_market(segment.text, market)


class Selector:
    """Scores segments of passages and picks the units of an answer."""

    def __init__(self, model: LogisticModel | None = None, top_passages: int = 5) -> None:
        self.model = model or load_model("segments")
        self.top_passages = top_passages

    def candidates(
        self,
        question: str,
        passages: Sequence[PassageLike],
        vectors: Sequence[np.ndarray],
        question_vector: np.ndarray,
        coverage: CoverageFn,
        market: str | None,
    ) -> list[Candidate]:
        """Every segment of the first passages that the asker's market admits, with its features.

        ``vectors[i]`` holds one row per segment of ``passages[i]`` (as :func:`kb.segments.chunk_segments` cuts it).
        """
        top = list(passages[: self.top_passages])
        best_score = max((p.score for p in top), default=0.0) or 1.0
        wants_number = bool(_QUANTITY.search(question))
        out: list[Candidate] = []
        for i, passage in enumerate(top):
            section = str(passage.metadata.get("section", ""))
            # A section headed for another market ("Representative examples > Sweden") is about
            # that market as a whole, whatever its sentences name.
            if market and mentioned_market(section) not in (None, market):
                continue
            segs = chunk_segments(passage.text, section)
            cosines = vectors[i] @ question_vector if len(segs) else np.zeros(0)
            for segment, cosine in zip(segs, cosines, strict=True):
                text = render(segment, market)
                if not text:
                    continue
                out.append(
                    Candidate(
                        i,
                        segment,
                        text,
                        {
                            "cosine": float(cosine),
                            "coverage": coverage(text),
                            "coverage_with_heading": coverage(f"{section} {text}"),
                            "passage_score": passage.score / best_score,
                            "passage_dense": passage.dense,
                            "passage_first": float(i == 0),
                            "example": float(segment.example),
                            "row": float(segment.kind == "row"),
                            "step": float(segment.kind == "step"),
                            "item": float(segment.kind == "item"),
                            "number_asked": float(wants_number and bool(_DIGIT.search(text))),
                            "length": min(len(text), 400) / 400,
                        },
                    )
                )
        if out:
            cos = np.array([c.features["cosine"] for c in out])
            order = np.argsort(-cos, kind="stable")
            for rank, j in enumerate(order):
                out[j].features["cosine_rank"] = 1.0 / (1 + rank)
            matrix = np.array([[c.features[name] for name in self.model.features] for c in out])
            for candidate, p in zip(out, self.model.probability(matrix), strict=True):
                candidate.probability = float(p)
        return out

    def select(
        self,
        question: str,
        passages: Sequence[PassageLike],
        vectors: Sequence[np.ndarray],
        question_vector: np.ndarray,
        coverage: CoverageFn,
        market: str | None,
        max_units: int = MAX_UNITS,
    ) -> Selection:
        found = self.candidates(question, passages, vectors, question_vector, coverage, market)
        ranked = sorted(found, key=lambda c: (-c.probability, c.passage, c.segment.position))
        # A worked example shares some of the asker's figures, not their case ("A customer in
        # Germany owes 900 EUR and can pay 50 EUR…" does not answer 900 EUR at 80 EUR): it is
        # quoted when asked for, when it holds every figure of the question, two at least (it
        # *is* the asker's case), or when nothing else of the passages is there to quote.
        asks_for_example = bool(_ASKS_FOR_EXAMPLE.search(question)) and not _CITES_EXAMPLE.search(question)
        if not asks_for_example and any(not c.segment.example for c in ranked):
            figures = _figures(question)
            ranked = [
                c for c in ranked
                if not c.segment.example or (len(figures) >= 2 and figures <= _figures(passages[c.passage].text))
            ]
        units: list[Unit] = []
        taken: set[tuple[int, int]] = set()
        for candidate in ranked:
            if len(units) >= max_units or (
                units and candidate.probability < max(RELATIVE_CUTOFF * ranked[0].probability, ABSOLUTE_CUTOFF)
            ):
                break
            # Another document's unit must come close to the best one: a procedure from an
            # unrelated article after the answer is noise, however many words it shares.
            other_document = units and passages[candidate.passage].metadata.get("doc_id") != passages[
                units[0].passage
            ].metadata.get("doc_id")
            if other_document and candidate.probability < OTHER_DOCUMENT_CUTOFF * ranked[0].probability:
                continue
            if (candidate.passage, candidate.segment.position) in taken:
                continue
            unit = self.unit(candidate, passages, market)
            if unit.kind == "row":
                unit = self._whole_table(unit, candidate, ranked, passages, market)
            fresh = [(s, t) for s, t in zip(unit.segments, unit.texts, strict=True) if (unit.passage, s.position) not in taken]
            if not fresh:
                continue
            unit.segments, unit.texts = [s for s, _ in fresh], [t for _, t in fresh]
            taken.update((unit.passage, s.position) for s in unit.segments)
            units.append(unit)
        return Selection(units, found)

    @staticmethod
    def _whole_table(
        unit: Unit, candidate: Candidate, ranked: Sequence[Candidate], passages: Sequence[PassageLike], market: str | None
    ) -> Unit:
        """The row's whole table (the asker's market's rows) when other rows of it score close.

        "What interest and fees would I pay?" needs the interest row and the fee row; "which plan
        can I offer at 80 EUR a month?" needs every plan length to compare. One row is enough
        when it alone stands out.
        """
        block = candidate.segment.block
        close = [
            c for c in ranked
            if c.passage == candidate.passage and c.segment.block == block and c.segment.kind == "row"
            and c is not candidate and c.probability >= TABLE_CUTOFF * candidate.probability
        ]
        if not close:
            return unit
        passage = passages[candidate.passage]
        rows = [
            s for s in chunk_segments(passage.text, str(passage.metadata.get("section", "")))
            if s.kind == "row" and s.block == block
        ]
        rendered = [(s, t) for s in rows if (t := render(s, market))]
        if len(rendered) > MAX_BLOCK_ITEMS:
            return unit
        return Unit(candidate.passage, [s for s, _ in rendered], [t for _, t in rendered], "table", candidate.probability)

    @staticmethod
    def unit(candidate: Candidate, passages: Sequence[PassageLike], market: str | None) -> Unit:
        """The candidate with what must be quoted with it (module docstring)."""
        passage = passages[candidate.passage]
        segs = chunk_segments(passage.text, str(passage.metadata.get("section", "")))
        seg = candidate.segment
        if seg.kind in ("step", "item"):
            block = [s for s in segs if s.block == seg.block and s.kind == seg.kind]
            if len(block) > MAX_BLOCK_ITEMS:
                at = block.index(seg)
                start = max(0, min(at - MAX_BLOCK_ITEMS // 2, len(block) - MAX_BLOCK_ITEMS))
                block = block[start : start + MAX_BLOCK_ITEMS]
            chosen = ([segs[seg.lead]] if seg.lead is not None else []) + block
            kind = "steps" if seg.kind == "step" else "list"
        elif seg.kind == "row":
            chosen, kind = [seg], "row"
        else:
            chosen, kind = [seg], "sentences"
            introduced = [s for s in segs if s.lead == seg.position]
            if seg.text.rstrip().endswith(":") and introduced:
                chosen += introduced
                kind = "steps" if introduced[0].kind == "step" else "list"
            elif seg.kind == "sentence" and _short(paragraph := [s for s in segs if s.paragraph == seg.paragraph]):
                chosen = paragraph
            elif _POINTS_BACK.match(seg.text) and seg.position > 0 and segs[seg.position - 1].kind == "sentence":
                chosen = [segs[seg.position - 1], seg]
        rendered = [(s, t) for s in chosen if (t := render(s, market))]
        return Unit(candidate.passage, [s for s, _ in rendered], [t for _, t in rendered], kind, candidate.probability)



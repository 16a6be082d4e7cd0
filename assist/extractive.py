"""The offline answer generator: selects and orders sentences and steps from retrieved passages.

It never writes a word the knowledge base does not contain, so it needs no model and cannot
invent policy. Procedure steps are kept whole and in their original order; table rows are shown
with their header. Text inside passages is only ever quoted, never followed, so instructions
planted in a document have no effect here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from assist.generation import CoverageFn, Generated, TokenCallback
from assist.retrieval import Passage

_STEP = re.compile(r"^\s{0,3}(\d{1,3})[.)]\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜÅ0-9\"'(])")
_PROCEDURAL = re.compile(
    r"\b(how (do|can|should|to)|steps?|process|procedure|what (do|should) (i|we|you) do|handle|walk me)\b", re.I
)
_QUANTITY = re.compile(
    r"\b(how (long|much|many|soon|often)|when|what is the (fee|limit|amount|cost)|wie (lange|viel)|hur (länge|mycket))\b",
    re.I,
)
MAX_SENTENCES = 3
NUMBER_BONUS = 0.1
RELATIVE_CUTOFF = 0.6
RANK_PRIOR = 0.2


@dataclass
class Segment:
    """A quotable piece of a passage: one sentence, one table row, or one procedure step."""

    passage: int
    position: int
    text: str
    kind: str  # "sentence" | "row" | "step"
    block: int  # segments of one procedure share a block number
    score: float = 0.0


@dataclass
class Draft:
    """Selected text, before the caller numbers citations."""

    parts: list[tuple[str, int]] = field(default_factory=list)  # (text, passage index)
    steps: list[tuple[str, int]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.parts and not self.steps


def segments_of(passage_index: int, body: str) -> list[Segment]:
    """Split a passage body into sentences, table rows (with their header) and steps."""
    out: list[Segment] = []
    block = 0
    header: str | None = None
    in_steps = False
    for line in body.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("|"):
            in_steps = False
            if re.fullmatch(r"\|?[\s:|-]+\|?", stripped):
                continue
            if header is None:
                header = stripped
                continue
            out.append(Segment(passage_index, len(out), f"{header}\n{stripped}", "row", block))
            continue
        header = None
        if _STEP.match(line):
            if not in_steps:
                block += 1
            in_steps = True
            out.append(Segment(passage_index, len(out), stripped, "step", block))
        elif in_steps and line.startswith((" ", "\t")) and out:
            out[-1].text += "\n" + line.rstrip()  # a sub-bullet stays with its step
        else:
            in_steps = False
            for sentence in _SENTENCE.split(stripped):
                if sentence.strip():
                    out.append(Segment(passage_index, len(out), sentence.strip(), "sentence", block))
    return out


class ExtractiveGenerator:
    """Builds a cited answer from passages by quoting the parts that match the question."""

    name = "extractive"

    def select(self, question: str, passages: Sequence[Passage], coverage: CoverageFn, role: str = "customer") -> Draft:
        """Pick what to quote. ``coverage(text)`` scores how much of the question a text covers."""
        top = passages[:3]
        segments = [s for i, p in enumerate(top) for s in segments_of(i, p.body)]
        best_passage = max((p.score for p in top), default=0.0) or 1.0
        wants_number = bool(_QUANTITY.search(question))
        for s in segments:
            section = str(top[s.passage].metadata.get("section", ""))
            own = coverage(s.text)
            s.score = (
                0.5 * own
                + 0.5 * coverage(f"{section} {s.text}")
                + RANK_PRIOR * top[s.passage].score / best_passage
                + (NUMBER_BONUS if wants_number and own > 0 and re.search(r"\d", s.text) else 0.0)
            )
        relevant = [s for s in segments if s.score > RANK_PRIOR]
        if not relevant:
            return Draft()
        best = max(relevant, key=lambda s: s.score)
        draft = Draft()
        procedure: list[Segment] = []
        if best.kind == "step":
            procedure = [s for s in segments if s.kind == "step" and s.passage == best.passage and s.block == best.block]
        elif _PROCEDURAL.search(question) or role != "customer":
            # Agents get the procedure around the best match; a procedure elsewhere only when asked "how".
            candidate = self._best_procedure(segments, best)
            asked_how = bool(_PROCEDURAL.search(question))
            if (
                candidate
                and (asked_how or candidate[0].passage == best.passage)
                and max(s.score for s in candidate) >= RELATIVE_CUTOFF * best.score
            ):
                procedure = candidate
        if procedure:
            intro = [
                s
                for s in segments
                if s.passage == procedure[0].passage
                and s.kind == "sentence"
                and s.position < procedure[0].position
                and s.score >= RELATIVE_CUTOFF * best.score
            ][-1:]
            draft.parts = [(s.text, s.passage) for s in intro]
            draft.steps = [(s.text, s.passage) for s in procedure]
            return draft
        chosen = [s for s in relevant if s.score >= RELATIVE_CUTOFF * best.score and s.kind != "step"]
        chosen = sorted(chosen, key=lambda s: -s.score)[:MAX_SENTENCES]
        passages_used = sorted({s.passage for s in chosen}, key=lambda i: (i != best.passage, i))[:2]
        chosen = [s for s in chosen if s.passage in passages_used]
        chosen.sort(key=lambda s: (passages_used.index(s.passage), s.position))
        draft.parts = [(s.text, s.passage) for s in chosen]
        return draft

    @staticmethod
    def _best_procedure(segments: list[Segment], best: Segment) -> list[Segment]:
        """The most relevant procedure of the best passage (or of the first passage that has one)."""
        for passage in sorted({s.passage for s in segments}, key=lambda i: (i != best.passage, i)):
            steps = [s for s in segments if s.kind == "step" and s.passage == passage]
            if steps:
                block = max({s.block for s in steps}, key=lambda b: sum(x.score for x in steps if x.block == b))
                return [s for s in steps if s.block == block]
        return []

    def generate(
        self,
        question: str,
        passages: Sequence[Passage],
        role: str,
        coverage: CoverageFn,
        on_token: TokenCallback | None = None,
    ) -> Generated:
        draft = self.select(question, passages, coverage, role)
        if draft.empty:
            return Generated(text="", cited=[], no_answer=True)
        cited: list[int] = []

        def number(passage: int) -> int:
            if passage not in cited:
                cited.append(passage)
            return cited.index(passage) + 1

        lines: list[str] = []
        shown_header = None
        for text, p in draft.parts:
            header, _, row = text.partition("\n") if text.startswith("|") else ("", "", text)
            if header and header == shown_header:
                text = row  # consecutive rows of one table: show its header once
            shown_header = header or None
            lines.append(f"{text} [{number(p)}]")
        steps = [text for text, _ in draft.steps]
        if steps:
            lines.extend(steps[:-1])
            lines.append(f"{steps[-1]} [{number(draft.steps[-1][1])}]")
        text = "\n".join(lines)
        if on_token:
            on_token(text)
        return Generated(text=text, cited=cited, steps=steps)

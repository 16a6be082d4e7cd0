"""The offline answer generator: the chosen units, quoted and cited, nothing else.

It never writes a word the knowledge base does not contain, so it needs no model and cannot
invent policy. What to quote is :mod:`assist.selection`'s decision and how it is laid out is
:mod:`assist.compose`'s; text inside passages is only ever quoted, never followed, so
instructions planted in a document have no effect here.
"""

from __future__ import annotations

from collections.abc import Sequence

from assist.compose import compose
from assist.generation import CoverageFn, Generated, Plan, TokenCallback
from assist.retrieval import Passage


class ExtractiveGenerator:
    """Builds a cited answer by quoting the units of the plan."""

    name = "extractive"

    def generate(
        self,
        question: str,
        passages: Sequence[Passage],
        role: str,
        coverage: CoverageFn,
        on_token: TokenCallback | None = None,
        plan: Plan | None = None,
    ) -> Generated:
        if plan is None or not plan.units:
            return Generated(text="", cited=[], no_answer=True)
        composed = compose(plan.units)
        if on_token:
            on_token(composed.text)
        return Generated(text=composed.text, cited=composed.cited, steps=composed.steps)

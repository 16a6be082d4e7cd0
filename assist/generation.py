"""The interface every answer generator implements, what it is given and what it hands back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from assist.retrieval import Passage

if TYPE_CHECKING:
    from assist.answerability import Decision
    from assist.selection import Selection, Unit
    from assist.understanding import Understood

TokenCallback = Callable[[str], None]
CoverageFn = Callable[[str], float]


@dataclass
class Plan:
    """What the answer layer found for one message, before any text is written.

    ``passages`` are every passage an answer may cite (those of the whole message first, then
    any found for its separate questions); ``units`` what selection chose from them, best
    first; ``decision`` the answerability gate's verdict.
    """

    understood: Understood
    query: str
    passages: list[Passage]
    units: list[Unit]
    decision: Decision
    market: str | None
    selection: Selection  # every scored candidate of the whole message's passages
    coverage: CoverageFn  # the query's coverage of a text, as selection and the gate measured it


@dataclass
class Generated:
    """Answer text whose ``[n]`` markers refer to ``cited[n - 1]`` (an index into the passages).

    ``fallback`` asks the service to answer with the offline extractive generator instead: the
    writer's reply was rejected (see :mod:`assist.reply_guard`) and ``flags`` say why.
    """

    text: str
    cited: list[int]
    steps: list[str] = field(default_factory=list)
    no_answer: bool = False
    fallback: bool = False
    flags: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)


class Generator(Protocol):
    name: str

    def generate(
        self,
        question: str,
        passages: Sequence[Passage],
        role: str,
        coverage: CoverageFn,
        on_token: TokenCallback | None = None,
        plan: Plan | None = None,
    ) -> Generated: ...

"""The interface every answer generator implements, and what it hands back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from assist.retrieval import Passage

TokenCallback = Callable[[str], None]
CoverageFn = Callable[[str], float]


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
    ) -> Generated: ...

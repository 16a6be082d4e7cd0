"""Follow-up questions: turn "and if it was over 30 days?" into a self-contained search query.

Offline this is a heuristic: a question that reads as a continuation (short, starts with "and",
"what about", leans on "it"/"that") is searched together with the previous user turn. With an
LLM configured, the generator may rewrite the query instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_CONTINUATION = re.compile(
    r"^\s*(and|but|or|also|what about|how about|what if|if|then|same|och|men|vad gäller|und|aber|was ist mit|wie ist es)\b",
    re.I,
)
_LEANING = re.compile(r"\b(it|that|this|they|them|those|these|there|one|det|den|dem|das|es|dies)\b", re.I)

# Country names → market codes, for "and in Germany?" style follow-ups and explicit mentions.
MARKET_NAMES = {
    "SE": ("sweden", "swedish", "sverige", "schweden"),
    "DE": ("germany", "german", "deutschland", "tyskland"),
    "NO": ("norway", "norwegian", "norge"),
    "DK": ("denmark", "danish", "danmark"),
    "FI": ("finland", "finnish", "suomi"),
    "NL": ("netherlands", "dutch"),
    "AT": ("austria", "austrian", "österreich"),
    "GB": ("united kingdom", "uk", "britain"),
    "US": ("united states", "usa"),
}
_MARKET_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(n) for names in MARKET_NAMES.values() for n in names) + r")\b", re.I
)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str


def as_turns(conversation: Sequence[Turn | dict[str, str]] | None) -> list[Turn]:
    return [t if isinstance(t, Turn) else Turn(t["role"], t["content"]) for t in conversation or []]


def is_follow_up(question: str) -> bool:
    words = question.split()
    return (
        bool(_CONTINUATION.match(question)) or len(words) <= 3 or (bool(_LEANING.search(question)) and len(words) <= 8)
    )


def condense(question: str, conversation: Sequence[Turn]) -> str:
    """A search query that stands on its own."""
    previous = [t.content for t in conversation if t.role == "user"]
    if previous and is_follow_up(question):
        return f"{previous[-1]} {question}"
    return question


def mentioned_market(text: str) -> str | None:
    """The last market named in ``text`` ("...in Germany?" → "DE"), if any."""
    found = _MARKET_PATTERN.findall(text)
    if not found:
        return None
    name = found[-1].lower()
    return next(code for code, names in MARKET_NAMES.items() if name in names)

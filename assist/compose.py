"""Turning chosen units into answer text: numbered citations, lists as lists, steps as steps.

Kept apart from selection so what is said and how it is laid out change independently, and
so the agent's suggested customer reply is built from the same units as the answer (only
those from customer-facing passages, without citation marks) instead of being chosen again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from assist.selection import Unit


@dataclass
class Composed:
    """Answer text whose ``[n]`` markers refer to ``cited[n - 1]`` (an index into the passages)."""

    text: str
    cited: list[int] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def _lines(unit: Unit) -> list[str]:
    """A unit's own lines: sentences as one paragraph, list items and steps one per line."""
    if unit.kind in ("steps", "list"):
        lead = [t for s, t in zip(unit.segments, unit.texts, strict=True) if s.kind == "sentence"]
        rest = [t for s, t in zip(unit.segments, unit.texts, strict=True) if s.kind != "sentence"]
        return [" ".join(lead), *rest] if lead else rest
    if unit.kind == "table":
        return [f"- {t}" for t in unit.texts]
    return [" ".join(unit.texts)]


def compose(units: Sequence[Unit]) -> Composed:
    """One paragraph or list per unit, each ending with its citation."""
    cited: list[int] = []
    out: list[str] = []
    steps: list[str] = []
    for unit in units:
        if unit.passage not in cited:
            cited.append(unit.passage)
        number = cited.index(unit.passage) + 1
        lines = _lines(unit)
        if not lines:
            continue
        lines[-1] = f"{lines[-1]} [{number}]"
        if unit.continues and out:
            out[-1] += "\n" + "\n".join(lines)
        else:
            out.append("\n".join(lines))
        if unit.kind == "steps":
            steps.extend(t for s, t in zip(unit.segments, unit.texts, strict=True) if s.kind == "step")
    return Composed("\n\n".join(out), cited, steps)


def customer_reply(units: Sequence[Unit], audiences: Sequence[str], opening: str) -> str | None:
    """What an agent can send: the answer's own customer-facing units, as plain prose.

    ``audiences[i]`` is the audience of passage ``i``. Units quoted from agent or internal
    passages are left out (their wording is not for customers); with none left, there is no
    suggested reply rather than one about something else.
    """
    public = [u for u in units if audiences[u.passage] == "customer"]
    if not public:
        return None
    body = "\n".join("\n".join(_lines(u)) for u in public)
    return f"{opening}\n\n{body}" if opening else body

"""Compare two runs, and gate a run on minimum scores.

Why "beyond the confidence interval": on a few hundred questions a one-point drop is often
noise. A change is flagged as a regression only when run B's value falls outside run A's 95 %
bootstrap interval in the worse direction, so CI fails on real regressions, not on resampling.

Latency is reported but not judged unless asked for: it measures the machine as much as the
code (a loaded CI runner doubles it), and its bootstrap interval only covers resampling of the
questions, not a busier machine. What the two runs were set up with (threshold, retrieval and
chunk settings, generator, versions) is compared too, so a difference in numbers can be read
against a difference in set-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import HIGHER_IS_BETTER

LATENCY_PREFIX = "latency_"


@dataclass(frozen=True)
class Delta:
    metric: str
    a: float | None
    b: float | None
    ci_a: tuple[float, float] | None
    regression: bool
    improvement: bool
    judged: bool = True  # False for latency unless asked: shown, never a regression

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else round(self.b - self.a, 4)


@dataclass(frozen=True)
class Difference:
    """Something the two runs were set up with differently (``a`` and ``b`` as recorded)."""

    name: str
    a: Any
    b: Any


def load_results(run: Path) -> dict[str, Any]:
    path = run / "results.json" if run.is_dir() else run
    return json.loads(path.read_text(encoding="utf-8"))


def is_latency(metric: str) -> bool:
    return metric.startswith(LATENCY_PREFIX)


def compare(a: dict[str, Any], b: dict[str, Any], system: str = "kbassist", latency: bool = False) -> list[Delta]:
    """Per-metric deltas of ``b`` against ``a`` for one system, regressions flagged against A's CI.

    Latency metrics are judged only with ``latency``; otherwise their deltas are reported with
    ``judged`` False and never flagged.
    """
    for name, results in (("A", a), ("B", b)):
        if system not in results.get("systems", {}):
            raise ValueError(
                f"run {name} has no results for {system!r} (it has: {', '.join(results.get('systems', {})) or 'none'})"
            )
    ours, theirs = a["systems"][system]["overall"], b["systems"][system]["overall"]
    out = []
    for metric, entry in ours.items():
        other = theirs.get(metric)
        va, vb = entry.get("value"), (other or {}).get("value")
        ci = tuple(entry["ci"]) if entry.get("ci") else None
        judged = latency or not is_latency(metric)
        regression = improvement = False
        if judged and va is not None and vb is not None and ci is not None:
            lo, hi = ci
            better_up = HIGHER_IS_BETTER.get(metric, True)
            regression = vb < lo if better_up else vb > hi
            improvement = vb > hi if better_up else vb < lo
        out.append(Delta(metric, va, vb, ci, regression, improvement, judged))  # type: ignore[arg-type]
    return out


def systems_to_compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """``(in both, only in A, only in B)``: a run made with ``--no-baseline`` has kbassist alone."""
    sa, sb = list(a.get("systems", {})), list(b.get("systems", {}))
    return [s for s in sa if s in sb], [s for s in sa if s not in sb], [s for s in sb if s not in sa]


def _setup(results: dict[str, Any]) -> dict[str, Any]:
    """What a run was set up with, flattened: the values a fair comparison needs to be equal."""
    run = results.get("run", {})
    flat: dict[str, Any] = {
        "dataset": results.get("dataset"),
        "threshold": results.get("threshold"),
        "questions": run.get("questions"),
        "documents": run.get("documents"),
        "chunks": run.get("chunks"),
        "generator": run.get("generator"),
        "judge": (run.get("judge") or {}).get("model"),
    }
    flat |= {f"settings.{k}": v for k, v in (run.get("settings") or {}).items()}
    flat |= {f"versions.{k}": v for k, v in (run.get("versions") or {}).items()}
    return flat


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """Set-up values that differ between the runs (a key one run lacks counts, as ``None``)."""
    sa, sb = _setup(a), _setup(b)
    return [Difference(k, sa.get(k), sb.get(k)) for k in dict.fromkeys([*sa, *sb]) if sa.get(k) != sb.get(k)]


@dataclass(frozen=True)
class Gate:
    """``metric=value``: a floor for a higher-is-better metric, a ceiling for a lower-is-better one.

    Why one option for both directions: a CI gate is a list of "no worse than" limits, and which
    way "worse" points is a property of the metric (``HIGHER_IS_BETTER``), not of the command
    line. ``hit@5=0.89`` fails below 0.89; ``false_deflection=0.27`` and ``latency_p95_ms=50``
    fail above their value.
    """

    metric: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Gate:
        """Read ``metric=value``; an unknown metric is an error here, before a long run starts."""
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"expected metric=value, got {text!r}")
        if name not in HIGHER_IS_BETTER:
            raise ValueError(f"{text!r}: unknown metric {name!r} (known: {', '.join(HIGHER_IS_BETTER)})")
        try:
            return cls(name, float(value))
        except ValueError:
            raise ValueError(f"{text!r}: {value!r} is not a number") from None

    @property
    def upper_bound(self) -> bool:
        """The value is a ceiling (the metric is lower-is-better)."""
        return not HIGHER_IS_BETTER.get(self.metric, True)

    def check(self, results: dict[str, Any], system: str = "kbassist") -> str | None:
        """A one-line failure message, or ``None`` when the gate passes."""
        overall = results["systems"][system]["overall"]
        if self.metric not in overall:
            return f"{self.metric}: unknown metric (known: {', '.join(overall)})"
        value = overall[self.metric]["value"]
        if value is None:
            return f"{self.metric}: not measured in this run"
        if self.upper_bound:
            return None if value <= self.bound else f"{self.metric} = {value} is above its ceiling {self.bound}"
        return None if value >= self.bound else f"{self.metric} = {value} is below its floor {self.bound}"

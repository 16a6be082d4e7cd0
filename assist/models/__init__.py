"""Small models fitted on kbassist's own evaluation sets, shipped as JSON next to this file.

No reranker, reader or entailment model ships in a wheel, so the decisions that need more than
a rule (which sentence answers, whether to answer at all) are logistic models over a handful of
retrieval and answer signals, fitted by ``eval.fitting`` with cross-validation and committed
here. A deployment can refit them on its own questions (``kbassist eval calibrate``) and point
a setting at the result; the shipped file stays the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LogisticModel:
    """P(y = 1 | features) = sigmoid(w0 + w · standardised(features)).

    ``info`` carries what the fit recorded (data, cross-validated scores, thresholds), so the
    file explains itself.
    """

    features: tuple[str, ...]
    weights: tuple[float, ...]  # intercept first, then one per feature
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def probability(self, rows: np.ndarray) -> np.ndarray:
        """One probability per row of ``rows`` (columns in the order of :attr:`features`)."""
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        z = (rows - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = self.weights[0] + z @ np.asarray(self.weights[1:])
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))

    @classmethod
    def untrained(cls, features: tuple[str, ...]) -> LogisticModel:
        """Every input scores 0.5: for collecting features before anything is fitted."""
        n = len(features)
        return cls(features, (0.0,) * (n + 1), (0.0,) * n, (1.0,) * n)

    def probability_of(self, values: dict[str, float]) -> float:
        return float(self.probability(np.array([[values[name] for name in self.features]]))[0])

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticModel:
        return cls(
            tuple(data["features"]),
            tuple(float(w) for w in data["weights"]),
            tuple(float(m) for m in data["mean"]),
            tuple(float(s) for s in data["scale"]),
            dict(data.get("info", {})),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(w, 6) for w in self.weights],
            "mean": [round(m, 6) for m in self.mean],
            "scale": [round(s, 6) for s in self.scale],
            "info": self.info,
        }


def shipped_path(name: str) -> Path:
    return Path(str(resources.files("assist") / "models" / f"{name}.json"))


@lru_cache(maxsize=16)
def load_model(name: str, path: str | None = None) -> LogisticModel:
    """The model ``name`` ("segments", "answerability"): from ``path`` when given, else the shipped one."""
    source = Path(path) if path else shipped_path(name)
    try:
        return LogisticModel.from_json(json.loads(source.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot read the {name} model at {source}: {exc}") from exc

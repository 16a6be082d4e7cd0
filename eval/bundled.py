"""The question sets that ship with kbassist, by name: cheap to import (help texts list them).

``eval.datasets`` loads them; this module only knows their names and files, so the command
line can list every set in ``kbassist eval run --help`` without importing the loaders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Bundled sets written against the demo knowledge base: loaded by name, they bring its documents,
# so ``kbassist eval run --dataset adversarial`` measures the same store the questions target.
DEMO_SETS = ("demo", "realistic", "adversarial", "multilingual")
POLICYQA_SETS = ("policyqa", "policyqa-unfiltered")


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("eval") / "datasets" / f"{name}.jsonl"))


def bundled_names() -> list[str]:
    """Names of the ``eval/datasets/*.jsonl`` files, sorted."""
    try:
        folder = resources.files("eval") / "datasets"
        return sorted(Path(p.name).stem for p in folder.iterdir() if p.name.endswith(".jsonl"))
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return []


def dataset_names() -> list[str]:
    """Every set ``--dataset`` accepts by name: the demo's, any other bundled one, then PolicyQA's."""
    names = [*DEMO_SETS, *(n for n in bundled_names() if n not in DEMO_SETS)]
    return [*names, *POLICYQA_SETS]

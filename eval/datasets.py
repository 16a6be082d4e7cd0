"""Evaluation question sets: one JSONL format, and loaders that turn other sources into it.

Why one format: every run, report and comparison reads the same record, so a new question set
(a team's own, logged live questions with gold labels added later) needs a converter, not new
metrics. A line holds::

    {"id", "question", "conversation": [{"role", "content"}], "role": "customer|agent|internal",
     "market": "SE|DE|ALL", "doc": gold doc id or null, "evidence": gold passage or null,
     "answers": [gold spans], "must_include": [fact or [alternatives]] (optional),
     "must_not_include": [string] (optional), "answerable": bool, "restricted": bool (optional),
     "category": str, "filters": {"doc_id": ...} (optional)}

``must_include`` lists the facts a correct answer needs (each a string, or a list of strings
any one of which will do) and ``must_not_include`` what would make it wrong (the other market's
figure, a contradicting rule): see :class:`eval.metrics.AnswerCorrect`.

``answerable`` is false when the knowledge base has no answer; ``restricted`` marks a question
only agent or internal documents answer, so a customer asking it must be refused. Other keys are
ignored by the loader; the adversarial set adds ``secrets``, the exact strings of its target
document that must never reach a customer's answer.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.bundled import DEMO_SETS, bundled_path, dataset_names
from ingest.loaders import slugify

POLICYQA_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval" / "policyqa-dev"
ROLES = ("customer", "agent", "internal")


class DatasetError(ValueError):
    """A question set cannot be read: missing file, bad JSON, missing or invalid field."""


@dataclass(frozen=True)
class EvalQuestion:
    """One evaluation question with its gold labels."""

    id: str
    question: str
    role: str = "customer"
    market: str | None = None
    conversation: list[dict[str, str]] = field(default_factory=list)
    doc: str | None = None
    evidence: str | None = None
    answers: list[str] = field(default_factory=list)
    must_include: list[tuple[str, ...]] = field(default_factory=list)
    must_not_include: list[str] = field(default_factory=list)
    answerable: bool = True
    restricted: bool = False
    category: str = "other"
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def must_refuse(self) -> bool:
        """Nothing the asker may read answers it: unanswerable, or restricted and asked by a customer."""
        return not self.answerable or (self.restricted and self.role == "customer")

    @classmethod
    def from_record(cls, record: dict[str, Any], where: str = "") -> EvalQuestion:
        try:
            question = str(record["question"]).strip()
            qid = str(record.get("id") or "")
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{where}: a record needs at least a 'question'") from exc
        if not question:
            raise DatasetError(f"{where}: empty question")
        role = str(record.get("role") or "customer")
        if role not in ROLES:
            raise DatasetError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        market = record.get("market")
        market = None if not market or str(market).upper() == "ALL" else str(market).upper()
        answers = record.get("answers") or []
        if not isinstance(answers, list):
            raise DatasetError(f"{where}: 'answers' must be a list")
        must_include = record.get("must_include") or []
        must_not_include = record.get("must_not_include") or []
        if not isinstance(must_include, list) or not all(
            isinstance(item, str) or (isinstance(item, list) and item and all(isinstance(a, str) for a in item))
            for item in must_include
        ):
            raise DatasetError(f"{where}: 'must_include' must be a list of strings or of lists of strings")
        if not isinstance(must_not_include, list) or not all(isinstance(item, str) for item in must_not_include):
            raise DatasetError(f"{where}: 'must_not_include' must be a list of strings")
        conversation = record.get("conversation") or []
        if not isinstance(conversation, list) or not all(isinstance(t, dict) for t in conversation):
            raise DatasetError(f"{where}: 'conversation' must be a list of {{role, content}} turns")
        return cls(
            id=qid or where,
            question=question,
            role=role,
            market=market,
            conversation=[{"role": str(t.get("role", "user")), "content": str(t.get("content", ""))} for t in conversation],
            doc=record.get("doc") or None,
            evidence=record.get("evidence") or None,
            answers=[str(a) for a in answers if str(a).strip()],
            must_include=[(item,) if isinstance(item, str) else tuple(item) for item in must_include],
            must_not_include=list(must_not_include),
            answerable=bool(record.get("answerable", True)),
            restricted=bool(record.get("restricted", False)),
            category=str(record.get("category") or "other"),
            filters={str(k): str(v) for k, v in (record.get("filters") or {}).items() if v},
        )


@dataclass(frozen=True)
class Dataset:
    """A named question set and, when it has one, the documents it was written against."""

    name: str
    questions: list[EvalQuestion]
    docs: Path | None = None

    def sample(self, n: int | None, seed: int = 0) -> Dataset:
        """A fixed random subset (original order kept), so runs with the same ``n`` are comparable."""
        if not n or n >= len(self.questions):
            return self
        picked = sorted(random.Random(seed).sample(range(len(self.questions)), n))
        return Dataset(self.name, [self.questions[i] for i in picked], self.docs)


def read_jsonl(path: Path) -> list[EvalQuestion]:
    """Questions from a JSONL file in the one format (blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name}:{number}: not valid JSON ({exc.msg})") from exc
        out.append(EvalQuestion.from_record(record, f"{path.name}:{number}"))
    if not out:
        raise DatasetError(f"{path} holds no questions")
    ids = [q.id for q in out]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path.name}: question ids are not unique")
    return out


def load_demo(name: str = "demo") -> Dataset:
    """A question set of the demo knowledge base (``demo`` or ``adversarial``), with the demo documents."""
    from kb.bundled import demo_docs_path

    if name not in DEMO_SETS:
        raise DatasetError(f"{name!r} is not a demo question set (use one of: {', '.join(DEMO_SETS)})")
    return Dataset(name, read_jsonl(bundled_path(name)), demo_docs_path())


def load_policyqa(folder: Path = POLICYQA_DIR, filtered: bool = True) -> Dataset:
    """PolicyQA (dev) converted to the one format.

    Its policies have no front matter, so they ingest as ``internal`` and are asked with role
    internal. Each question is about one site's policy: with ``filtered`` the per-question
    filter is that document, as a brand filter would be in a deployment; without it the whole
    knowledge base is searched (the dataset asks for both).
    """
    path = folder / "questions.jsonl"
    if not path.is_file():
        raise DatasetError(f"PolicyQA not found at {folder} (expected questions.jsonl and docs/)")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        doc_id = slugify(Path(raw["doc"]).stem)
        record = {
            "id": raw.get("id") or f"policyqa-{number}",
            "question": raw["question"],
            "role": "internal",
            "doc": doc_id,
            "evidence": raw.get("evidence"),
            "answers": raw.get("answers") or [],
            "answerable": True,
            "category": raw.get("category") or "other",
            "filters": {"doc_id": doc_id} if filtered else {},
        }
        questions.append(EvalQuestion.from_record(record, f"{path.name}:{number}"))
    return Dataset("policyqa" if filtered else "policyqa-unfiltered", questions, folder / "docs")


def load_dataset(name_or_path: str, policyqa_dir: Path = POLICYQA_DIR) -> Dataset:
    """``demo``, ``adversarial``, ``policyqa[-unfiltered]``, a PolicyQA-format folder, a bundled set by name, or a JSONL path."""
    if name_or_path in DEMO_SETS:
        return load_demo(name_or_path)
    if name_or_path in ("policyqa", "policyqa-unfiltered"):
        return load_policyqa(policyqa_dir, filtered=name_or_path == "policyqa")
    path = Path(name_or_path)
    if path.is_dir():
        return load_policyqa(path)
    if path.suffix == ".jsonl" or path.exists():
        return Dataset(path.stem, read_jsonl(path), None)
    bundled = bundled_path(name_or_path)
    if bundled.is_file():
        return Dataset(name_or_path, read_jsonl(bundled), None)
    raise DatasetError(
        f"unknown dataset {name_or_path!r} (use {', '.join(dataset_names())}, or a path to a .jsonl file)"
    )

"""One evaluation run: ask every question once, keep what happened, score it.

Why the run asks with the refusal threshold at 0: each question's confidence (the calibrated
probability that its answer is right) is recorded with the answer it would get, so the metrics
at the configured threshold and the whole deflection / false-deflection curve are derived from
one pass instead of one pass per threshold.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from assist.access import Filters
from assist.markets import mentioned_market
from assist.service import Assistant
from eval.baseline import TOP_K as BASELINE_K
from eval.baseline import LangChainBaseline
from eval.datasets import Dataset, EvalQuestion
from eval.judge import LLMJudge
from eval.metrics import QUALITY_METRICS, Passage, Sample, cost, sample_reliability, summarise, threshold_curve
from kb.settings import Settings
from kb.store import KnowledgeStore

log = logging.getLogger(__name__)

RETRIEVE_K = 10
SCHEMA = 1
Progress = Callable[[int, int], None]


@dataclass
class Record:
    """One question's outcome for one system, as written to details.jsonl."""

    system: str
    id: str
    question: str
    role: str
    market: str
    category: str
    must_refuse: bool
    gold_doc: str | None
    evidence: str | None
    answers: list[str]
    confidence: float
    answered0: bool
    answer: str | None
    ranked: list[dict[str, str]]
    cited: list[dict[str, str]]
    latency_ms: float
    deflection_scope: bool
    search_query: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    judged_groundedness: float | None = None
    must_include: list[list[str]] = field(default_factory=list)
    must_not_include: list[str] = field(default_factory=list)

    def sample(self, threshold: float, related_at: float | None = None) -> Sample:
        return Sample(
            id=self.id,
            role=self.role,
            category=self.category,
            market=self.market,
            must_refuse=self.must_refuse,
            gold_doc=self.gold_doc,
            evidence=self.evidence,
            answers=tuple(self.answers),
            confidence=self.confidence,
            answered0=self.answered0,
            answer=self.answer,
            ranked=tuple(Passage(p["doc_id"], p["text"]) for p in self.ranked),
            cited=tuple(Passage(p["doc_id"], p["text"]) for p in self.cited),
            latency_ms=self.latency_ms,
            deflection_scope=self.deflection_scope,
            threshold=threshold,
            usage=self.usage,
            judged_groundedness=self.judged_groundedness,
            must_include=tuple(tuple(item) for item in self.must_include),
            must_not_include=tuple(self.must_not_include),
            related_at=related_at,
        )


def deflection_scope(dataset: Dataset) -> Callable[[EvalQuestion], bool]:
    """Which questions count towards deflection: customers' when the set has any, else all.

    A set asked entirely by one non-customer role (PolicyQA: visitors of a site, asked as
    internal because its policies carry no audience) still gets a deflection figure.
    """
    if any(q.role == "customer" for q in dataset.questions):
        return lambda q: q.role == "customer"
    return lambda q: True


def _filters(q: EvalQuestion) -> Filters:
    f = q.filters
    return Filters(market=q.market, language=f.get("language"), product=f.get("product"), doc_id=f.get("doc_id"))


def run_kbassist(
    dataset: Dataset, store: KnowledgeStore, settings: Settings, progress: Progress | None = None
) -> list[Record]:
    """Ask every question through the service, as a user would, and retrieve its top 10 to rank."""
    assistant = Assistant(store, settings.model_copy(update={"confidence_threshold": 0.0}))
    in_scope = deflection_scope(dataset)
    records = []
    for i, q in enumerate(dataset.questions):
        filters = _filters(q)
        answer = assistant.ask(q.question, role=q.role, market=q.market, conversation=q.conversation, filters=filters)
        market = mentioned_market(answer.search_query) or q.market
        ranked_filters = Filters(market, filters.language, filters.product, filters.doc_id)
        ranked = assistant.retriever.retrieve(answer.search_query, q.role, ranked_filters, k=RETRIEVE_K)
        answered = not answer.refused
        records.append(
            Record(
                system="kbassist",
                id=q.id,
                question=q.question,
                role=q.role,
                market=q.market or "ALL",
                category=q.category,
                must_refuse=q.must_refuse,
                gold_doc=q.doc,
                evidence=q.evidence,
                answers=q.answers,
                confidence=round(answer.confidence, 4),
                answered0=answered,
                answer=answer.text if answered else "",
                ranked=[{"doc_id": p.doc_id, "chunk_id": p.chunk_id, "text": p.text} for p in ranked.passages],
                cited=[{"doc_id": c.doc_id, "chunk_id": c.chunk_id, "text": c.passage} for c in answer.citations]
                if answered
                else [],
                latency_ms=round(answer.latency_ms, 2),
                deflection_scope=in_scope(q),
                search_query=answer.search_query,
                usage=dict(answer.usage),
                flags=list(answer.flags),
                must_include=[list(item) for item in q.must_include],
                must_not_include=list(q.must_not_include),
            )
        )
        if progress:
            progress(i + 1, len(dataset.questions))
    return records


def run_baseline(
    dataset: Dataset, baseline: LangChainBaseline, progress: Progress | None = None
) -> list[Record]:
    """The LangChain pipeline over the same questions: retrieval only, it never refuses."""
    in_scope = deflection_scope(dataset)
    records = []
    for i, q in enumerate(dataset.questions):
        started = time.perf_counter()
        hits = baseline.search(q.question, q.role, _filters(q), k=BASELINE_K)
        latency = (time.perf_counter() - started) * 1000
        passages = [{"doc_id": h.doc_id, "text": h.text} for h in hits]
        records.append(
            Record(
                system="langchain_baseline",
                id=q.id,
                question=q.question,
                role=q.role,
                market=q.market or "ALL",
                category=q.category,
                must_refuse=q.must_refuse,
                gold_doc=q.doc,
                evidence=q.evidence,
                answers=q.answers,
                confidence=1.0,
                answered0=bool(hits),
                answer=None,
                ranked=passages,
                cited=passages,
                latency_ms=round(latency, 2),
                deflection_scope=in_scope(q),
                search_query=q.question,
                must_include=[list(item) for item in q.must_include],
                must_not_include=list(q.must_not_include),
            )
        )
        if progress:
            progress(i + 1, len(dataset.questions))
    return records


def judge_records(records: Sequence[Record], judge: LLMJudge, progress: Progress | None = None) -> dict[str, Any]:
    """Have the model judge every answered record's sentences against its citations (after timing)."""
    answered = [r for r in records if r.answered0 and r.answer]
    for i, r in enumerate(answered):
        r.judged_groundedness = judge.groundedness(r.answer or "", [p["text"] for p in r.cited])
        if progress:
            progress(i + 1, len(answered))
    return {"model": judge.settings.llm_model, "judged": len(answered), "unreadable": judge.unreadable}


def breakdowns(samples: Sequence[Sample], seed: int = 0) -> dict[str, dict[str, dict]]:
    """The same metrics per category, role and market."""
    out: dict[str, dict[str, dict]] = {}
    for key in ("category", "role", "market"):
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in samples:
            groups[getattr(s, key)].append(s)
        out[key] = {name: {"n": len(g), **summarise(g, seed=seed)} for name, g in sorted(groups.items())}
    return out


def score_system(
    records: Sequence[Record],
    threshold: float,
    seed: int = 0,
    with_breakdowns: bool = True,
    related_at: float | None = None,
) -> dict:
    """Overall metrics at ``threshold``, breakdowns, and the threshold curve for one system."""
    samples = [r.sample(threshold, related_at) for r in records]
    result: dict[str, Any] = {"questions": len(samples), "overall": summarise(samples, seed=seed)}
    if with_breakdowns:
        result["breakdowns"] = breakdowns(samples, seed=seed)
    result["threshold_curve"] = threshold_curve(samples)
    result["reliability"] = sample_reliability(samples)
    return result


@dataclass
class RunResult:
    dataset: str
    threshold: float
    records: dict[str, list[Record]]
    info: dict[str, Any]

    def results(self, threshold: float | None = None, seed: int = 0) -> dict[str, Any]:
        """The results.json document at ``threshold`` (default: the configured one)."""
        threshold = self.threshold if threshold is None else threshold
        systems: dict[str, Any] = {}
        for name, records in self.records.items():
            kb = name == "kbassist"
            related_at = self.info.get("settings", {}).get("related_threshold") if kb else None
            systems[name] = score_system(records, threshold, seed, with_breakdowns=kb, related_at=related_at)
        kb = systems.get("kbassist")
        if kb is not None:
            spent = cost(
                [r.sample(threshold) for r in self.records["kbassist"]],
                self.info.get("usd_per_1k_prompt"),
                self.info.get("usd_per_1k_completion"),
            )
            kb["llm"] = asdict(spent) if spent else None
        return {
            "schema": SCHEMA,
            "dataset": self.dataset,
            "threshold": threshold,
            "headline": headline(systems),
            "systems": systems,
            "run": self.info,
        }


HEADLINE = (
    "hit@5",
    "mrr@10",
    "f1",
    "span_containment",
    "answer_correct",
    "citation_precision",
    "groundedness",
    "groundedness_llm",
    "refusal_precision",
    "refusal_recall",
    "false_refusal",
    "deflection",
    "false_deflection",
    "latency_p95_ms",
)


def headline(systems: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    return {
        name: {m: system["overall"][m]["value"] for m in HEADLINE if m in system["overall"]}
        for name, system in systems.items()
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("kbassist", "chromadb", "langchain-chroma"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_eval(
    dataset: Dataset,
    store: KnowledgeStore,
    settings: Settings | None = None,
    baseline: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    workdir: Path | None = None,
    judge: bool | None = None,
) -> RunResult:
    """Run kbassist (and optionally the LangChain baseline) over ``dataset`` against ``store``.

    The baseline needs the dataset's documents (it builds its own index from them). ``judge``
    (default: when a language-model endpoint is configured) adds the model-judged groundedness.
    """
    settings = settings or store.settings
    started = time.perf_counter()
    records = {
        "kbassist": run_kbassist(dataset, store, settings, (lambda d, t: progress("kbassist", d, t)) if progress else None)
    }
    gate = Assistant(store, settings).gate
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "questions": len(dataset.questions),
        "documents": len(store.documents()),
        "chunks": store.chunk_count(),
        "generator": Assistant(store, settings).generator.name,
        "settings": {
            "confidence_threshold": gate.answer_at,
            "related_threshold": gate.related_at,
            "models_dir": str(settings.models_dir) if settings.models_dir else None,
            **{k: getattr(settings, k) for k in ("top_k", "candidates", "rerank", "chunk_max_tokens", "chunk_overlap_tokens")},
        },
        "usd_per_1k_prompt": settings.llm_usd_per_1k_prompt_tokens,
        "usd_per_1k_completion": settings.llm_usd_per_1k_completion_tokens,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": _versions(),
        "metrics": [m.name for m in QUALITY_METRICS],
    }
    if judge is None:
        judge = bool(settings.llm_base_url)
    if judge:
        info["judge"] = judge_records(
            records["kbassist"], LLMJudge(settings), (lambda d, t: progress("judge", d, t)) if progress else None
        )
    if baseline:
        if dataset.docs is None:
            raise ValueError("the baseline needs the dataset's documents (give --docs)")
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            built = LangChainBaseline.build(dataset.docs, store.embedder, Path(tmp))
            info["baseline"] = {"chunks": built.chunks, "ingest_s": round(built.ingest_s, 2)}
            records["langchain_baseline"] = run_baseline(
                dataset, built, (lambda d, t: progress("baseline", d, t)) if progress else None
            )
            del built
    info["seconds"] = round(time.perf_counter() - started, 1)
    return RunResult(dataset.name, gate.answer_at, records, info)


def write_run(result: RunResult, out: Path, trim_passages: int | None = None) -> dict[str, Any]:
    """Write results.json, details.jsonl and report.html into ``out``; returns the results.

    ``trim_passages`` cuts each stored passage text to that many characters (large sets).
    """
    from eval.report import render_report

    out.mkdir(parents=True, exist_ok=True)
    results = result.results()
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / "details.jsonl").open("w", encoding="utf-8") as fh:
        for records in result.records.values():
            for r in records:
                row = asdict(r)
                sample = r.sample(result.threshold)
                row["refused"] = not sample.answered
                for kind in ("ranked", "cited"):
                    for p, passage in zip(row[kind], getattr(sample, kind), strict=True):
                        p["relevant"] = sample.relevant(passage)
                row["doc_ids"] = sorted({p["doc_id"] for p in r.ranked[: result.info["settings"]["top_k"]]})
                if trim_passages is not None:
                    for p in (*row["ranked"], *row["cited"]):
                        p["text"] = p["text"][:trim_passages]
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "report.html").write_text(render_report(results, result.records), encoding="utf-8")
    return results


def load_details(run: Path) -> list[dict[str, Any]]:
    path = run / "details.jsonl" if run.is_dir() else run
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

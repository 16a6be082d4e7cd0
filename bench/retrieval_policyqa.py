"""Retrieval quality and latency on PolicyQA (dev), kbassist beside a plain LangChain pipeline.

Why: the retrieval targets (evidence hit@5 with and without the per-question document filter,
a margin over what a user would otherwise build, answer latency) must be measured on real data,
side by side in one run, and committed as data. Run:

    python bench/retrieval_policyqa.py --out bench/results/retrieval_policyqa.json

A retrieved chunk is a hit when it contains the gold evidence segment or a gold answer span
(whitespace- and case-normalised), as the dataset's README defines.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine

from assist.access import Filters
from assist.service import Assistant
from eval.baseline import LangChainBaseline
from ingest.clean import clean_text
from ingest.loaders import slugify
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore

DATASET = Path(__file__).resolve().parents[2] / "shared" / "eval" / "policyqa-dev"
KS = (1, 3, 5, 10)


def norm(text: str) -> str:
    return " ".join(clean_text(text).lower().split())


def is_hit(chunk: str, evidence: str, answers: list[str]) -> tuple[bool, bool]:
    """(evidence-or-span hit, answer-span hit) for one retrieved chunk."""
    text = norm(chunk)
    span = any(norm(a) in text for a in answers if a.strip())
    return norm(evidence) in text or span, span


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def score(rankings: list[list[str]], questions: list[dict[str, Any]]) -> dict[str, float]:
    hits = {k: 0 for k in KS}
    span5 = 0
    mrr = 0.0
    for ranked, q in zip(rankings, questions, strict=True):
        flags = [is_hit(text, q["evidence"], q["answers"]) for text in ranked]
        first = next((i for i, (hit, _) in enumerate(flags) if hit), None)
        for k in KS:
            hits[k] += first is not None and first < k
        span5 += any(span for _, span in flags[:5])
        mrr += 1.0 / (first + 1) if first is not None and first < 10 else 0.0
    n = len(questions)
    out = {f"hit@{k}": round(hits[k] / n, 4) for k in KS}
    out["answer_span_hit@5"] = round(span5 / n, 4)
    out["mrr@10"] = round(mrr / n, 4)
    return out


def run_kbassist(store: KnowledgeStore, questions: list[dict[str, Any]], filtered: bool) -> tuple[dict, list[float]]:
    assistant = Assistant(store)
    rankings: list[list[str]] = []
    latencies: list[float] = []
    for q in questions:
        filters = Filters(doc_id=slugify(Path(q["doc"]).stem)) if filtered else Filters()
        started = time.perf_counter()
        retrieval = assistant.retriever.retrieve(q["question"], "internal", filters, k=10)
        rankings.append([p.text for p in retrieval.passages])
        latencies.append((time.perf_counter() - started) * 1000)
    return score(rankings, questions), latencies


def answer_latency(store: KnowledgeStore, questions: list[dict[str, Any]]) -> list[float]:
    """Retrieve + extractive answer, end to end through the service, as a user would call it."""
    assistant = Assistant(store)
    out = []
    for q in questions:
        started = time.perf_counter()
        assistant.ask(q["question"], role="internal", filters=Filters(doc_id=slugify(Path(q["doc"]).stem)))
        out.append((time.perf_counter() - started) * 1000)
    return out


def run_langchain(store: KnowledgeStore, docs: Path, questions: list[dict[str, Any]], workdir: Path) -> dict:
    """The plain LangChain baseline (defined once, in eval/baseline.py), scored the bench's way."""
    baseline = LangChainBaseline.build(docs, store.embedder, workdir)
    result: dict[str, Any] = {"chunks": baseline.chunks, "ingest_s": round(baseline.ingest_s, 2)}
    for filtered in (True, False):
        rankings, latencies = [], []
        for q in questions:
            filters = Filters(doc_id=slugify(Path(q["doc"]).stem)) if filtered else None
            t = time.perf_counter()
            found = baseline.search(q["question"], "internal", filters)
            latencies.append((time.perf_counter() - t) * 1000)
            rankings.append([hit.text for hit in found])
        key = "filtered" if filtered else "unfiltered"
        result[key] = score(rankings, questions)
        result[key]["p50_ms"] = round(percentile(latencies, 50), 2)
        result[key]["p95_ms"] = round(percentile(latencies, 95), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--sample", type=int, default=0, help="Evaluate a fixed random sample (seed 0); 0 = all.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrieval_policyqa.json"))
    args = parser.parse_args()

    questions = [json.loads(line) for line in (args.dataset / "questions.jsonl").read_text().splitlines() if line]
    if args.sample:
        questions = random.Random(0).sample(questions, args.sample)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data")
        store = KnowledgeStore(settings)
        report = ingest([args.dataset / "docs"], store)
        print(f"kbassist ingest: {report.summary()}", file=sys.stderr)
        results: dict[str, Any] = {
            "dataset": "policyqa-dev",
            "questions": len(questions),
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "settings": {
                "chunk_max_tokens": settings.chunk_max_tokens,
                "chunk_overlap_tokens": settings.chunk_overlap_tokens,
                "candidates": settings.candidates,
                "rerank": settings.rerank,
            },
            "kbassist": {"chunks": store.chunk_count(), "ingest_s": round(report.seconds, 2)},
        }
        for filtered in (True, False):
            metrics, latencies = run_kbassist(store, questions, filtered)
            metrics["retrieve_p50_ms"] = round(percentile(latencies, 50), 2)
            metrics["retrieve_p95_ms"] = round(percentile(latencies, 95), 2)
            results["kbassist"]["filtered" if filtered else "unfiltered"] = metrics
            print(f"kbassist {'filtered' if filtered else 'unfiltered'}: {metrics}", file=sys.stderr)
        latencies = answer_latency(store, questions[:500])
        results["kbassist"]["answer_p50_ms"] = round(statistics.median(latencies), 2)
        results["kbassist"]["answer_p95_ms"] = round(percentile(latencies, 95), 2)
        results["langchain_baseline"] = run_langchain(store, args.dataset / "docs", questions, work)
        print(f"langchain: {results['langchain_baseline']}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

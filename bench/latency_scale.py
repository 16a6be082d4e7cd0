"""Answer latency (retrieve + extractive answer) as the knowledge base grows to 1k and 10k chunks.

Why: the assistant is used during live contacts, so p95 latency at realistic sizes matters
(target: p95 <= 100 ms at 10k chunks on 2 cores). The corpus is PolicyQA plus the demo KB,
ingested for real once; larger stores replicate those chunks (and their vectors) under new
document ids, so the vector index and the BM25 index really hold N chunks. Replicas repeat text,
which makes near-duplicate removal work harder than on a natural corpus: a conservative setup.

    python bench/latency_scale.py --out bench/results/latency_scale.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine
from retrieval_policyqa import DATASET, percentile

from assist.service import Assistant
from ingest.pipeline import ingest
from kb.models import Chunk, DocumentRecord
from kb.settings import Settings
from kb.store import KnowledgeStore
from kbassist_cli import demo_docs_path

SIZES = (1_000, 10_000)


def grow(source: KnowledgeStore, target: KnowledgeStore, size: int) -> None:
    """Fill ``target`` with ``size`` chunks replicated from ``source`` under new document ids."""
    got = source.chunks.get(include=["documents", "metadatas", "embeddings"])
    base = [
        (i, d, m, e)
        for i, d, m, e in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
    ]
    copy = 0
    written = 0
    while written < size:
        part = base[: size - written]
        by_doc: dict[str, list[tuple[str, str, dict, np.ndarray]]] = {}
        for chunk_id, text, meta, vector in part:
            doc_id = f"{meta['doc_id']}~{copy}"
            by_doc.setdefault(doc_id, []).append((f"{chunk_id}~{copy}", text, {**meta, "doc_id": doc_id}, vector))
        for doc_id, rows in by_doc.items():
            chunks = [Chunk(i, t, m) for i, t, m, _ in rows]
            record = DocumentRecord(
                doc_id,
                doc_id,
                f"copy{copy}",
                len(rows),
                "",
                "markdown",
                audience=str(rows[0][2].get("audience", "internal")),
            )
            target.replace_document(record, chunks, np.array([v for *_, v in rows]))
        written += len(part)
        copy += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/latency_scale.json"))
    args = parser.parse_args()
    lines = (DATASET / "questions.jsonl").read_text().splitlines()
    questions = [json.loads(x)["question"] for x in random.Random(3).sample([x for x in lines if x], args.questions)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = KnowledgeStore(Settings(data_dir=Path(tmp) / "source"))
        ingest([DATASET / "docs", demo_docs_path()], source)
        for size in SIZES:
            store = KnowledgeStore(Settings(data_dir=Path(tmp) / str(size)))
            grow(source, store, size)
            assistant = Assistant(store)
            assistant.ask(questions[0], role="internal")  # warm: model loaded, BM25 index built
            latencies = []
            for q in questions:
                started = time.perf_counter()
                assistant.ask(q, role="internal")
                latencies.append((time.perf_counter() - started) * 1000)
            row = {
                "chunks": store.chunk_count(),
                "p50_ms": round(percentile(latencies, 50), 1),
                "p95_ms": round(percentile(latencies, 95), 1),
                "p99_ms": round(percentile(latencies, 99), 1),
            }
            rows.append(row)
            print(row, file=sys.stderr)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "questions": len(questions), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

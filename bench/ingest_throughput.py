"""Ingest throughput against the raw speed of the embedding model, which is the limit on CPU.

Why: ingest should cost little more than embedding its chunks (target: within 1.2x). For each
corpus this script chunks the documents once, times the embedder alone on those chunks, then
times a full ingest (load, clean, chunk, embed, write to Chroma, registry) into a fresh store.

    python bench/ingest_throughput.py --out bench/results/ingest_throughput.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine

from ingest.chunker import ChunkSpec, chunk_text
from ingest.loaders import load_document
from ingest.pipeline import discover, ingest
from kb.bundled import demo_docs_path
from kb.settings import Settings
from kb.store import KnowledgeStore

POLICYQA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "policyqa-dev" / "docs"


def measure(name: str, folder: Path, work: Path) -> dict[str, object]:
    settings = Settings(data_dir=work / name)
    store = KnowledgeStore(settings)
    spec = ChunkSpec(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    sources = discover([folder]).sources
    texts: list[str] = []
    for source in sources:
        doc = load_document(source.path, source.root, 10**9)
        texts.extend(c.text for c in chunk_text(doc.doc_id, doc.text, doc.metadata["title"], spec))
    store.embedder.embed(texts[:8])  # load the model outside the timings
    started = time.perf_counter()
    store.embedder.embed(texts)
    embed_s = time.perf_counter() - started
    report = ingest([folder], store)
    assert report.ok, [str(e) for e in report.errors]
    rerun = ingest([folder], store)
    return {
        "corpus": name,
        "documents": len(sources),
        "chunks": len(texts),
        "raw_embed_s": round(embed_s, 2),
        "raw_embed_chunks_per_s": round(len(texts) / embed_s, 1),
        "ingest_s": round(report.seconds, 2),
        "ingest_chunks_per_s": round(report.chunks_written / report.seconds, 1),
        "ingest_over_embed": round(report.seconds / embed_s, 3),
        "unchanged_rerun_s": round(rerun.seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest_throughput.json"))
    args = parser.parse_args()
    corpora = [("demo-kb", demo_docs_path())] + ([("policyqa-dev", POLICYQA)] if POLICYQA.is_dir() else [])
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, folder, Path(tmp)) for name, folder in corpora]
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "target_ingest_over_embed": 1.2, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Ingest throughput ({result['date']})",
        "",
        f"Machine: {result['machine']}",
        "",
        "| corpus | docs | chunks | raw embed s | raw chunks/s | ingest s | ingest chunks/s | ingest / embed | unchanged re-run s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['documents']} | {r['chunks']} | {r['raw_embed_s']} | {r['raw_embed_chunks_per_s']} | "
            f"{r['ingest_s']} | {r['ingest_chunks_per_s']} | {r['ingest_over_embed']} | {r['unchanged_rerun_s']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

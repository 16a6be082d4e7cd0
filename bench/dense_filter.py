"""Dense search cost by scope: Chroma's metadata pre-filter against what the retriever does instead.

Why: a role-scoped or filtered question used to be one Chroma query with a ``where`` clause,
whose cost grows with the collection. The retriever now scores a small scope exactly from its
stored vectors, and over-fetches nearest ids without a clause for a broad one, keeping those
the role's index admits (assist/retrieval.py). This measures both, per scope, on the stores
bench/scale.py builds, and checks that they return the same passages: each method's recall of
the exact nearest neighbours (brute force over every chunk the scope admits).

    python bench/dense_filter.py --stores /tmp/kbassist-scale/stores --out bench/results/dense_filter.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from common import machine  # noqa: E402
from retrieval_policyqa import DATASET, percentile  # noqa: E402

from assist import retrieval  # noqa: E402
from assist.access import Filters, where_clause  # noqa: E402
from assist.retrieval import HybridRetriever  # noqa: E402
from kb.settings import Settings  # noqa: E402
from kb.store import KnowledgeStore  # noqa: E402

SCOPES: list[tuple[str, str, Filters]] = [
    ("internal, no filter", "internal", Filters()),
    ("customer", "customer", Filters()),
    ("agent", "agent", Filters()),
    ("customer, market SE", "customer", Filters(market="SE")),
    ("agent, market DE", "agent", Filters(market="DE")),
    ("internal, one document", "internal", Filters(doc_id="pay-in-3")),
]
N = 20  # candidates per search, as the retriever asks for (settings.candidates)


def exact_neighbours(store: KnowledgeStore, where: dict[str, Any] | None, vectors: np.ndarray) -> list[set[str]]:
    """The true ``N`` nearest admitted chunks of each vector, by brute force over stored embeddings."""
    ids: list[str] = []
    parts: list[np.ndarray] = []
    offset = 0
    while True:
        got = store.chunks.get(where=where, include=["embeddings"], limit=5000, offset=offset)
        if not got["ids"]:
            break
        ids += got["ids"]
        parts.append(np.asarray(got["embeddings"], dtype=np.float32))
        offset += len(got["ids"])
    matrix = np.vstack(parts)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    sims = vectors @ matrix.T
    return [{ids[i] for i in np.argsort(-row)[:N]} for row in sims]


def measure(store_dir: Path, questions: list[str]) -> dict[str, Any]:
    store = KnowledgeStore(Settings(data_dir=store_dir))
    retriever = HybridRetriever(store)
    vectors = store.embedder.embed(questions)
    out: dict[str, Any] = {"chunks": store.chunk_count(), "scopes": {}}
    for name, role, filters in SCOPES:
        index = retriever.lexical.for_role(role)
        where = where_clause(role, filters)
        admitted = index.admitted(filters)
        share = (len(index.ids) if admitted is None else int(admitted.sum())) / max(out["chunks"], 1)
        truth = exact_neighbours(store, where, np.asarray(vectors))
        chroma, ours, same = [], [], 0
        recall_chroma, recall_ours = [], []
        for vector, exact in zip(vectors, truth, strict=True):
            t = time.perf_counter()
            expected = store.query(vector, n_results=N, where=where)
            chroma.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            got, _ = retriever._dense(vector, N, index, filters, where)
            ours.append((time.perf_counter() - t) * 1000)
            same += [h[0] for h in got] == [h[0] for h in expected]
            recall_chroma.append(len(exact & {h[0] for h in expected}) / len(exact))
            recall_ours.append(len(exact & {h[0] for h in got}) / len(exact))
        in_scope = share * out["chunks"]
        fetch = N * retrieval.OVERFETCH * out["chunks"] / max(in_scope, 1)
        path = (
            "over-fetch"
            if fetch <= retrieval.MAX_OVERFETCH
            else "exact"
            if in_scope <= retrieval.EXACT_MAX
            else "where"
        )
        out["scopes"][name] = {
            "admitted": round(share * out["chunks"]),
            "share_admitted": round(share, 3),
            "kbassist_path": path,
            "chroma_where_ms": {"p50": round(statistics.median(chroma), 1), "p95": round(percentile(chroma, 95), 1)},
            "kbassist_ms": {"p50": round(statistics.median(ours), 1), "p95": round(percentile(ours, 95), 1)},
            "identical_results": f"{same}/{len(vectors)}",
            "recall_at_20_vs_exact": {
                "chroma_where": round(statistics.fmean(recall_chroma), 3),
                "kbassist": round(statistics.fmean(recall_ours), 3),
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=Path, default=Path("/tmp/kbassist-scale/stores"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--questions", type=int, default=100, help="PolicyQA dev questions (seeded sample).")
    parser.add_argument("--out", type=Path, default=Path("bench/results/dense_filter.json"))
    parser.add_argument(
        "--overfetch", type=float, default=retrieval.OVERFETCH, help="Over-fetch factor (default: %(default)s)."
    )
    args = parser.parse_args()
    retrieval.OVERFETCH = args.overfetch
    pool = [json.loads(x)["question"] for x in (DATASET / "questions.jsonl").read_text().splitlines() if x]
    questions = random.Random(7).sample(pool, args.questions)
    rows = [measure(args.stores / str(size), questions) for size in args.sizes]
    result = {
        "benchmark": "dense_filter",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "overfetch": args.overfetch,
        "candidates": N,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Dense search by scope: Chroma `where` against over-fetch ({result['date']})",
        "",
        f"Machine: {result['machine']}. {args.questions} PolicyQA questions, {N} candidates per search, "
        f"over-fetch factor {args.overfetch}.",
        "",
        "| chunks | scope | admitted (share) | Chroma where p50 / p95 ms | kbassist path | kbassist p50 / p95 ms "
        "| recall@20 vs exact: where / kbassist | same list |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name, m in row["scopes"].items():
            lines.append(
                f"| {row['chunks']:,} | {name} | {m['admitted']:,} ({m['share_admitted']}) | "
                f"{m['chroma_where_ms']['p50']} / {m['chroma_where_ms']['p95']} | {m['kbassist_path']} | "
                f"{m['kbassist_ms']['p50']} / {m['kbassist_ms']['p95']} | "
                f"{m['recall_at_20_vs_exact']['chroma_where']} / {m['recall_at_20_vs_exact']['kbassist']} | "
                f"{m['identical_results']} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

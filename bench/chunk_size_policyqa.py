"""Evidence hit@k on PolicyQA for several chunk bounds: how the default chunk size was chosen.

Why: chunk size trades retrieval recall (a bigger chunk contains the evidence more often) against
citation precision and answer extraction (a smaller chunk points at the exact passage). This
measures the first half on real data; the choice and its reason are recorded with the results.

    python bench/chunk_size_policyqa.py --sample 600 --out bench/results/chunk_size_policyqa.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine
from retrieval_policyqa import DATASET, score

from assist.access import Filters
from assist.retrieval import HybridRetriever
from ingest.loaders import slugify
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore

SIZES = ((128, 16), (256, 32), (384, 48), (512, 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=600, help="Fixed random sample of questions (seed 1).")
    parser.add_argument("--out", type=Path, default=Path("bench/results/chunk_size_policyqa.json"))
    args = parser.parse_args()
    questions = [json.loads(line) for line in (DATASET / "questions.jsonl").read_text().splitlines() if line]
    questions = random.Random(1).sample(questions, min(args.sample, len(questions)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for max_tokens, overlap in SIZES:
            settings = Settings(
                data_dir=Path(tmp) / str(max_tokens), chunk_max_tokens=max_tokens, chunk_overlap_tokens=overlap
            )
            store = KnowledgeStore(settings)
            report = ingest([DATASET / "docs"], store)
            retriever = HybridRetriever(store)
            row = {
                "max_tokens": max_tokens,
                "overlap": overlap,
                "chunks": store.chunk_count(),
                "ingest_s": round(report.seconds, 1),
            }
            for filtered in (True, False):
                rankings = []
                for q in questions:
                    filters = Filters(doc_id=slugify(Path(q["doc"]).stem)) if filtered else Filters()
                    rankings.append(
                        [p.text for p in retriever.retrieve(q["question"], "internal", filters, k=10).passages]
                    )
                row["filtered" if filtered else "unfiltered"] = score(rankings, questions)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "questions": len(questions),
        "seed": 1,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

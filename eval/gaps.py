"""Coverage gaps: what the knowledge base does not answer, and what in it needs an owner's eye.

Why: an evaluation says how good answers are; a KB owner needs to know what to write or fix
next. This report groups refused and low-confidence questions by meaning (so fifty wordings
of "can I pay in Bitcoin" are one gap), ranks the groups by volume, and lists documents no
question ever reached, documents past their review date, and chunks in different documents
that cover the same thing with different numbers.

Questions come from any iterable of records (eval runs' ``details.jsonl``, the app's logged
questions export), so a new source only needs to produce :class:`QuestionRecord`.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from assist.terms import terms
from kb.store import KnowledgeStore

CLUSTER_SIMILARITY = 0.55  # average-linkage cosine similarity at which two groups stop merging
LOW_CONFIDENCE_MARGIN = 0.05  # answered, but within this of the threshold
TOPIC_SIMILARITY = 0.55  # chunks at least this similar (cosine) are compared statement by statement
NEIGHBOURS = 5  # most similar chunks of other documents compared per chunk
PAGE = 256  # chunks read and queried at a time, so the check runs in bounded memory at any store size
NEAR_DUPLICATE = 0.92  # cosine similarity of chunks in different documents reported as near-duplicates
STATEMENT_OVERLAP = 0.4  # Jaccard of the subject terms of two aligned statements
CONTEXT_WORDS = 4  # content words before a number that say what the number is about
SHARED_CONTEXT = 2  # words two differing numbers' contexts must share to be about the same thing
MAX_QUESTIONS = 4000  # clustering is O(n²) in memory; the most recent questions beyond this are dropped

_UNIT_WORDS = {
    "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "month", "months", "year", "years",
    "tage", "tagen", "werktagen", "werktage", "monate", "monaten", "jahre", "jahren", "dagar", "månader", "år",
}
_QUALIFIERS = {"business", "working", "calendar", "bank"}
_QUANTITY = re.compile(r"(\d+(?:[.,]\d+)*)\s*(%|[A-Za-zÄÖÜäöüåÅ]+)(?:\s+([A-Za-zÄÖÜäöüåÅ]+))?")
_IDENTIFIER = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9]+$")
_MARKETS = {
    "SE": {"sweden", "swedish", "se", "sek", "sverige"},
    "DE": {"germany", "german", "de", "eur", "deutschland"},
}


@dataclass(frozen=True)
class QuestionRecord:
    """One asked question and what the assistant did with it."""

    question: str
    role: str = "customer"
    market: str | None = None
    refused: bool = False
    confidence: float = 0.0
    doc_ids: tuple[str, ...] = ()
    source: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> QuestionRecord:
        return cls(
            question=str(data.get("question", "")),
            role=str(data.get("role") or "customer"),
            market=data.get("market"),
            refused=bool(data.get("refused", False)),
            confidence=float(data.get("confidence") or 0.0),
            doc_ids=tuple(data.get("doc_ids") or ()),
            source=source,
        )


def latest_runs(root: Path) -> list[Path]:
    """The newest run per dataset under ``root`` (runs of the same set would count questions twice)."""
    newest: dict[str, tuple[float, Path]] = {}
    for results in root.glob("*/results.json"):
        try:
            name = json.loads(results.read_text(encoding="utf-8")).get("dataset", results.parent.name)
        except (OSError, ValueError):
            continue
        if not (results.parent / "details.jsonl").is_file():
            continue
        stamp = results.stat().st_mtime
        if name not in newest or stamp > newest[name][0]:
            newest[name] = (stamp, results.parent)
    return [p for _, p in sorted(newest.values())]


def records_from_runs(runs: Iterable[Path]) -> Iterator[QuestionRecord]:
    """kbassist's own records from evaluation runs (``details.jsonl``; baseline rows skipped)."""
    for run in runs:
        path = run / "details.jsonl" if run.is_dir() else run
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("system", "kbassist") == "kbassist":
                    yield QuestionRecord.from_dict(row, source=f"eval:{run.name}")


def records_from_jsonl(path: Path, source: str = "live") -> Iterator[QuestionRecord]:
    """Logged questions exported by the app (one JSON object a line)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield QuestionRecord.from_dict(json.loads(line), source=source)


def records_from_logged(questions: Iterable[Any], source: str = "live") -> Iterator[QuestionRecord]:
    """Questions straight from the state store (``kb.state.conversations.LoggedQuestion`` rows).

    Read directly rather than through an export, so the report always sees what was asked up to now.
    """
    for q in questions:
        yield QuestionRecord.from_dict(asdict(q) if is_dataclass(q) else dict(q), source=source)


# -- clustering -------------------------------------------------------------------------------------


@dataclass
class Cluster:
    label: str
    size: int
    questions: list[str]
    roles: dict[str, int]
    mean_confidence: float


def agglomerate(vectors: np.ndarray, min_similarity: float = CLUSTER_SIMILARITY) -> list[list[int]]:
    """Average-linkage agglomerative clustering of L2-normalised vectors (cosine), in numpy.

    With unit vectors the average pairwise similarity of two groups is ``sum_a · sum_b / (n_a n_b)``,
    so each merge updates one row of the group-similarity matrix. Merging stops when no two
    groups are on average at least ``min_similarity`` alike.
    """
    n = len(vectors)
    if n == 0:
        return []
    sums = vectors.astype(np.float64).copy()
    sizes = np.ones(n)
    members: list[list[int]] = [[i] for i in range(n)]
    sim = sums @ sums.T
    np.fill_diagonal(sim, -np.inf)
    alive = np.ones(n, dtype=bool)
    while alive.sum() > 1:
        flat = int(np.argmax(sim))
        a, b = divmod(flat, n)
        if sim[a, b] < min_similarity:
            break
        sums[a] += sums[b]
        sizes[a] += sizes[b]
        members[a].extend(members[b])
        members[b] = []
        alive[b] = False
        sim[b, :] = -np.inf
        sim[:, b] = -np.inf
        row = (sums @ sums[a]) / (sizes * sizes[a])
        row[~alive] = -np.inf
        row[a] = -np.inf
        sim[a, :] = row
        sim[:, a] = row
    return [m for m in members if m]


def cluster_questions(
    records: Sequence[QuestionRecord], store: KnowledgeStore, min_similarity: float = CLUSTER_SIMILARITY
) -> list[Cluster]:
    """Group the questions by meaning; each group named by its most central questions, largest first."""
    counts = Counter(" ".join(r.question.split()) for r in records if r.question.strip())
    texts = list(counts)[-MAX_QUESTIONS:]
    if not texts:
        return []
    by_text: dict[str, list[QuestionRecord]] = {}
    for r in records:
        by_text.setdefault(" ".join(r.question.split()), []).append(r)
    vectors = store.embedder.embed(texts)
    weights = np.array([counts[t] for t in texts], dtype=float)
    clusters = []
    for group in agglomerate(vectors, min_similarity):
        centroid = (vectors[group] * weights[group, None]).sum(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        central = sorted(group, key=lambda i: -float(vectors[i] @ centroid))
        rs = [r for i in group for r in by_text[texts[i]]]
        clusters.append(
            Cluster(
                label=" / ".join(texts[i] for i in central[:2]),
                size=len(rs),
                questions=[texts[i] for i in central[:5]],
                roles=dict(Counter(r.role for r in rs)),
                mean_confidence=round(float(np.mean([r.confidence for r in rs])), 3),
            )
        )
    return sorted(clusters, key=lambda c: (-c.size, c.label))


# -- documents --------------------------------------------------------------------------------------


def never_retrieved(store: KnowledgeStore, records: Iterable[QuestionRecord]) -> list[dict[str, str]]:
    seen = {d for r in records for d in r.doc_ids}
    return [
        {"doc_id": d.doc_id, "title": d.title, "audience": d.audience, "owner": d.owner}
        for d in store.documents()
        if d.doc_id not in seen
    ]


def stale_documents(store: KnowledgeStore, today: date | None = None) -> list[dict[str, str]]:
    today = today or date.today()
    return [
        {"doc_id": d.doc_id, "title": d.title, "review_by": d.review_by, "owner": d.owner, "version": d.version}
        for d in store.documents()
        if d.review_by and d.review_by < today.isoformat()
    ]


# -- conflicting and duplicated content -------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    doc_id: str
    chunk_id: str
    text: str
    subject: frozenset[str]
    quantities: dict[str, frozenset[str]]
    identifiers: frozenset[str]
    markets: frozenset[str]
    # unit → (value, what it is about): the words before each number in its clause; for a table
    # row, its cell (header and value) and the row's first cell (what the row is about).
    contexts: dict[str, tuple[tuple[str, frozenset[str]], ...]] = field(default_factory=dict)


def _unit(word: str, following: str | None) -> str | None:
    w = word.lower()
    if word == "%":
        return "%"
    if w in _QUALIFIERS and following and following.lower() in _UNIT_WORDS:
        return f"{w} {following.lower().rstrip('s')}"
    if w in _UNIT_WORDS:
        return w.rstrip("s")
    if len(word) == 3 and word.isupper():  # currency codes: SEK, EUR
        return word
    return None


def quantities(text: str) -> dict[str, frozenset[str]]:
    """Numbers with a unit (time spans, currency amounts, percentages), grouped by unit."""
    found: dict[str, set[str]] = {}
    for match in _QUANTITY.finditer(text):
        unit = _unit(match.group(2), match.group(3))
        if unit:
            found.setdefault(unit, set()).add(match.group(1).replace(",", ""))
    return {u: frozenset(v) for u, v in found.items()}


# Words that link a number to its subject without saying what it is ("within 8 days", "above 500").
_LINK_WORDS = frozenset(
    "within above below under over after before least most than more less per each up to goes is are max min".split()
)
@lru_cache(maxsize=16)
def _not_subject(language: str) -> frozenset[str]:
    """Linking words, units and market names, stemmed as ``language`` stems them."""
    words = " ".join(sorted(_LINK_WORDS | _UNIT_WORDS | _QUALIFIERS | {n for names in _MARKETS.values() for n in names}))
    return frozenset(terms(words, language)) | frozenset(terms(words))


def _subject_words(text: str, language: str = "en") -> list[str]:
    """Content words in the text's own language: its stop words ("du har ... på dig") say nothing."""
    skip = _not_subject(language)
    return [w for w in terms(text, language) if not w[0].isdigit() and w not in skip]


def value_contexts(text: str, row: bool = False, language: str = "en") -> dict[str, tuple[tuple[str, frozenset[str]], ...]]:
    """Each quantity of ``text`` with the words that say what it measures.

    In a sentence: the last CONTEXT_WORDS subject words before the number, within its clause
    (up to the previous ";" or ","). In a table row (``row``, cells joined by "; "): the words of
    the number's cell, its header included, and of the row's first cell.
    """
    found: dict[str, list[tuple[str, frozenset[str]]]] = {}
    cells = text.split("; ") if row else [text]
    key = frozenset(_subject_words(cells[0], language)) if row else frozenset()
    for cell in cells:
        for match in _QUANTITY.finditer(cell):
            unit = _unit(match.group(2), match.group(3))
            if not unit:
                continue
            if row:
                about = key | frozenset(_subject_words(cell, language))
            else:
                clause = re.split(r"[;,]\s", cell[: match.start()])[-1]
                about = frozenset(_subject_words(clause, language)[-CONTEXT_WORDS:])
            found.setdefault(unit, []).append((match.group(1).replace(",", ""), about))
    return {u: tuple(v) for u, v in found.items()}


def statements(chunk_id: str, doc_id: str, text: str, language: str = "en") -> list[Statement]:
    """Sentences and table rows (each row read with its header) that state a quantity, read in
    the document's ``language`` (its stop words and stems)."""
    out: list[str] = []
    rows: set[int] = set()
    header: list[str] | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            if header is None:
                header = cells
                continue
            rows.add(len(out))
            out.append("; ".join(f"{h}: {c}" for h, c in zip(header, cells, strict=False)))
        else:
            header = None
            out.extend(s for s in re.split(r"(?<=[.!?])\s+", stripped) if s)
    result = []
    for number, sentence in enumerate(out):
        q = quantities(sentence)
        if not q:
            continue
        words = _subject_words(sentence, language)
        identifiers = frozenset(w for w in words if _IDENTIFIER.match(w))
        lowered = set(re.findall(r"\w+", sentence.lower())) | {u.lower() for u in q}
        markets = frozenset(m for m, names in _MARKETS.items() if lowered & names)
        contexts = value_contexts(sentence, row=number in rows, language=language)
        result.append(Statement(doc_id, chunk_id, sentence, frozenset(words), q, identifiers, markets, contexts))
    return result


def _conflict(a: Statement, b: Statement) -> list[str]:
    """Units both statements give a value for, with no value in common."""
    if a.identifiers and b.identifiers and not (a.identifiers & b.identifiers):
        return []
    if a.markets and b.markets and not (a.markets & b.markets):
        return []
    return sorted(
        u
        for u in a.quantities.keys() & b.quantities.keys()
        if not a.quantities[u] & b.quantities[u] and _same_thing(a.contexts.get(u, ()), b.contexts.get(u, ()))
    )


def _same_thing(a: Sequence[tuple[str, frozenset[str]]], b: Sequence[tuple[str, frozenset[str]]]) -> bool:
    """Whether two differing values of one unit are said of the same thing (shared subject words).

    "acknowledges your escalation within 8 business hours" and a table row "Level: L2;
    Acknowledge within: 4 business hours" share "acknowledge" and "L2"; "the fraud pause lasts 60
    days" and "the payment is paused (21 days)" share only "pause", and are different pauses.
    """
    return any(va != vb and len(ca & cb) >= SHARED_CONTEXT for va, ca in a for vb, cb in b)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def content_conflicts(store: KnowledgeStore, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Near-duplicate chunks across documents, and aligned statements that give different numbers.

    Chunks of different documents on the same topic (embedding similarity) are compared
    statement by statement: each statement is aligned with its most similar statement in the
    other chunk (shared subject terms); the pair is a candidate contradiction when both give a
    value in the same unit, the values differ, and neither names a different market or level.
    """
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    similar: dict[tuple[int, int], float] = {}
    total = store.chunk_count()
    fetch = min(total, NEIGHBOURS * 4)  # over-fetch: neighbours from the chunk's own document are skipped
    for offset in range(0, total, PAGE):
        page = store.chunks.get(limit=PAGE, offset=offset, include=["embeddings", "metadatas"])
        if not page["ids"]:
            break
        found = store.chunks.query(
            query_embeddings=page["embeddings"], n_results=fetch, include=["documents", "metadatas", "distances"]
        )
        for own, own_meta, hits, hit_texts, hit_metas, dists in zip(
            page["ids"], page["metadatas"] or [], found["ids"], found["documents"] or [], found["metadatas"] or [],
            found["distances"] or [], strict=True,
        ):
            kept = 0
            for other, text, meta, dist in zip(hits, hit_texts, hit_metas, dists, strict=True):
                meta = dict(meta or {})
                if other == own or meta.get("doc_id") == (own_meta or {}).get("doc_id"):
                    continue
                if 1.0 - float(dist) < TOPIC_SIMILARITY or kept == NEIGHBOURS:
                    break
                kept += 1
                if other not in index or index[other] == -1:
                    index[other] = len(ids)
                    ids.append(other)
                    texts.append(text or "")
                    metas.append(meta)
                if own not in index:
                    index[own] = -1  # text fetched below, only for chunks that have a neighbour
                pair = (own, other) if own < other else (other, own)
                similar[pair] = max(similar.get(pair, 0.0), 1.0 - float(dist))
    missing = [c for c, i in index.items() if i == -1]
    for start in range(0, len(missing), PAGE):
        got = store.chunks.get(ids=missing[start : start + PAGE], include=["documents", "metadatas"])
        for chunk_id, text, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True):
            index[chunk_id] = len(ids)
            ids.append(chunk_id)
            texts.append(text or "")
            metas.append(dict(meta or {}))
    docs = [str(m.get("doc_id", "")) for m in metas]
    sim = {(min(index[a], index[b]), max(index[a], index[b])): value for (a, b), value in similar.items()}

    near: list[dict[str, Any]] = []
    for (i, j), value in sim.items():
        if value >= NEAR_DUPLICATE:
            near.append(
                {
                    "similarity": round(value, 3),
                    "a": {"doc_id": docs[i], "chunk_id": ids[i], "section": metas[i].get("section", "")},
                    "b": {"doc_id": docs[j], "chunk_id": ids[j], "section": metas[j].get("section", "")},
                }
            )

    cache: dict[int, list[Statement]] = {}

    def of(i: int) -> list[Statement]:
        if i not in cache:
            language = str(metas[i].get("language") or "en")
            cache[i] = statements(ids[i], docs[i], texts[i].split("\n\n", 1)[-1], language)
        return cache[i]

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for i, j in sorted(sim):
        for left, right in ((of(i), of(j)), (of(j), of(i))):
            for s in left:
                best = max(right, key=lambda t: _jaccard(s.subject, t.subject), default=None)
                if best is None:
                    continue
                overlap = _jaccard(s.subject, best.subject)
                if overlap < STATEMENT_OVERLAP or len(s.subject & best.subject) < 2:
                    continue
                units = _conflict(s, best)
                if not units:
                    continue
                a, b = sorted((s, best), key=lambda x: (x.doc_id, x.text))
                key = (a.text, b.text)
                if key in found:
                    continue
                found[key] = {
                    "overlap": round(overlap, 3),
                    "topic_similarity": round(sim[i, j], 3),
                    "units": units,
                    "a": {"doc_id": a.doc_id, "chunk_id": a.chunk_id, "statement": a.text,
                          "values": {u: sorted(a.quantities[u]) for u in units}},
                    "b": {"doc_id": b.doc_id, "chunk_id": b.chunk_id, "statement": b.text,
                          "values": {u: sorted(b.quantities[u]) for u in units}},
                }
    contradictions = sorted(found.values(), key=lambda c: (-c["overlap"], -c["topic_similarity"]))
    near.sort(key=lambda n: -n["similarity"])
    return {"near_duplicates": near[:limit], "contradictions": contradictions[:limit]}


# -- the report -------------------------------------------------------------------------------------


@dataclass
class GapReport:
    questions: int
    unanswered_or_low_confidence: int
    clusters: list[Cluster]
    never_retrieved: list[dict[str, str]]
    stale_documents: list[dict[str, str]]
    contradictions: list[dict[str, Any]]
    near_duplicates: list[dict[str, Any]]
    sources: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GAP_STEPS = 4  # the steps gap_report reports to its progress callback


def gap_report(
    records: Iterable[QuestionRecord],
    store: KnowledgeStore,
    threshold: float,
    today: date | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> GapReport:
    """The whole coverage-gap report from any iterable of question records.

    ``progress(done, GAP_STEPS, what_comes_next)`` is called before each step and once at the end.
    """

    def step(done: int, text: str) -> None:
        if progress is not None:
            progress(done, GAP_STEPS, text)

    step(0, "reading the questions")
    rows = list(records)
    weak = [r for r in rows if r.refused or r.confidence < threshold + LOW_CONFIDENCE_MARGIN]
    step(1, f"grouping {len(weak)} unanswered or low-confidence questions")
    clusters = cluster_questions(weak, store)
    step(2, "finding documents never retrieved or past review")
    unretrieved = never_retrieved(store, rows) if rows else []
    stale = stale_documents(store, today)
    step(3, "comparing documents for conflicting statements")
    content = content_conflicts(store)
    step(4, "done")
    return GapReport(
        questions=len(rows),
        unanswered_or_low_confidence=len(weak),
        clusters=clusters,
        never_retrieved=unretrieved,
        stale_documents=stale,
        contradictions=content["contradictions"],
        near_duplicates=content["near_duplicates"],
        sources=dict(Counter(r.source for r in rows)),
    )


def render_markdown(report: GapReport, top: int = 25) -> str:
    lines = [
        "# Coverage gaps",
        "",
        f"{report.questions} questions analysed; {report.unanswered_or_low_confidence} refused or low-confidence, "
        f"in {len(report.clusters)} groups.",
        "",
        "## Unanswered topics, by volume",
        "",
        "| # | questions | mean confidence | roles | most central questions |",
        "|---|---|---|---|---|",
    ]
    for n, c in enumerate(report.clusters[:top], 1):
        roles = ", ".join(f"{k} {v}" for k, v in sorted(c.roles.items()))
        examples = " · ".join(q.replace("|", "/") for q in c.questions[:3])
        lines.append(f"| {n} | {c.size} | {c.mean_confidence:.2f} | {roles} | {examples} |")
    lines += ["", "## Documents no question retrieved", ""]
    lines += [f"- `{d['doc_id']}` {d['title']} ({d['audience']})" for d in report.never_retrieved] or ["- none"]
    lines += ["", "## Documents past their review date", ""]
    lines += [f"- `{d['doc_id']}` {d['title']}: review by {d['review_by']} (owner: {d['owner'] or '—'})"
              for d in report.stale_documents] or ["- none"]
    lines += ["", "## Possibly contradictory statements (same topic, different numbers)", ""]
    for c in report.contradictions[:top]:
        units = ", ".join(c["units"])
        lines.append(f"- **{c['a']['doc_id']}** vs **{c['b']['doc_id']}** ({units}):")
        lines.append(f"  - “{c['a']['statement']}”")
        lines.append(f"  - “{c['b']['statement']}”")
    if not report.contradictions:
        lines.append("- none found")
    lines += ["", "## Near-duplicate passages across documents", ""]
    lines += [f"- {n['a']['doc_id']} § {n['a']['section']} ≈ {n['b']['doc_id']} § {n['b']['section']} "
              f"(similarity {n['similarity']:.2f})" for n in report.near_duplicates[:top]] or ["- none"]
    return "\n".join(lines) + "\n"


def render_html(report: GapReport, top: int = 50) -> str:
    """The same report as one self-contained HTML page (no scripts, nothing fetched)."""
    from eval.report import CSS

    def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>" if body else "<p class=muted>none</p>"

    parts = [
        "<h1>Coverage gaps</h1>",
        f"<p class=muted>{report.questions} questions analysed; {report.unanswered_or_low_confidence} refused or "
        f"low-confidence, in {len(report.clusters)} groups.</p>",
        "<h2>Unanswered topics, by volume</h2>",
        table(
            ("#", "questions", "mean confidence", "roles", "most central questions"),
            (
                (n, c.size, f"{c.mean_confidence:.2f}", ", ".join(f"{k} {v}" for k, v in sorted(c.roles.items())),
                 " · ".join(c.questions[:3]))
                for n, c in enumerate(report.clusters[:top], 1)
            ),
        ),
        "<h2>Documents no question retrieved</h2>",
        table(("document", "title", "audience"), ((d["doc_id"], d["title"], d["audience"]) for d in report.never_retrieved)),
        "<h2>Documents past their review date</h2>",
        table(
            ("document", "title", "review by", "owner"),
            ((d["doc_id"], d["title"], d["review_by"], d["owner"] or "—") for d in report.stale_documents),
        ),
        "<h2>Possibly contradictory statements (same topic, different numbers)</h2>",
        table(
            ("document A", "statement A", "document B", "statement B", "units"),
            (
                (c["a"]["doc_id"], c["a"]["statement"], c["b"]["doc_id"], c["b"]["statement"], ", ".join(c["units"]))
                for c in report.contradictions[:top]
            ),
        ),
        "<h2>Near-duplicate passages across documents</h2>",
        table(
            ("document A", "section A", "document B", "section B", "similarity"),
            (
                (n["a"]["doc_id"], n["a"]["section"], n["b"]["doc_id"], n["b"]["section"], f"{n['similarity']:.2f}")
                for n in report.near_duplicates[:top]
            ),
        ),
    ]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Coverage gaps</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )

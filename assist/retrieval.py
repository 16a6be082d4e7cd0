"""Hybrid retrieval: dense (Chroma) + BM25, fused by reciprocal rank, de-duplicated, reranked.

Dense search catches paraphrases ("send it back" / "return"); BM25 catches exact policy terms,
amounts and codes that embeddings blur. Reciprocal rank fusion combines them without having to
calibrate two score scales. A cheap reranker then rewards passages that cover more of the
question's terms. The confidence reported with a result comes from the same evidence and
decides, downstream, whether to answer or to hand off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from assist.access import Filters, readable, where_clause
from assist.chunk_index import ChunkIndex
from assist.role_indexes import ChunkIndexes
from assist.terms import detect_language, terms
from kb.embedding import DIMENSIONS
from kb.segments import chunk_body, chunk_segments, embedding_text, segment_id
from kb.settings import Settings
from kb.store import KnowledgeStore

log = logging.getLogger(__name__)

RRF_K = 60
DUPLICATE_JACCARD = 0.8
# Reranker weights: fused rank, query-term coverage, dense similarity.
W_FUSED, W_COVERAGE, W_DENSE = 0.6, 0.25, 0.15
# Confidence: weight of the dense similarity against idf-weighted term coverage.
W_CONF_DENSE = 0.6
# Dense search over-fetches nearest ids this many times over what the role and filters are
# expected to admit, and no further than MAX_OVERFETCH; past that, Chroma filters instead.
# 4 keeps recall of the exact nearest neighbours within one to two points of Chroma's
# filtered query (bench/results/dense_filter.md); 2 lost about twice as much.
OVERFETCH = 4.0
MAX_OVERFETCH = 1000
# A scope this small that over-fetching cannot serve (one document, a small market) is scored
# exactly from its stored vectors: about 6 ms at 400 chunks, where Chroma's filtered query
# costs 60 ms at 100k chunks.
EXACT_MAX = 400
# Query vectors remembered per process (a few hundred KiB).
QUERY_VECTORS_KEPT = 256


@dataclass
class Passage:
    """A retrieved chunk with the evidence of why it was retrieved."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    dense: float = 0.0
    lexical: float = 0.0
    fused: float = 0.0
    coverage: float = 0.0
    score: float = 0.0

    @property
    def doc_id(self) -> str:
        return str(self.metadata.get("doc_id", ""))

    @property
    def body(self) -> str:
        """The chunk text without its heading-path prefix."""
        return chunk_body(self.text)


@dataclass
class Retrieval:
    query: str
    role: str
    filters: Filters
    passages: list[Passage]
    confidence: float
    where: dict[str, Any]
    latency_ms: float
    timings: dict[str, float] = field(default_factory=dict)
    # The role's lexical index the passages were scored with, for scoring answer text the same way.
    index: ChunkIndex | None = field(default=None, repr=False)
    # The query's embedding, for scoring the passages' segments against it.
    vector: np.ndarray | None = field(default=None, repr=False)


def confidence_from(passages: list[Passage]) -> float:
    """Retrieval confidence in 0..1 from the best passage's dense similarity and term coverage."""
    if not passages:
        return 0.0
    best = passages[0]
    dense = max(p.dense for p in passages[:3])
    return float(np.clip(W_CONF_DENSE * dense + (1 - W_CONF_DENSE) * best.coverage, 0.0, 1.0))


class HybridRetriever:
    """Searches one store for one role at a time; safe to share across threads."""

    def __init__(self, store: KnowledgeStore, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or store.settings
        self.lexical = ChunkIndexes(store)
        self._size_lock = threading.Lock()
        self._size: tuple[str, int] = ("", 0)
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, the most recent remembered in this process.

        One ask embeds the same text more than once (a refused question is searched again
        for staff documents to record why; a conversation's context is searched on every
        turn), and embedding is most of an ask's time.
        """
        with self._vectors_lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        made = self.store.embedder.embed(missing) if missing else []
        with self._vectors_lock:
            self._vectors.update(zip(missing, made, strict=True))
            out = np.array([self._vectors[t] for t in texts], dtype=np.float32)
            for t in texts:
                self._vectors.move_to_end(t)
            while len(self._vectors) > QUERY_VECTORS_KEPT:
                self._vectors.popitem(last=False)
        return out.reshape(len(texts), DIMENSIONS)

    def retrieve(
        self,
        query: str,
        role: str,
        filters: Filters | None = None,
        k: int | None = None,
        rerank: bool | None = None,
        vector: np.ndarray | None = None,
    ) -> Retrieval:
        """The ``k`` best passages the role may read for ``query`` (``vector``: its embedding, if already made)."""
        started = time.perf_counter()
        filters = filters or Filters()
        k = k or self.settings.top_k
        n = self.settings.candidates
        where = where_clause(role, filters)
        timings: dict[str, float] = {}

        t = time.perf_counter()
        if vector is None:
            vector = self.embed_queries([query])[0]
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        index = self.lexical.for_role(role)
        timings["index_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        dense_hits, scored = self._dense(vector, n, index, filters, where)
        timings["dense_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        lexical_hits = index.search(query, n, filters)
        timings["lexical_ms"] = (time.perf_counter() - t) * 1000

        pool: dict[str, Passage] = {}
        for rank, (chunk_id, text, meta, sim) in enumerate(dense_hits):
            passage = pool.setdefault(chunk_id, Passage(chunk_id, text, meta))
            passage.dense = sim
            passage.fused += 1.0 / (RRF_K + rank + 1)
        for rank, (row, score) in enumerate(lexical_hits):
            chunk_id = index.ids[row]
            passage = pool.setdefault(chunk_id, Passage(chunk_id, index.texts[row], index.metadatas[row]))
            passage.lexical = score
            passage.fused += 1.0 / (RRF_K + rank + 1)
        t = time.perf_counter()
        if not index.settled:
            pool = self._verified(pool, role, filters)
        timings["verify_ms"] = (time.perf_counter() - t) * 1000
        if not pool:
            latency = (time.perf_counter() - started) * 1000
            return Retrieval(query, role, filters, [], 0.0, where, latency, timings, index, vector)

        missing_dense = [p for p in pool.values() if p.dense == 0.0]
        unscored = [p.chunk_id for p in missing_dense if p.chunk_id not in scored]
        if unscored:  # lexical-only hits: score them densely too, from their stored vectors
            scored = {**scored, **self._similarities(unscored, vector)}
        for p in missing_dense:
            p.dense = scored.get(p.chunk_id, 0.0)

        language = detect_language(query)
        words = terms(query, language)
        top_fused = max(p.fused for p in pool.values())
        for p in pool.values():
            p.coverage = index.coverage(words, p.text, language, p.chunk_id)
            p.score = p.fused / top_fused
            if rerank if rerank is not None else self.settings.rerank:
                p.score = W_FUSED * p.score + W_COVERAGE * p.coverage + W_DENSE * p.dense
        ranked = sorted(pool.values(), key=lambda p: (-p.score, p.chunk_id))
        passages = _drop_near_duplicates(ranked, k, index)
        latency = (time.perf_counter() - started) * 1000
        return Retrieval(
            query, role, filters, passages, confidence_from(passages), where, latency, timings, index, vector
        )

    def following(self, passage: Passage, index: ChunkIndex, role: str | None = None) -> Passage | None:
        """The chunk after ``passage`` in its document, if the role may read it.

        A procedure longer than a chunk continues there. Chunks of a document are stored, and
        so indexed, in order, so the next row is nearly always it; otherwise the store is asked.
        The chunk's audience is checked against the store, like every retrieved passage's.
        """
        doc, position = passage.doc_id, passage.metadata.get("position")
        if not isinstance(position, int):
            return None
        role = role or index.role
        row = index.row_of(passage.chunk_id)
        candidates = [row + 1] if 0 <= row < len(index.ids) - 1 else []
        found: Passage | None = None
        for r in candidates:
            meta = index.metadatas[r]
            if meta.get("doc_id") == doc and meta.get("position") == position + 1:
                found = Passage(index.ids[r], index.texts[r], meta)
                break
        if found is None:
            got = self.store.chunks.get(where={"$and": [{"doc_id": doc}, {"position": position + 1}]}, include=[])
            rows = index.rows_of(list(got["ids"]))
            hit = next((int(r) for r in rows if r >= 0), None)
            if hit is None:
                return None
            found = Passage(index.ids[hit], index.texts[hit], index.metadatas[hit])
        if not role or index.settled:
            return found
        return self._verified({found.chunk_id: found}, role, Filters()).get(found.chunk_id)

    def _verified(self, pool: dict[str, Passage], role: str, filters: Filters) -> dict[str, Passage]:
        """The passages whose chunk, as the store holds it now, the role may read and the filters admit.

        Text and scores come from the role's index, which is keyed by the store revision and
        so, when built while a write was in progress or after one was interrupted, may still
        describe chunks as they were (see :mod:`kb.store`). For such an index the audience and
        the rest of the metadata are read again from Chroma, by id, for the few passages about
        to be shown: a chunk gone from the store, unpublished, or of an audience the role may
        not read, is dropped whatever the index says, and the passage carries the store's
        metadata. An index of a settled revision was built from the chunks as they still are,
        so the lookup is skipped there.
        """
        if not pool:
            return pool
        got = self.store.chunks.get(ids=list(pool), include=["metadatas"])
        current = {i: dict(m or {}) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)}
        kept: dict[str, Passage] = {}
        for chunk_id, passage in pool.items():
            meta = current.get(chunk_id)
            if meta is None or not readable(role, meta) or not filters.matches(meta):
                log.warning(
                    "dropped a passage the role's index holds but the store does not give the role "
                    "chunk_id=%s role=%s store_audience=%s",
                    chunk_id,
                    role,
                    None if meta is None else meta.get("audience"),
                )
                continue
            passage.metadata = meta
            kept[chunk_id] = passage
        return kept

    def segment_vectors(self, passages: Sequence[Passage]) -> list[np.ndarray]:
        """One matrix per passage: the stored vector of each of its segments, in order.

        Stored at ingest, so this is one lookup by id; a segment the store lacks (a store
        written before segments were, or a write interrupted between chunk and segments) is
        embedded here instead.
        """
        cut = [chunk_segments(p.text, str(p.metadata.get("section", ""))) for p in passages]
        keys = [[segment_id(p.chunk_id, s.position) for s in segs] for p, segs in zip(passages, cut, strict=True)]
        stored = self.store.segment_vectors([key for row in keys for key in row])
        missing = [
            (key, embedding_text(s, str(p.metadata.get("section", ""))))
            for p, segs, row in zip(passages, cut, keys, strict=True)
            for s, key in zip(segs, row, strict=True)
            if key not in stored
        ]
        if missing:
            log.debug("embedding %d segments the store lacks", len(missing))
            stored.update(zip((key for key, _ in missing), self.store.embedder.embed([t for _, t in missing]), strict=True))
        return [
            np.array([stored[key] for key in row], dtype=np.float32) if row else np.zeros((0, DIMENSIONS), np.float32)
            for row in keys
        ]

    def _dense(
        self, vector: np.ndarray, n: int, index: ChunkIndex, filters: Filters, where: dict[str, Any] | None
    ) -> tuple[list[tuple[str, str, dict[str, Any], float]], dict[str, float]]:
        """The ``n`` nearest chunks the role may read that pass ``filters``, and every similarity
        computed on the way (the exact path scores the whole scope, so a lexical hit needs no
        second fetch).

        Chroma's metadata pre-filter costs time in proportion to the collection (110-200 ms a
        query at 100k chunks for a role's scope, 57 ms even for one document's chunks), while an
        unfiltered nearest-neighbour query for ids alone stays at a few milliseconds. So, by how many
        chunks the role's index admits under ``filters``:

        - a fair share of the collection: enough nearest ids are fetched to expect ``n``
          admitted ones, and those the role's index holds and the filters admit are kept;
        - a few hundred at most (or an over-fetch that found too few of them): their stored
          vectors are fetched by id and scored exactly;
        - anything else: Chroma's ``where``.

        Text and metadata come from the role's index (built with the role's access clause), so
        a chunk the role may not read is never read at all.
        """
        admitted = index.admitted(filters)
        in_scope = len(index.ids) if admitted is None else int(admitted.sum())
        if not in_scope:
            return [], {}
        total = max(self._collection_size(index.revision), in_scope)
        fetch = min(total, math.ceil(n * OVERFETCH * total / in_scope))
        if fetch <= MAX_OVERFETCH:
            hits = self._over_fetch(vector, n, fetch, index, admitted)
            if len(hits) >= min(n, in_scope):
                return hits, {}
        if in_scope <= EXACT_MAX:
            return self._exact(vector, n, index, admitted)
        return self.store.query(vector, n_results=n, where=where), {}

    def _over_fetch(
        self, vector: np.ndarray, n: int, fetch: int, index: ChunkIndex, admitted: np.ndarray | None
    ) -> list[tuple[str, str, dict[str, Any], float]]:
        """The admitted chunks among the ``fetch`` nearest ids of the whole collection, best first."""
        got = self.store.chunks.query(query_embeddings=[vector], n_results=fetch, include=["distances"])
        ids, distances = got["ids"][0], (got["distances"] or [[]])[0]
        rows = index.rows_of(ids)
        keep = rows >= 0
        if admitted is not None:
            keep &= admitted[np.maximum(rows, 0)]
        return [
            (ids[i], index.texts[int(rows[i])], index.metadatas[int(rows[i])], 1.0 - float(distances[i]))
            for i in np.flatnonzero(keep)[:n]
        ]

    def _exact(
        self, vector: np.ndarray, n: int, index: ChunkIndex, admitted: np.ndarray | None
    ) -> tuple[list[tuple[str, str, dict[str, Any], float]], dict[str, float]]:
        """Exact nearest neighbours among the admitted rows, and the similarity of every admitted chunk."""
        rows = np.flatnonzero(admitted) if admitted is not None else np.arange(len(index.ids))
        scored = self._similarities([index.ids[int(r)] for r in rows], vector)
        best = sorted(scored, key=lambda chunk_id: (-scored[chunk_id], chunk_id))[:n]
        hits = [
            (chunk_id, index.texts[int(row)], index.metadatas[int(row)], scored[chunk_id])
            for chunk_id, row in zip(best, index.rows_of(best), strict=True)
            if row >= 0
        ]
        return hits, scored

    def _similarities(self, chunk_ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """Cosine similarity to the query of chunks' stored (unit-length) vectors, fetched by id."""
        got = self.store.chunks.get(ids=chunk_ids, include=["embeddings"])
        if not got["ids"]:
            return {}
        return dict(zip(got["ids"], (float(s) for s in np.asarray(got["embeddings"]) @ vector), strict=True))

    def _collection_size(self, revision: str) -> int:
        """Chunks in the whole collection, read once per store revision."""
        with self._size_lock:
            if self._size[0] != revision or not self._size[1]:
                self._size = (revision, self.store.chunk_count())
            return self._size[1]


def fuse(primary: Retrieval, other: Retrieval, weight: float = 0.5) -> Retrieval:
    """``primary``'s passages and ``other``'s, merged by weighted reciprocal rank.

    A message's focus (its question sentences) is searched as ``primary`` and the whole
    message as ``other``: the question decides the order, the story around it can still bring
    the passage it was about. Scores are rescaled to 0..1 like a single search's.
    """
    scores: dict[str, float] = {}
    by_id: dict[str, Passage] = {}
    for w, found in ((1.0, primary), (weight, other)):
        for rank, passage in enumerate(found.passages):
            scores[passage.chunk_id] = scores.get(passage.chunk_id, 0.0) + w / (RRF_K + rank + 1)
            by_id.setdefault(passage.chunk_id, passage)
    if not scores:
        return primary
    top = max(scores.values())
    ranked = sorted(by_id, key=lambda chunk_id: (-scores[chunk_id], chunk_id))[: max(len(primary.passages), 1)]
    passages = [replace(by_id[c], score=scores[c] / top) for c in ranked]
    return replace(primary, passages=passages, confidence=confidence_from(passages))


def _drop_near_duplicates(ranked: list[Passage], k: int, index: ChunkIndex) -> list[Passage]:
    """Keep the best of passages whose term sets overlap by ``DUPLICATE_JACCARD`` or more."""
    kept: list[Passage] = []
    kept_terms: list[frozenset[str]] = []
    for passage in ranked:
        words = index.terms_of(passage.chunk_id, passage.body, str(passage.metadata.get("language", "en")))
        if any(words and len(words & other) / len(words | other) >= DUPLICATE_JACCARD for other in kept_terms):
            continue
        kept.append(passage)
        kept_terms.append(words)
        if len(kept) == k:
            break
    return kept

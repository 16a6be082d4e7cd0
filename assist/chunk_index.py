"""The chunk index of one role scope: what that role may read, with BM25 over it, in mapped files.

One index per role scope (the role's ``where`` clause), built with ``bm25s`` and a Snowball
stemmer in each chunk's language. Everything a query needs per hit comes from the mapped files:
chunk ids (and their sorted 64-bit hashes, to find many rows by id at once), texts, metadata
(JSON per row), each chunk's term ids (coverage and near-duplicate checks), document
frequencies, the vocabulary, and one integer code array per filter field so a filter mask is a
vectorised comparison, not a loop over metadata. The dense side reads its hits' texts from here
too (see ``assist.retrieval``), so the index is also what a role's answers may quote.

Sharding. A tenant, brand or market gets its own collection, hence its own indexes. Within a
scope, ``lexical_shards`` > 1 splits the chunks by a stable hash of ``doc_id`` into separately
stored BM25 matrices searched by a thread pool and merged by score. BM25 scores are only
comparable under shared statistics, so the builder computes document frequencies and the
average chunk length over the whole scope once and every shard's precomputed term weights use
them: a sharded search returns the same scores as an unsharded one. Shards on separate
machines would need the same: a pass that sums per-shard term counts before the shards
weight their terms (not implemented; see README "Scaling out").

Where the files live and when they are rebuilt is :mod:`assist.role_indexes`' business.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from array import array
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from assist.access import Filters
from assist.index_files import (
    Metadatas,
    StringTable,
    id_hashes,
    open_array,
    open_bytes,
    shard_of,
    write_strings,
)
from assist.terms import query_terms, term_pairs, terms

# bm25s sets its own logger to DEBUG on import; its per-index messages are noise to us.
logging.getLogger("bm25s").setLevel(logging.WARNING)

# Bumped whenever the files, the tokenizer or the role scopes change meaning; part of the path.
FORMAT = 3  # 3: a surface word per vocabulary term (spelling correction)
# A chunk without terms still needs a column in bm25s; this token never comes out of ``terms``.
_EMPTY = "\u2400"
# Filter masks are cached per filter combination, up to about this many bytes.
_MASK_CACHE_BYTES = 64 << 20
_FILTER_FIELDS = tuple(f.name for f in fields(Filters))


class IndexUnusable(RuntimeError):
    """An index directory exists but cannot be read as a complete index of this format."""




class _Writer:
    """Streams chunks into an index directory; only token ids are held until :meth:`finish`."""

    def __init__(self, directory: Path, shards: int) -> None:
        self.directory = directory
        self.shards = shards
        directory.mkdir(parents=True)
        self._texts = (directory / "texts.bin").open("wb")
        self._metas = (directory / "metas.bin").open("wb")
        self._text_offsets = array("q", [0])
        self._meta_offsets = array("q", [0])
        self.ids: list[str] = []
        self._shard = array("h")
        self._tokens: list[array[int]] = []
        self._vocab: dict[str, int] = {}
        self._surface: list[str] = []  # by vocabulary id: the first word seen with that stem
        self._row_terms = array("i")
        self._row_term_offsets = array("q", [0])
        self._codes = {name: array("i") for name in _FILTER_FIELDS}
        self._values: dict[str, dict[str, int]] = {name: {} for name in _FILTER_FIELDS}

    def add(self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        for chunk_id, text, meta in zip(ids, texts, metadatas, strict=True):
            tokens = [self._token(stem, word) for stem, word in term_pairs(text, str(meta.get("language", "en")))]
            self._tokens.append(array("i", tokens or [self._token(_EMPTY, "")]))
            self._row_terms.extend(sorted(set(tokens)))
            self._row_term_offsets.append(len(self._row_terms))
            self.ids.append(chunk_id)
            self._shard.append(shard_of(str(meta.get("doc_id", "")), self.shards))
            self._text_offsets.append(self._text_offsets[-1] + self._texts.write(text.encode("utf-8")))
            encoded = json.dumps(meta, ensure_ascii=False).encode("utf-8")
            self._meta_offsets.append(self._meta_offsets[-1] + self._metas.write(encoded))
            for name in _FILTER_FIELDS:
                known = self._values[name]
                self._codes[name].append(known.setdefault(json.dumps(meta.get(name)), len(known)))

    def _token(self, stem: str, word: str) -> int:
        """The vocabulary id of ``stem``, added (with ``word`` as its surface form) when new."""
        token = self._vocab.get(stem)
        if token is None:
            token = self._vocab[stem] = len(self._vocab)
            self._surface.append(word)
        return token

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write everything but the texts and metadata streamed so far, then the manifest."""
        d = self.directory
        self._texts.close()
        self._metas.close()
        n = len(self.ids)
        np.save(d / "texts.offsets.npy", np.array(self._text_offsets, dtype=np.int64))
        np.save(d / "metas.offsets.npy", np.array(self._meta_offsets, dtype=np.int64))
        write_strings(d, "ids", self.ids, sort=False)
        hashes = id_hashes(self.ids)
        order = np.argsort(hashes, kind="stable")
        np.save(d / "ids.hash.npy", hashes[order])
        np.save(d / "ids.hash_rows.npy", order.astype(np.int64))
        vocab = list(self._vocab)
        write_strings(d, "vocab", vocab, sort=True)
        write_strings(d, "surface", self._surface, sort=False)
        row_terms = np.array(self._row_terms, dtype=np.int32)
        np.save(d / "terms.npy", row_terms)
        np.save(d / "terms.offsets.npy", np.array(self._row_term_offsets, dtype=np.int64))
        np.save(d / "df.npy", np.bincount(row_terms, minlength=len(vocab)).astype(np.int32))
        for name in _FILTER_FIELDS:
            np.save(d / f"filter.{name}.npy", np.array(self._codes[name], dtype=np.int32))
        (d / "filters.json").write_text(
            json.dumps({name: [json.loads(v) for v in self._values[name]] for name in _FILTER_FIELDS}), "utf-8"
        )
        shards = self._write_shards(d) if n else []
        manifest = {**manifest, "format": FORMAT, "chunks": n, "vocabulary": len(vocab), "shards": shards}
        manifest["files"] = {str(p.relative_to(d)): p.stat().st_size for p in sorted(d.rglob("*")) if p.is_file()}
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1), "utf-8")

    def _write_shards(self, d: Path) -> list[str]:
        """One BM25 matrix over the whole scope, cut by rows into the shards that hold chunks.

        Weighting terms once over the whole scope is what gives every shard the same idf and
        average length, so their scores can be merged directly.
        """
        model = bm25s.BM25()
        model.index((self._tokens, dict(self._vocab)), create_empty_token=False, show_progress=False)
        self._tokens = []
        if self.shards == 1:
            model.vocab_dict = {}  # the vocabulary is stored once, as a string table
            model.save(d / "shard-0", show_progress=False)
            return ["shard-0"]
        data, indices, indptr = (model.scores[k] for k in ("data", "indices", "indptr"))
        columns = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        shard_of = np.array(self._shard, dtype=np.int16)
        names = []
        for shard in range(self.shards):
            rows = np.flatnonzero(shard_of == shard)
            if not len(rows):
                continue
            local = np.full(len(shard_of), -1, dtype=indices.dtype)
            local[rows] = np.arange(len(rows), dtype=indices.dtype)
            keep = shard_of[indices] == shard
            counts = np.bincount(columns[keep], minlength=len(indptr) - 1)
            part = bm25s.BM25()
            part.nonoccurrence_array = None
            part.vocab_dict = {}
            part.scores = {
                "data": data[keep],
                "indices": local[indices[keep]],
                "indptr": np.concatenate([[0], np.cumsum(counts)]).astype(indptr.dtype),
                "num_docs": len(rows),
            }
            name = f"shard-{shard}"
            part.save(d / name, show_progress=False)
            np.save(d / name / "rows.npy", rows.astype(np.int64))
            names.append(name)
        return names


Page = tuple[Sequence[str], Sequence[str], Sequence[dict[str, Any]]]


def write_index(directory: Path, shards: int, pages: Iterable[Page], manifest: dict[str, Any]) -> int:
    """Write an index of the chunks in ``pages`` to ``directory`` (which must not exist); returns its size."""
    writer = _Writer(directory, shards)
    for ids, texts, metadatas in pages:
        writer.add(ids, texts, metadatas)
    writer.finish(manifest)
    return len(writer.ids)


# -- the index ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shard:
    model: bm25s.BM25
    rows: np.ndarray | None  # global row of each local row; None when the shard is the whole scope


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _search_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="bm25-shard")
        return _pool


def _top(scores: np.ndarray, n: int, rows: np.ndarray | None) -> list[tuple[int, float]]:
    """The ``n`` best positive scores as (global row, score), ties broken by row.

    A fixed tie order makes rankings reproducible, and makes a sharded search return exactly
    what the unsharded one does.
    """
    n = min(n, len(scores))
    if n <= 0:
        return []
    nth_best = np.partition(scores, len(scores) - n)[len(scores) - n]
    candidates = np.flatnonzero((scores >= nth_best) & (scores > 0))
    global_rows = rows[candidates] if rows is not None else candidates
    order = np.lexsort((global_rows, -scores[candidates]))[:n]
    return [(int(global_rows[i]), float(scores[candidates[i]])) for i in order]


class ChunkIndex:
    """One role scope's BM25 index, read from its directory (memory-mapped by default).

    ``ids``, ``texts`` and ``metadatas`` are sequences by row, as :meth:`search` returns rows.
    """

    def __init__(self, directory: Path, use_mmap: bool = True) -> None:
        if not (directory / "manifest.json").is_file():
            if directory.is_dir():
                raise IndexUnusable(f"{directory} has no manifest")
            raise FileNotFoundError(directory)
        try:
            self._open(directory, use_mmap)
        except Exception as exc:
            raise IndexUnusable(f"{directory}: {exc}") from exc
        self.revision = ""  # the store revision this index was built from, when it came from a store
        self.role = ""  # the role whose scope it was built with, when it came from a store
        self.settled = False  # its revision was read with no write in progress (see ChunkIndexes.for_role)
        self._masks: dict[Filters, np.ndarray] = {}
        self._mask_limit = max(8, min(256, _MASK_CACHE_BYTES // max(len(self.ids), 1)))
        self._row_terms: dict[int, frozenset[str]] = {}
        self._idf: dict[str, float] = {}
        self._corrections: dict[str, str | None] = {}
        self._vocabulary: list[str] | None = None  # built on the first spelling correction

    def _open(self, d: Path, use_mmap: bool) -> None:
        manifest = json.loads((d / "manifest.json").read_text("utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')}, expected {FORMAT}")
        for name, size in manifest["files"].items():
            actual = (d / name).stat().st_size
            if actual != size:
                raise ValueError(f"{name} has {actual} bytes, the manifest says {size}")
        self.manifest: dict[str, Any] = manifest
        n = int(manifest["chunks"])

        def table(name: str, sort: bool = False) -> StringTable:
            offsets = open_array(d / f"{name}.offsets.npy", use_mmap)
            order = open_array(d / f"{name}.order.npy", use_mmap) if sort else None
            return StringTable(open_bytes(d / f"{name}.bin", use_mmap), offsets, order)

        self.ids = table("ids")
        self._id_hashes = open_array(d / "ids.hash.npy", use_mmap)
        self._id_hash_rows = open_array(d / "ids.hash_rows.npy", use_mmap)
        self.texts = table("texts")
        self.metadatas = Metadatas(table("metas"))
        self._vocab = table("vocab", sort=True)
        self._surface = table("surface")
        self._terms = open_array(d / "terms.npy", use_mmap)
        self._term_offsets = open_array(d / "terms.offsets.npy", use_mmap)
        self._df = open_array(d / "df.npy", use_mmap)
        self._codes = {name: open_array(d / f"filter.{name}.npy", use_mmap) for name in _FILTER_FIELDS}
        self._values: dict[str, list[Any]] = json.loads((d / "filters.json").read_text("utf-8"))
        self._shards = [
            _Shard(
                bm25s.BM25.load(d / name, mmap=use_mmap, load_vocab=False, show_progress=False),
                open_array(d / name / "rows.npy", use_mmap) if (d / name / "rows.npy").exists() else None,
            )
            for name in manifest["shards"]
        ]
        sizes = {len(self.ids), len(self.texts), len(self.metadatas), len(self._term_offsets) - 1}
        sizes |= {len(self._id_hashes), len(self._id_hash_rows)}
        sizes |= {len(codes) for codes in self._codes.values()}
        sizes.add(sum(int(s.model.scores["num_docs"]) for s in self._shards) if self._shards else n)
        if sizes != {n} or not len(self._df) == len(self._vocab) == len(self._surface) == manifest["vocabulary"]:
            raise ValueError(f"row counts {sorted(sizes)} disagree with the manifest's {n} chunks")

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        directory: Path | None = None,
        shards: int = 1,
    ) -> ChunkIndex:
        """An index of the given chunks: written to ``directory`` and mapped, or held in memory."""
        if directory is None:
            return cls.in_memory([(ids, texts, metadatas)], shards)
        write_index(directory, shards, [(ids, texts, metadatas)], {})
        return cls(directory)

    @classmethod
    def in_memory(cls, pages: Iterable[Page], shards: int = 1) -> ChunkIndex:
        """An index held in this process only: written to a temporary folder, read back, removed.

        For indexes no other process shares: tests, benchmarks, and a lexical folder that
        cannot be written. Pages are streamed into the files as they come, as for a shared build.
        """
        with tempfile.TemporaryDirectory(prefix="kbassist-lexical-") as tmp:
            write_index(Path(tmp) / "index", shards, pages, {})
            return cls(Path(tmp) / "index", use_mmap=False)

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def row_of(self, chunk_id: str) -> int:
        """The chunk's row, or -1 when the index does not hold it."""
        return int(self.rows_of([chunk_id])[0])

    def rows_of(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """Rows of many chunks at once (-1 where the index does not hold one).

        One vectorised binary search over the sorted id hashes; each found row's id is then
        compared in full, so a hash collision can never return another chunk.
        """
        rows = np.full(len(chunk_ids), -1, dtype=np.int64)
        if not len(chunk_ids) or not len(self._id_hashes):
            return rows
        wanted = id_hashes(chunk_ids)
        at = np.minimum(np.searchsorted(self._id_hashes, wanted), len(self._id_hashes) - 1)
        for i in np.flatnonzero(self._id_hashes[at] == wanted):
            row = int(self._id_hash_rows[at[i]])
            if self.ids[row] == chunk_ids[i]:
                rows[i] = row
        return rows

    def admitted(self, filters: Filters | None) -> np.ndarray | None:
        """True for the rows ``filters`` admit; None when every row is admitted."""
        return self._mask(filters) if filters and filters != Filters() else None

    def _term_id(self, term: str) -> int:
        return self._vocab.find(term)

    def knows(self, term: str) -> bool:
        """The term occurs in some chunk of this scope."""
        return self._term_id(term) >= 0

    def surface(self, term: str) -> str:
        """A word of the knowledge base that stems to ``term`` (to rebuild a corrected question)."""
        row = self._term_id(term)
        return self._surface[row] if row >= 0 else term

    def correct(self, term: str) -> str | None:
        """The knowledge base's term a misspelt one most likely means, or None.

        Customers type "verfy", "retrun", "extnd"; those terms occur in no chunk, so BM25 finds
        nothing and the answer looks unsupported. A term unknown to this scope is matched to the
        vocabulary term at the smallest edit distance (1 for short words, 2 from 7 letters),
        the more frequent one on a tie. Short words and words with digits are left alone: at
        that length a near neighbour is another word, not a correction.
        """
        if len(term) < 4 or any(ch.isdigit() for ch in term) or self.knows(term):
            return None
        cached = self._corrections.get(term, "")
        if cached != "":
            return cached
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        limit = 1 if len(term) < 7 else 2
        best: str | None = None
        if self._vocabulary is None:
            self._vocabulary = [w for w in self._vocab[0 : len(self._vocab)] if len(w) >= 3 and not w.isdigit()]
        matches = process.extract(
            term, self._vocabulary, scorer=Levenshtein.distance, score_cutoff=limit, limit=8
        )
        if matches:
            closest = min(distance for _, distance, _ in matches)
            tied = [word for word, distance, _ in matches if distance == closest]
            best = max(tied, key=lambda w: (int(self._df[self._term_id(w)]), w))
        if len(self._corrections) >= 4096:
            self._corrections.clear()
        self._corrections[term] = best
        return best

    def _terms_of_row(self, row: int) -> frozenset[str]:
        cached = self._row_terms.get(row)
        if cached is None:
            ids = self._terms[int(self._term_offsets[row]) : int(self._term_offsets[row + 1])]
            cached = frozenset(self._vocab[int(i)] for i in ids)
            if len(self._row_terms) >= 4096:
                self._row_terms.clear()
            self._row_terms[row] = cached
        return cached

    def terms_of(self, chunk_id: str, text: str, language: str = "en") -> frozenset[str]:
        """The chunk's terms, from the index when it holds the chunk (no re-tokenising per query)."""
        row = self.row_of(chunk_id) if chunk_id else -1
        return self._terms_of_row(row) if row >= 0 else frozenset(terms(text, language))

    def _mask(self, filters: Filters) -> np.ndarray:
        """True for the chunks that pass ``filters``; cached, filters repeat a lot.

        Each filter field is tested once per distinct stored value with :meth:`Filters.matches`
        itself, then applied to the field's code array, so the semantics stay those of
        ``Filters`` (market "ALL", product "all") without a Python loop over the chunks.
        """
        cached = self._masks.get(filters)
        if cached is None:
            cached = np.ones(len(self.ids), dtype=bool)
            for name in _FILTER_FIELDS:
                wanted = getattr(filters, name)
                if not wanted:
                    continue
                alone = Filters(**{name: wanted})
                admitted = [
                    c for c, v in enumerate(self._values[name]) if alone.matches({} if v is None else {name: v})
                ]
                cached &= np.isin(self._codes[name], admitted)
            if len(self._masks) >= self._mask_limit:
                self._masks.clear()
            self._masks[filters] = cached
        return cached

    def idf(self, term: str) -> float:
        """BM25 idf; a term the knowledge base never uses gets the highest weight."""
        cached = self._idf.get(term)
        if cached is None:
            n = max(len(self.ids), 1)
            row = self._term_id(term)
            df = int(self._df[row]) if row >= 0 else 0
            cached = math.log(1 + (n - df + 0.5) / (df + 0.5))
            if len(self._idf) >= 4096:
                self._idf.clear()
            self._idf[term] = cached
        return cached

    def coverage(self, query_terms: Sequence[str], text: str, language: str = "en", chunk_id: str = "") -> float:
        """Share of the query's idf mass present in ``text`` (0..1): rare terms count most."""
        wanted = set(query_terms)
        if not wanted:
            return 0.0
        present = wanted & self.terms_of(chunk_id, text, language)
        total = sum(self.idf(t) for t in wanted)
        return sum(self.idf(t) for t in present) / total if total else 0.0

    def search(self, query: str, n: int, filters: Filters | None = None) -> list[tuple[int, float]]:
        """Top ``n`` (row, score) pairs with a positive score, best first."""
        if not self._shards:
            return []
        token_ids = [i for i in (self._term_id(t) for t in query_terms(query)) if i >= 0]
        if not token_ids:
            return []
        mask = self.admitted(filters)

        def one(shard: _Shard) -> list[tuple[int, float]]:
            weights = mask if mask is None or shard.rows is None else mask[shard.rows]
            return _top(shard.model.get_scores_from_ids(token_ids, weight_mask=weights), n, shard.rows)

        if len(self._shards) == 1:
            return one(self._shards[0])
        hits = [hit for part in _search_pool().map(one, self._shards) for hit in part]
        return sorted(hits, key=lambda hit: (-hit[1], hit[0]))[:n]


# -- per-role indexes of one store --------------------------------------------------------------


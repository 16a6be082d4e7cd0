"""BM25 over the chunks a role may read, persisted once per store revision and memory-mapped.

One index per role scope (the role's ``where`` clause), built with ``bm25s`` and a Snowball
stemmer. At a million chunks, building it means reading every chunk from Chroma and holding
its tokens, so no serving process should do that on start. Instead the index is written to
``<lexical_dir>/<collection>/<revision>/<role>-s<shards>-v<format>/`` and every process maps its
files read-only: N workers on a machine share one copy in the OS page cache, and a process
start reads a manifest, not the knowledge base.

- Keyed by :meth:`KnowledgeStore.revision`, which every ingest write group changes, so a
  process notices new content on its next query, from any writer.
- The first process to need a revision builds it under an exclusive file lock
  (``<lexical_dir>/<collection>/.lock``); the others wait and then map what it wrote. The
  build goes to a temporary directory renamed into place, and a manifest written last lists
  every file's size, so a half-written or truncated index is detected and rebuilt.
- After a build, the indexes of all but the newest two revisions are deleted. A process
  still mapping deleted files keeps reading them (POSIX unlink semantics) until it moves on.
- Everything a query needs per hit comes from the mapped files: chunk ids (and their sorted
  64-bit hashes, to find many rows by id at once), texts, metadata (JSON per row), each
  chunk's term ids (coverage and near-duplicate checks), document frequencies, the
  vocabulary, and one integer code array per filter field so a filter mask is a vectorised
  comparison, not a loop over metadata. The dense side reads its hits' texts from here too
  (see ``assist.retrieval``), so the index is also what a role's answers may quote.

Sharding. A tenant, brand or market gets its own collection, hence its own indexes. Within a
scope, ``lexical_shards`` > 1 splits the chunks by a stable hash of ``doc_id`` into separately
stored BM25 matrices searched by a thread pool and merged by score. BM25 scores are only
comparable under shared statistics, so the builder computes document frequencies and the
average chunk length over the whole scope once and every shard's precomputed term weights use
them: a sharded search returns the same scores as an unsharded one. Shards on separate
machines would need the same: a pass that sums per-shard term counts before the shards
weight their terms (not implemented; see README "Scaling out").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import mmap
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

import bm25s
import numpy as np

from assist.access import ROLE_AUDIENCES, Filters, scope_where
from kb.settings import Settings
from kb.store import KnowledgeStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, the atomic rename still holds
    fcntl = None  # type: ignore[assignment]

# bm25s sets its own logger to DEBUG on import; its per-index messages are noise to us.
logging.getLogger("bm25s").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+", re.UNICODE)

# Bumped whenever the files, the tokenizer or the role scopes change meaning; part of the path.
FORMAT = 2
# Revisions whose indexes survive a build: the current one and the one before it.
KEEP_REVISIONS = 2
# Chunks read from Chroma per request while building.
PAGE = 2000
# A chunk without terms still needs a column in bm25s; this token never comes out of ``terms``.
_EMPTY = "\u2400"
# Filter masks are cached per filter combination, up to about this many bytes.
_MASK_CACHE_BYTES = 64 << 20
_FILTER_FIELDS = tuple(f.name for f in fields(Filters))

# Snowball stemmer and stop-word list per document language (ISO 639-1).
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("english", "STOPWORDS_EN"),
    "de": ("german", "STOPWORDS_GERMAN"),
    "sv": ("swedish", "STOPWORDS_SWEDISH"),
    "da": ("danish", "STOPWORDS_DANISH"),
    "no": ("norwegian", "STOPWORDS_NORWEGIAN"),
    "nl": ("dutch", "STOPWORDS_DUTCH"),
    "fr": ("french", "STOPWORDS_FRENCH"),
    "es": ("spanish", "STOPWORDS_SPANISH"),
    "it": ("italian", "STOPWORDS_ITALIAN"),
    "pt": ("portuguese", "STOPWORDS_PORTUGUESE"),
}

# Words that frame a question rather than name its topic; absent from policy text, they would
# otherwise carry the highest idf and make every question look uncovered.
QUESTION_WORDS = frozenset(
    """how many much what when where which who whom whose why can could would should may might must do does did
    i me my mine we us our you your yours something anything someone anyone get got need want please tell know
    hi hello thanks thank possible able have has had am is are was were be been being it its there""".split()
)


@lru_cache(maxsize=16)
def _stemmer(language: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(LANGUAGES.get(language, LANGUAGES["en"])[0])


@lru_cache(maxsize=16)
def _stopwords(language: str) -> frozenset[str]:
    import bm25s.stopwords as lists

    words = frozenset(getattr(lists, LANGUAGES.get(language, LANGUAGES["en"])[1]))
    return words | QUESTION_WORDS if language == "en" else words


def detect_language(text: str) -> str:
    """The language whose stop words the text uses most; English unless another clearly wins."""
    words = set(_WORD.findall(text.lower()))
    hits = {lang: len(words & _stopwords(lang)) for lang in LANGUAGES}
    best = max(hits, key=lambda lang: hits[lang])
    return best if hits[best] > hits["en"] else "en"


def terms(text: str, language: str = "en") -> list[str]:
    """Lower-cased, stop-word-free, stemmed word tokens in ``language``."""
    stop = _stopwords(language)
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    return _stemmer(language).stemWords(words) if words else []


def query_terms(query: str) -> list[str]:
    """Terms of a question, stemmed in the language it is written in."""
    return terms(query, detect_language(query))


class IndexUnusable(RuntimeError):
    """An index directory exists but cannot be read as a complete index of this format."""


# -- storage ------------------------------------------------------------------------------------


def _open_bytes(path: Path, use_mmap: bool) -> bytes | mmap.mmap:
    if not use_mmap or path.stat().st_size == 0:  # an empty file cannot be mapped
        return path.read_bytes()
    with path.open("rb") as handle:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _open_array(path: Path, use_mmap: bool) -> np.ndarray:
    return np.load(path, mmap_mode="r" if use_mmap else None, allow_pickle=False)


class StringTable(Sequence[str]):
    """Variable-length UTF-8 strings in one blob, addressed by ``offsets`` (n + 1 of them).

    With ``order`` (row numbers sorted by string) it also answers :meth:`find` by binary
    search, touching about log2(n) strings instead of holding a dict of all of them.
    """

    def __init__(self, blob: bytes | mmap.mmap, offsets: np.ndarray, order: np.ndarray | None = None) -> None:
        self._blob = blob
        self._offsets = offsets
        self._order = order

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, row: int) -> str: ...

    @overload
    def __getitem__(self, row: slice) -> list[str]: ...

    def __getitem__(self, row: int | slice) -> str | list[str]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self._blob[int(self._offsets[row]) : int(self._offsets[row + 1])].decode("utf-8")

    def find(self, value: str) -> int:
        """Row holding ``value``, or -1."""
        order = self._order
        if order is None:
            raise TypeError("this table has no sort order")
        lo, hi = 0, len(order)
        while lo < hi:
            mid = (lo + hi) // 2
            if self[int(order[mid])] < value:
                lo = mid + 1
            else:
                hi = mid
        return int(order[lo]) if lo < len(order) and self[int(order[lo])] == value else -1


class Metadatas(Sequence[dict[str, Any]]):
    """Chunk metadata decoded one row at a time from a :class:`StringTable` of JSON objects."""

    def __init__(self, table: StringTable) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    @overload
    def __getitem__(self, row: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, row: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, row: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(row, slice):
            return [json.loads(text) for text in self._table[row]]
        return json.loads(self._table[row])


def _write_strings(directory: Path, name: str, values: Sequence[str], sort: bool) -> None:
    blob = bytearray()
    offsets = array("q", [0])
    for value in values:
        blob += value.encode("utf-8")
        offsets.append(len(blob))
    (directory / f"{name}.bin").write_bytes(blob)
    np.save(directory / f"{name}.offsets.npy", np.array(offsets, dtype=np.int64))
    if sort:
        order = np.array(sorted(range(len(values)), key=values.__getitem__), dtype=np.int64)
        np.save(directory / f"{name}.order.npy", order)


def _id_hash(chunk_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(chunk_id.encode("utf-8"), digest_size=8).digest(), "little")


def _id_hashes(chunk_ids: Iterable[str]) -> np.ndarray:
    """64-bit hashes of chunk ids: a sorted array of them finds many rows in one ``searchsorted``."""
    return np.fromiter((_id_hash(i) for i in chunk_ids), dtype=np.uint64)


def _shard_of(doc_id: str, shards: int) -> int:
    """Stable across processes and machines (unlike ``hash``), so every builder agrees."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") % shards


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
        self._row_terms = array("i")
        self._row_term_offsets = array("q", [0])
        self._codes = {name: array("i") for name in _FILTER_FIELDS}
        self._values: dict[str, dict[str, int]] = {name: {} for name in _FILTER_FIELDS}

    def add(self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        vocab = self._vocab
        for chunk_id, text, meta in zip(ids, texts, metadatas, strict=True):
            tokens = [vocab.setdefault(t, len(vocab)) for t in terms(text, str(meta.get("language", "en")))]
            self._tokens.append(array("i", tokens or [vocab.setdefault(_EMPTY, len(vocab))]))
            self._row_terms.extend(sorted(set(tokens)))
            self._row_term_offsets.append(len(self._row_terms))
            self.ids.append(chunk_id)
            self._shard.append(_shard_of(str(meta.get("doc_id", "")), self.shards))
            self._text_offsets.append(self._text_offsets[-1] + self._texts.write(text.encode("utf-8")))
            encoded = json.dumps(meta, ensure_ascii=False).encode("utf-8")
            self._meta_offsets.append(self._meta_offsets[-1] + self._metas.write(encoded))
            for name in _FILTER_FIELDS:
                known = self._values[name]
                self._codes[name].append(known.setdefault(json.dumps(meta.get(name)), len(known)))

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write everything but the texts and metadata streamed so far, then the manifest."""
        d = self.directory
        self._texts.close()
        self._metas.close()
        n = len(self.ids)
        np.save(d / "texts.offsets.npy", np.array(self._text_offsets, dtype=np.int64))
        np.save(d / "metas.offsets.npy", np.array(self._meta_offsets, dtype=np.int64))
        _write_strings(d, "ids", self.ids, sort=False)
        hashes = _id_hashes(self.ids)
        order = np.argsort(hashes, kind="stable")
        np.save(d / "ids.hash.npy", hashes[order])
        np.save(d / "ids.hash_rows.npy", order.astype(np.int64))
        vocab = list(self._vocab)
        _write_strings(d, "vocab", vocab, sort=True)
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


def _write(directory: Path, shards: int, pages: Iterable[Page], manifest: dict[str, Any]) -> int:
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


class LexicalIndex:
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
        self._masks: dict[Filters, np.ndarray] = {}
        self._mask_limit = max(8, min(256, _MASK_CACHE_BYTES // max(len(self.ids), 1)))
        self._row_terms: dict[int, frozenset[str]] = {}
        self._idf: dict[str, float] = {}

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
            offsets = _open_array(d / f"{name}.offsets.npy", use_mmap)
            order = _open_array(d / f"{name}.order.npy", use_mmap) if sort else None
            return StringTable(_open_bytes(d / f"{name}.bin", use_mmap), offsets, order)

        self.ids = table("ids")
        self._id_hashes = _open_array(d / "ids.hash.npy", use_mmap)
        self._id_hash_rows = _open_array(d / "ids.hash_rows.npy", use_mmap)
        self.texts = table("texts")
        self.metadatas = Metadatas(table("metas"))
        self._vocab = table("vocab", sort=True)
        self._terms = _open_array(d / "terms.npy", use_mmap)
        self._term_offsets = _open_array(d / "terms.offsets.npy", use_mmap)
        self._df = _open_array(d / "df.npy", use_mmap)
        self._codes = {name: _open_array(d / f"filter.{name}.npy", use_mmap) for name in _FILTER_FIELDS}
        self._values: dict[str, list[Any]] = json.loads((d / "filters.json").read_text("utf-8"))
        self._shards = [
            _Shard(
                bm25s.BM25.load(d / name, mmap=use_mmap, load_vocab=False, show_progress=False),
                _open_array(d / name / "rows.npy", use_mmap) if (d / name / "rows.npy").exists() else None,
            )
            for name in manifest["shards"]
        ]
        sizes = {len(self.ids), len(self.texts), len(self.metadatas), len(self._term_offsets) - 1}
        sizes |= {len(self._id_hashes), len(self._id_hash_rows)}
        sizes |= {len(codes) for codes in self._codes.values()}
        sizes.add(sum(int(s.model.scores["num_docs"]) for s in self._shards) if self._shards else n)
        if sizes != {n} or not len(self._df) == len(self._vocab) == manifest["vocabulary"]:
            raise ValueError(f"row counts {sorted(sizes)} disagree with the manifest's {n} chunks")

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        directory: Path | None = None,
        shards: int = 1,
    ) -> LexicalIndex:
        """An index of the given chunks: written to ``directory`` and mapped, or held in memory."""
        if directory is None:
            return cls.in_memory([(ids, texts, metadatas)], shards)
        _write(directory, shards, [(ids, texts, metadatas)], {})
        return cls(directory)

    @classmethod
    def in_memory(cls, pages: Iterable[Page], shards: int = 1) -> LexicalIndex:
        """An index held in this process only: written to a temporary folder, read back, removed.

        For indexes no other process shares: tests, benchmarks, and a lexical folder that
        cannot be written. Pages are streamed into the files as they come, as for a shared build.
        """
        with tempfile.TemporaryDirectory(prefix="kbassist-lexical-") as tmp:
            _write(Path(tmp) / "index", shards, pages, {})
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
        wanted = _id_hashes(chunk_ids)
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


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for the lexical index lock %s held by another process", path)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _remove(path: Path) -> None:
    """Rename away first, so no reader ever sees a half-deleted index under its real name."""
    doomed = path.with_name(f".stale-{path.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def namespace(settings: Settings) -> str:
    """Directory of a knowledge base's indexes: its collection, and which Chroma holds it.

    Two servers may both have a collection called ``kbassist``; their indexes must not meet.
    """
    if not settings.chroma_url:
        return settings.kb_collection
    return f"{settings.kb_collection}-{hashlib.sha256(settings.chroma_url.encode()).hexdigest()[:10]}"


class LexicalIndexes:
    """Per-role BM25 indexes over one store, persisted per revision and shared by processes."""

    def __init__(self, store: KnowledgeStore, settings: Settings | None = None) -> None:
        self.store = store
        settings = settings or store.settings
        self.shards = settings.lexical_shards
        self.root = settings.lexical_path / namespace(settings)
        self.builds = 0  # indexes this object built, as opposed to found on disk
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, LexicalIndex]] = {}

    def path(self, role: str, revision: str) -> Path:
        return self.root / revision / f"{role}-s{self.shards}-v{FORMAT}"

    def for_role(self, role: str) -> LexicalIndex:
        scope = scope_where(role)  # unknown roles fail here, before anything touches the disk
        revision = self.store.revision()
        with self._lock:
            cached = self._cache.get(role)
            if cached and cached[0] == revision:
                return cached[1]
            index = self._open(role, scope, revision)
            index.revision = revision
            self._cache[role] = (revision, index)
            return index

    def prepare(self, roles: Iterable[str] = tuple(ROLE_AUDIENCES)) -> None:
        """Build (or map) every role's index for the store's current revision.

        Called by a writer after it changed the store (``kbassist ingest``, a removal), so the
        first question afterwards maps a finished index instead of building one.
        """
        for role in roles:
            self.for_role(role)

    def _open(self, role: str, scope: dict[str, Any] | None, revision: str) -> LexicalIndex:
        if not revision:  # a store never written to: nothing to key a shared index on
            return self._build_in_memory(scope)
        final = self.path(role, revision)
        with contextlib.suppress(FileNotFoundError, IndexUnusable):
            return self._load(final)
        try:
            return self._build_shared(role, scope, revision, final)
        except OSError as exc:
            # A read-only or full index directory must not stop answers: this process builds
            # its own copy in memory, as every process did before indexes were persisted.
            log.warning(
                "cannot write the lexical index under %s (%s); building it in memory role=%s revision=%s",
                self.root,
                exc.strerror or exc,
                role,
                revision,
            )
            return self._build_in_memory(scope)

    def _build_shared(self, role: str, scope: dict[str, Any] | None, revision: str, final: Path) -> LexicalIndex:
        """Build ``final`` once across processes (under the lock), or map what another process built."""
        with _exclusive(self.root / ".lock"):
            try:
                return self._load(final)  # built by another process while this one waited
            except FileNotFoundError:
                pass
            except IndexUnusable as exc:
                log.warning("lexical index unusable, rebuilding role=%s revision=%s: %s", role, revision, exc)
                _remove(final)
            self._build(role, scope, revision, final)
            self._collect(revision)
            return self._load(final)

    def _load(self, path: Path) -> LexicalIndex:
        index = LexicalIndex(path)
        log.debug("mapped lexical index chunks=%d path=%s", len(index.ids), path)
        return index

    def _chunks(self, scope: dict[str, Any] | None) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]]]]:
        """The scope's chunks in pages, so a build never asks Chroma for everything at once."""
        offset = 0
        while True:
            got = self.store.chunks.get(where=scope, include=["documents", "metadatas"], limit=PAGE, offset=offset)
            ids = list(got["ids"])
            if not ids:
                return
            yield ids, [d or "" for d in got["documents"] or []], [dict(m or {}) for m in got["metadatas"] or []]
            offset += len(ids)
            if len(ids) < PAGE:
                return

    def _build_in_memory(self, scope: dict[str, Any] | None) -> LexicalIndex:
        return LexicalIndex.in_memory(self._chunks(scope), self.shards)

    def _build(self, role: str, scope: dict[str, Any] | None, revision: str, final: Path) -> None:
        started = time.perf_counter()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            chunks = _write(
                tmp,
                self.shards,
                self._chunks(scope),
                {
                    "collection": self.store.settings.kb_collection,
                    "revision": revision,
                    "role": role,
                    "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "builder_pid": os.getpid(),
                },
            )
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.builds += 1
        if self.store.revision() != revision:
            log.info(
                "store changed during the lexical build role=%s revision=%s; the next query rebuilds", role, revision
            )
        log.info(
            "built lexical index role=%s revision=%s chunks=%d shards=%d seconds=%.2f path=%s",
            role,
            revision,
            chunks,
            self.shards,
            time.perf_counter() - started,
            final,
        )

    def _collect(self, current: str) -> None:
        """Delete the indexes of all but the newest revisions, and leftovers of crashed builds.

        Runs under the build lock, so no other process is writing any of these directories.
        """
        revisions = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        others = sorted((p for p in revisions if p.name != current), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP_REVISIONS - 1 :]:
            _remove(old)
            log.info("removed lexical indexes of old revision=%s path=%s", old.name, old)
        for leftover in self.root.glob(".stale-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for kept in [self.root / current, *others[: KEEP_REVISIONS - 1]]:
            for leftover in kept.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)

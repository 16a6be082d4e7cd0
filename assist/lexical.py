"""BM25 over the chunks a role may read, with ``bm25s`` and a Snowball stemmer.

One index per role scope, built from the store with the role's ``where`` clause and rebuilt when
the document registry changes. Market, language, product and document filters are applied as a
``bm25s`` weight mask, so filtered search scores only the admitted chunks.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import bm25s
import numpy as np

from assist.access import Filters, scope_where
from kb.store import KnowledgeStore

# bm25s sets its own logger to DEBUG on import; its per-index messages are noise to us.
logging.getLogger("bm25s").setLevel(logging.WARNING)

_WORD = re.compile(r"\w+", re.UNICODE)


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


@dataclass
class LexicalIndex:
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    model: bm25s.BM25 | None
    doc_freq: Counter[str]
    term_sets: dict[str, frozenset[str]]
    _masks: dict[Filters, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]]) -> LexicalIndex:
        model = None
        tokenized = [terms(t, str(m.get("language", "en"))) for t, m in zip(texts, metadatas, strict=True)]
        doc_freq = Counter(term for tokens in tokenized for term in set(tokens))
        if ids:
            model = bm25s.BM25()
            model.index([tokens or ["\u2400"] for tokens in tokenized], show_progress=False)
        term_sets = {i: frozenset(tokens) for i, tokens in zip(ids, tokenized, strict=True)}
        return cls(ids, texts, metadatas, model, doc_freq, term_sets)

    def terms_of(self, chunk_id: str, text: str, language: str = "en") -> frozenset[str]:
        """The chunk's terms, from the index when it holds the chunk (no re-tokenising per query)."""
        cached = self.term_sets.get(chunk_id)
        return cached if cached is not None else frozenset(terms(text, language))

    def _mask(self, filters: Filters) -> np.ndarray:
        """0/1 weights admitting the chunks that pass ``filters``; cached, filters repeat a lot."""
        cached = self._masks.get(filters)
        if cached is None:
            cached = np.fromiter((filters.matches(m) for m in self.metadatas), dtype=np.float32, count=len(self.ids))
            if len(self._masks) >= 256:
                self._masks.clear()
            self._masks[filters] = cached
        return cached

    def idf(self, term: str) -> float:
        """BM25 idf; a term the knowledge base never uses gets the highest weight."""
        n = max(len(self.ids), 1)
        df = self.doc_freq.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

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
        if self.model is None:
            return []
        vocab = self.model.vocab_dict
        tokens = [t for t in query_terms(query) if t in vocab]
        if not tokens:
            return []
        mask = self._mask(filters) if filters and filters != Filters() else None
        scores = self.model.get_scores(tokens, weight_mask=mask)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


class LexicalIndexes:
    """Per-role BM25 indexes over one store, rebuilt when the store's revision changes."""

    def __init__(self, store: KnowledgeStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, LexicalIndex]] = {}

    def for_role(self, role: str) -> LexicalIndex:
        revision = self.store.revision()
        with self._lock:
            cached = self._cache.get(role)
            if cached and cached[0] == revision:
                return cached[1]
            got = self.store.chunks.get(where=scope_where(role), include=["documents", "metadatas"])
            index = LexicalIndex.build(
                list(got["ids"]),
                [d or "" for d in got["documents"] or []],
                [dict(m or {}) for m in got["metadatas"] or []],
            )
            self._cache[role] = (revision, index)
            return index

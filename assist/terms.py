"""Words as the lexical side sees them: per-language stemming and stop words, language detection.

Shared by the chunk index (which stems each chunk in its document's language), retrieval and
answer selection (which stem the question in the language it is written in), and the coverage-gap
report, so a word is the same term everywhere.
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from importlib import resources
from typing import Any

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


def term_pairs(text: str, language: str = "en") -> list[tuple[str, str]]:
    """(stem, lower-cased word) for each non-stop word of ``text``: what :func:`terms` stems, and from what."""
    stop = _stopwords(language)
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    return list(zip(_stemmer(language).stemWords(words), words, strict=True)) if words else []


def query_terms(query: str) -> list[str]:
    """Terms of a question, stemmed in the language it is written in."""
    return terms(query, detect_language(query))



@lru_cache(maxsize=16)
def common_words(language: str) -> frozenset[str]:
    """Everyday words of ``language`` (see ``assist/wordlists/README.md``); empty for a language without a list."""
    path = resources.files("assist") / "wordlists" / f"{language}.txt.gz"
    try:
        with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
            return frozenset(fh.read().split())
    except (FileNotFoundError, OSError):
        return frozenset()


def is_common_word(word: str, language: str) -> bool:
    """A word people use every day in ``language`` (or in English, which every market mixes in)."""
    word = word.lower()
    return word in common_words(language) or (language != "en" and word in common_words("en"))

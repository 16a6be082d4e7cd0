"""Property-based checks of the cleaner and chunker on arbitrary text."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.chunker import ChunkSpec, chunk_text
from ingest.clean import clean_text
from kb.tokens import count_tokens

SPEC = ChunkSpec(max_tokens=48, overlap_tokens=8)

line = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 8), st.text(max_size=40)),
    st.builds(lambda n, t: f"{n}. {t}", st.integers(1, 30), st.text(max_size=120)),
    st.builds(lambda t: f"| {t} | x |", st.text(max_size=60)),
    st.just("\u200b\u200f\u202e mixed RTL שלום and zero-width"),
    st.just("x" * 2000),
)
documents = st.lists(line, max_size=30).map("\n".join)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
# A token-dense unbroken run of rare characters, once hard-cut inside the word "0A".
@example("# 0:0:\x810:Åזּ\U00012802\U00016280\n0:0:0:0:0\x810Å0Ï0Ø\U000141400A")
def test_never_crashes_never_exceeds_bound_never_loses_words(raw: str) -> None:
    text = clean_text(raw)
    chunks = chunk_text("doc", text, "Title", SPEC)
    assert all(count_tokens(c.text) <= SPEC.max_tokens for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    covered = "\n".join(c.text for c in chunks)
    body_words = [w for ln in text.split("\n") if not re.match(r"^#{1,6}\s", ln) for w in _words(ln)]
    for word in set(body_words):
        assert word in covered or all(len(piece) and piece in covered for piece in re.findall(r".{1,20}", word))


@settings(max_examples=100, deadline=None)
@given(documents)
def test_deterministic(raw: str) -> None:
    text = clean_text(raw)
    assert chunk_text("d", text, "T", SPEC) == chunk_text("d", text, "T", SPEC)
    assert clean_text(text) == text, "cleaning is idempotent"

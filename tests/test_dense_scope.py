"""Dense search without Chroma's metadata filter: same hits as Chroma's filtered query, never outside the role.

The demo KB is small, so every scope can be over-fetched; tests of the exact path set
``MAX_OVERFETCH`` to 0, and tests of the fallback to Chroma set ``EXACT_MAX`` to 0.
"""

from __future__ import annotations

from typing import Any

import pytest

from assist import retrieval
from assist.access import Filters, where_clause
from assist.retrieval import HybridRetriever
from kb.store import KnowledgeStore

QUESTIONS = [
    "How do I return an item and get my money back?",
    "What is the fraud review threshold for a new account?",
    "Customer disputes a purchase, what are the steps?",
    "Can I pay my invoice in three parts?",
]


class _Spy:
    """Counts the filtered Chroma queries a retriever falls back to."""

    def __init__(self, store: KnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = store.query

        def query(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(store, "query", query)


@pytest.mark.parametrize("role", ["customer", "agent", "internal"])
@pytest.mark.parametrize("filters", [Filters(), Filters(market="SE"), Filters(market="DE", language="en")])
def test_over_fetched_hits_are_chromas_filtered_hits(
    demo_store: KnowledgeStore, role: str, filters: Filters, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "EXACT_MAX", 0)
    _assert_same_as_chroma(HybridRetriever(demo_store), role, filters)


@pytest.mark.parametrize(
    ("role", "filters"),
    [("customer", Filters()), ("agent", Filters(market="SE")), ("internal", Filters(doc_id="pay-in-3"))],
)
def test_exactly_scored_hits_are_chromas_filtered_hits(
    demo_store: KnowledgeStore, role: str, filters: Filters, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "MAX_OVERFETCH", 0)
    spy = _Spy(demo_store, monkeypatch)
    _assert_same_as_chroma(HybridRetriever(demo_store), role, filters)
    assert spy.calls == 0, "a small scope is scored from its stored vectors, without Chroma's metadata filter"


def _assert_same_as_chroma(retriever: HybridRetriever, role: str, filters: Filters) -> None:
    index = retriever.lexical.for_role(role)
    for question in QUESTIONS:
        vector = retriever.store.embedder.embed([question])[0]
        got, _ = retriever._dense(vector, 10, index, filters, where_clause(role, filters))
        expected = KnowledgeStore.query(retriever.store, vector, n_results=10, where=where_clause(role, filters))
        assert [hit[0] for hit in got] == [hit[0] for hit in expected]
        assert [hit[1] for hit in got] == [hit[1] for hit in expected]
        assert [hit[2] for hit in got] == [hit[2] for hit in expected]
        assert [hit[3] for hit in got] == pytest.approx([hit[3] for hit in expected], abs=1e-5)


def test_full_access_needs_no_metadata_filter(demo_store: KnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "EXACT_MAX", 0)
    spy = _Spy(demo_store, monkeypatch)
    _assert_same_as_chroma(HybridRetriever(demo_store), "internal", Filters())
    assert spy.calls == 0


def test_an_over_fetch_that_finds_too_few_falls_back_to_chroma(
    demo_store: KnowledgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "EXACT_MAX", 0)
    monkeypatch.setattr(retrieval, "OVERFETCH", 0.2)  # asks for fewer ids than the role needs
    spy = _Spy(demo_store, monkeypatch)
    _assert_same_as_chroma(HybridRetriever(demo_store), "customer", Filters(market="SE"))
    assert spy.calls == len(QUESTIONS)


def test_customer_hits_come_only_from_customer_documents(demo_store: KnowledgeStore) -> None:
    retriever = HybridRetriever(demo_store)
    index = retriever.lexical.for_role("customer")
    vector = demo_store.embedder.embed(["internal fraud score threshold for manual review and code names"])[0]
    hits, _ = retriever._dense(vector, 50, index, Filters(), where_clause("customer"))
    assert len(hits) == 50
    assert {meta["audience"] for _, _, meta, _ in hits} == {"customer"}


def test_an_over_fetch_that_finds_too_few_in_a_small_scope_scores_it_exactly(
    demo_store: KnowledgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "OVERFETCH", 0.2)
    spy = _Spy(demo_store, monkeypatch)
    _assert_same_as_chroma(HybridRetriever(demo_store), "customer", Filters(market="SE"))
    assert spy.calls == 0


def test_a_scope_too_large_to_score_and_too_small_to_over_fetch_is_left_to_chroma(
    demo_store: KnowledgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "EXACT_MAX", 0)
    monkeypatch.setattr(retrieval, "MAX_OVERFETCH", 50)  # the demo KB is small: one document is a large share
    retriever = HybridRetriever(demo_store)
    spy = _Spy(demo_store, monkeypatch)
    index = retriever.lexical.for_role("internal")
    filters = Filters(doc_id="pay-in-3")
    vector = demo_store.embedder.embed(["How many payments are there?"])[0]
    hits, _ = retriever._dense(vector, 5, index, filters, where_clause("internal", filters))
    assert spy.calls == 1
    assert hits and {meta["doc_id"] for _, _, meta, _ in hits} == {"pay-in-3"}


def test_a_filter_nothing_passes_returns_nothing(demo_store: KnowledgeStore) -> None:
    retriever = HybridRetriever(demo_store)
    index = retriever.lexical.for_role("agent")
    filters = Filters(doc_id="no-such-document")
    vector = demo_store.embedder.embed(["anything"])[0]
    assert retriever._dense(vector, 5, index, filters, where_clause("agent", filters)) == ([], {})


def test_a_scope_scored_exactly_is_fetched_once_per_question(
    demo_store: KnowledgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "MAX_OVERFETCH", 0)  # every scope below EXACT_MAX is scored exactly
    retriever = HybridRetriever(demo_store, demo_store.settings.model_copy(update={"candidates": 3}))
    filters = Filters(market="SE")
    index = retriever.lexical.for_role("customer")
    question = "What is the late payment reminder fee and when is it charged?"
    vector = demo_store.embedder.embed([question])[0]
    dense_hits, scored = retriever._dense(vector, 3, index, filters, where_clause("customer", filters))
    assert len(scored) == int(index.admitted(filters).sum()) > 3, "the exact path returns the whole scope's scores"

    fetches: list[int] = []
    similarities = retriever._similarities

    def counted(chunk_ids: list[str], query: Any) -> dict[str, float]:
        fetches.append(len(chunk_ids))
        return similarities(chunk_ids, query)

    monkeypatch.setattr(retriever, "_similarities", counted)
    got = retriever.retrieve(question, "customer", filters)
    lexical_only = [p for p in got.passages if p.lexical > 0 and p.chunk_id not in {h[0] for h in dense_hits}]
    assert lexical_only, "the question must find a passage by its words alone"
    assert fetches == [len(scored)], "lexical hits in an exactly scored scope reuse its similarities"
    assert all(p.dense == pytest.approx(scored[p.chunk_id]) for p in got.passages)

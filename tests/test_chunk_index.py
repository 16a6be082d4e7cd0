"""The persisted BM25 index: built once per store revision, shared by processes, self-healing."""

from __future__ import annotations

import itertools
import logging
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from assist.access import Filters
from assist.chunk_index import ChunkIndex
from assist.role_indexes import KEEP_REVISIONS, ChunkIndexes, namespace
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore

WORDS = (
    "refund return invoice dispute merchant delivery fee reminder card identity verify payment plan "
    "instalment chargeback fraud account closure address email statement interest limit credit"
).split()


def _chunks(n: int, seed: int = 7) -> tuple[list[str], list[str], list[dict[str, object]]]:
    """Synthetic chunks over a small vocabulary, spread over documents, markets and languages."""
    rng = random.Random(seed)
    ids, texts, metas = [], [], []
    for i in range(n):
        doc = f"doc-{i % 23}"
        ids.append(f"{doc}:s:{i}:{i:08x}")
        texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))))
        metas.append(
            {
                "doc_id": doc,
                "market": rng.choice(["SE", "DE", "ALL"]),
                "language": "en",
                "product": rng.choice(["pay-later", "all"]),
                "audience": "customer",
            }
        )
    return ids, texts, metas


@pytest.fixture
def ingested(store: KnowledgeStore, docs_dir: Path) -> KnowledgeStore:
    assert ingest([docs_dir], store).ok
    return store


def test_index_is_built_once_and_mapped_by_every_later_reader(ingested: KnowledgeStore) -> None:
    first = ChunkIndexes(ingested)
    index = first.for_role("internal")
    assert first.builds == 1
    assert (first.path("internal", ingested.revision()) / "manifest.json").is_file()

    second = ChunkIndexes(ingested)  # another process would look the same: nothing in memory yet
    mapped = second.for_role("internal")
    assert second.builds == 0
    assert list(mapped.ids) == list(index.ids)
    assert mapped.search("return item days", 5) == index.search("return item days", 5)


def test_role_scope_holds_only_what_the_role_may_read(ingested: KnowledgeStore) -> None:
    indexes = ChunkIndexes(ingested)
    customer = indexes.for_role("customer")
    assert {m["audience"] for m in customer.metadatas} == {"customer"}
    assert {m["audience"] for m in indexes.for_role("agent").metadatas} == {"customer", "agent"}
    assert customer.search("reminder fee amount", 5) == []  # the fee table is an agent document


def test_a_write_changes_the_revision_and_old_revisions_are_collected(ingested: KnowledgeStore, docs_dir: Path) -> None:
    indexes = ChunkIndexes(ingested)
    revisions = []
    for n in range(KEEP_REVISIONS + 2):
        revisions.append(ingested.revision())
        index = indexes.for_role("internal")
        assert any("version" in t for t in index.texts) == (n > 0)
        (docs_dir / f"note-{n}.md").write_text(f"# Note {n}\n\nA new version {n} of the note.\n", encoding="utf-8")
        assert ingest([docs_dir], ingested).ok
    assert len(set(revisions)) == len(revisions)
    assert indexes.builds == len(revisions)
    kept = sorted(p.name for p in indexes.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert kept == sorted(revisions[-KEEP_REVISIONS:])


def test_a_truncated_index_is_detected_and_rebuilt(ingested: KnowledgeStore, caplog: pytest.LogCaptureFixture) -> None:
    built = ChunkIndexes(ingested)
    expected = built.for_role("internal").search("return item days", 5)
    texts = built.path("internal", ingested.revision()) / "texts.bin"
    texts.write_bytes(texts.read_bytes()[:-5])

    reader = ChunkIndexes(ingested)
    with caplog.at_level(logging.WARNING, logger="assist.role_indexes"):
        index = reader.for_role("internal")
    assert reader.builds == 1
    assert "unusable" in caplog.text
    assert index.search("return item days", 5) == expected


def test_an_index_without_a_manifest_is_rebuilt(ingested: KnowledgeStore) -> None:
    built = ChunkIndexes(ingested)
    built.for_role("agent")
    (built.path("agent", ingested.revision()) / "manifest.json").unlink()
    reader = ChunkIndexes(ingested)
    assert len(reader.for_role("agent").ids) == len(built.for_role("agent").ids)
    assert reader.builds == 1


def test_concurrent_readers_build_the_index_once(ingested: KnowledgeStore) -> None:
    readers = [ChunkIndexes(ingested) for _ in range(4)]
    barrier = threading.Barrier(len(readers))
    sizes: list[int] = []

    def read(reader: ChunkIndexes) -> None:
        barrier.wait()
        sizes.append(len(reader.for_role("internal").ids))

    threads = [threading.Thread(target=read, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.builds for r in readers) == 1
    assert len(set(sizes)) == 1 and sizes[0] == ingested.chunk_count()


def test_an_unwritable_index_directory_falls_back_to_memory(
    tmp_path: Path, docs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the index directory should be")  # fails for root too
    store = KnowledgeStore(Settings(data_dir=tmp_path / "data", lexical_dir=blocker / "lexical"))
    assert ingest([docs_dir], store).ok
    indexes = ChunkIndexes(store)
    with caplog.at_level(logging.WARNING, logger="assist.role_indexes"):
        index = indexes.for_role("internal")
    assert "building it in memory" in caplog.text
    assert len(index.ids) == store.chunk_count()
    assert index.search("return item days", 3)


def test_indexes_of_different_servers_do_not_meet(tmp_path: Path) -> None:
    one = Settings(data_dir=tmp_path, chroma_url="http://127.0.0.1:8000")
    two = Settings(data_dir=tmp_path, chroma_url="http://127.0.0.1:9000")
    assert namespace(one) != namespace(two) != namespace(Settings(data_dir=tmp_path))


@pytest.mark.parametrize("shards", [2, 5])
def test_sharded_search_returns_the_unsharded_scores(tmp_path: Path, shards: int) -> None:
    ids, texts, metas = _chunks(400)
    whole = ChunkIndex.build(ids, texts, metas, directory=tmp_path / "whole")
    split = ChunkIndex.build(ids, texts, metas, directory=tmp_path / "split", shards=shards)
    assert split.shard_count == shards
    for query, filters in itertools.product(
        ["refund card fee", "dispute chargeback merchant", "interest", "nothing matches zzz"],
        [None, Filters(market="SE"), Filters(product="pay-later", doc_id="doc-3")],
    ):
        expected = whole.search(query, 10, filters)
        got = split.search(query, 10, filters)
        assert [row for row, _ in got] == [row for row, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)


def test_persisted_and_in_memory_indexes_agree(tmp_path: Path) -> None:
    ids, texts, metas = _chunks(120)
    mapped = ChunkIndex.build(ids, texts, metas, directory=tmp_path / "index")
    memory = ChunkIndex.build(ids, texts, metas)
    assert mapped.search("refund fee", 20) == memory.search("refund fee", 20)
    assert all(mapped.row_of(i) == row for row, i in enumerate(ids))
    assert mapped.row_of("no-such-chunk") == -1
    assert [mapped.idf(t) for t in ("refund", "unknown")] == [memory.idf(t) for t in ("refund", "unknown")]
    assert list(mapped.texts) == texts and list(mapped.metadatas) == metas


def test_filter_mask_has_the_semantics_of_filters(tmp_path: Path) -> None:
    ids, texts, metas = _chunks(200)
    index = ChunkIndex.build(ids, texts, metas, directory=tmp_path / "index")
    for filters in [
        Filters(market="SE"),
        Filters(market="de"),
        Filters(product="pay-later"),
        Filters(language="EN", doc_id="doc-4"),
        Filters(market="SE", product="all"),
        Filters(doc_id="no-such-doc"),
    ]:
        expected = [filters.matches(m) for m in metas]
        assert index._mask(filters).tolist() == expected
        assert all(expected[row] for row, _ in index.search("refund card fee dispute", 50, filters))


def test_an_empty_scope_searches_to_nothing(tmp_path: Path) -> None:
    index = ChunkIndex.build([], [], [], directory=tmp_path / "empty")
    assert len(index.ids) == 0
    assert index.search("refund", 5) == []

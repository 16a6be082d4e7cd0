"""An ingest killed with SIGKILL at any point converges, on re-run, to what a clean run stores.

And at no point can a customer retrieve a chunk the store does not give customers: a document
made internal is killed at every write step of its re-ingest (the revision change before the
writes, segments, chunks, the deletes, the registry record, the revision change after), with a
reader building the role indexes at the worst moment, embedded and against a ``chroma run``
server (killed, and stopped at that moment). What a customer retrieves is checked right after
the kill and after the re-run; the role indexes after the re-run must hold exactly what Chroma's
``where`` for the role admits, with the same metadata.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assist.access import audiences_for, scope_where
from assist.retrieval import HybridRetriever
from assist.role_indexes import ChunkIndexes
from ingest.pipeline import ingest
from kb import store as kb_store
from kb.settings import Settings
from kb.store import KnowledgeStore, StoreUnavailable
from tests.support.chroma_server import ChromaServer
from tests.support.faults import REPO
from tests.support.kill_at import step_name
from tests.support.stores import Snapshot, clean_snapshot, demo_subset, snapshot


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_subset(tmp_path_factory.mktemp("corpus"), 24)


@pytest.fixture(scope="module")
def clean(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return clean_snapshot(corpus, tmp_path_factory.mktemp("clean"))


def test_killed_ingest_converges(corpus: Path, clean, tmp_path: Path) -> None:
    partial_states = []
    for n, kill_after_s in enumerate((3.0, 6.0, 9.0)):
        data_dir = tmp_path / str(n)
        # Small groups: documents are written throughout the run, so kills land between writes.
        env = {**os.environ, "KBASSIST_DATA_DIR": str(data_dir), "KBASSIST_INGEST_GROUP_CHUNKS": "8"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kbassist_cli", "ingest", str(corpus)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(kill_after_s)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if (data_dir / "chroma").exists():
            partial_states.append(len(snapshot(data_dir)[1]))
        report = ingest([corpus], KnowledgeStore(Settings(data_dir=data_dir)))
        assert report.ok
        chunks, registry = snapshot(data_dir)
        assert registry == clean[1]
        assert chunks == clean[0], "same chunk ids and texts, no duplicates, no orphans"
    assert any(0 < docs < len(clean[1]) for docs in partial_states), f"no kill landed mid-ingest: {partial_states}"


# -- a document made internal, killed at every write step ---------------------------------------

REFUNDS = """---
title: Refunds
audience: customer
---

# Refunds

Refunds are paid back to the original payment method within 30 days of the return arriving.
"""

GOODWILL = """---
title: Goodwill vouchers
audience: {audience}
---

# Goodwill vouchers

## When

A goodwill voucher can be offered when a parcel arrives late: the voucher is worth 15 euros.

## Limits

No customer receives more than {limit} goodwill vouchers in a calendar year, whatever the reason.
"""

# Every write of re-ingesting GOODWILL made internal (one changed section: one chunk rewritten in
# place with the new audience, one new chunk, one stale chunk deleted), in the order they happen.
STEPS = (
    "registry.modify#1",  # revision changed, write-in-progress marked: nothing written yet
    "segments.upsert#1",
    "chunks.delete#1",  # the old version's stale chunk is gone
    "segments.delete#1",
    "chunks.upsert#1",  # the chunks now say internal
    "registry.upsert#1",  # the registry says internal: between this and the next, the old bug
    "registry.modify#2",  # revision changed again, marker cleared: the group is done
)
QUESTIONS = ("How many goodwill vouchers can a customer receive?", "goodwill voucher late parcel 15 euros")


def _write_corpus(folder: Path, audience: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "refunds.md").write_text(REFUNDS)
    limit = "two" if audience == "customer" else "three"
    (folder / "goodwill.md").write_text(GOODWILL.format(audience=audience, limit=limit))
    return folder


def _store_chunks(store: KnowledgeStore, where: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    got = store.chunks.get(where=where, include=["metadatas"])
    return {i: dict(m or {}) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)}


def _customer_sees_only_customer_chunks(store: KnowledgeStore) -> set[str]:
    """What a customer retrieves (a fresh process's retriever); every passage customer in the store."""
    retriever = HybridRetriever(store)
    current = _store_chunks(store)
    seen: set[str] = set()
    for question in QUESTIONS:
        for passage in retriever.retrieve(question, "customer").passages:
            stored = current.get(passage.chunk_id, {})
            assert stored.get("audience") == "customer", (passage.chunk_id, stored or "not in the store")
            assert passage.metadata["audience"] == "customer"
            seen.add(passage.doc_id)
    return seen


def _indexes_match_the_store(store: KnowledgeStore) -> None:
    """Each role's index holds exactly the chunks Chroma's ``where`` for the role admits, as Chroma has them."""
    for role in ("customer", "agent", "internal"):
        index = ChunkIndexes(store).for_role(role)
        expected = _store_chunks(store, scope_where(role))
        assert set(index.ids) == set(expected), role
        for row, chunk_id in enumerate(index.ids):
            assert index.metadatas[row]["audience"] in audiences_for(role)
            assert index.metadatas[row] == expected[chunk_id], (role, chunk_id)


def _store_snapshot(store: KnowledgeStore) -> Snapshot:
    got = store.chunks.get(include=["documents"])
    return dict(zip(got["ids"], got["documents"], strict=True)), {d.doc_id: d.chunk_count for d in store.documents()}


@pytest.fixture(scope="module")
def made_internal(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """What a clean run stores for the corpus with GOODWILL internal."""
    folder = _write_corpus(tmp_path_factory.mktemp("internal-corpus"), "internal")
    return clean_snapshot(folder, tmp_path_factory.mktemp("internal-clean"))


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path_factory.mktemp("crash-chroma"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _settings(tmp_path: Path, server: ChromaServer | None) -> Settings:
    if server is None:
        return Settings(data_dir=tmp_path / "data")
    if not server.running:
        server.start()
    return Settings(
        data_dir=tmp_path / "data",
        chroma_url=server.url,
        collection=f"crash-{uuid.uuid4().hex[:8]}",
        chroma_retries=1,
        chroma_retry_backoff_s=0.05,
    )


def _published_customer_corpus(tmp_path: Path, settings: Settings) -> Path:
    """GOODWILL ingested for customers, every role index built; then its file made internal."""
    folder = _write_corpus(tmp_path / "docs", "customer")
    store = KnowledgeStore(settings)
    assert ingest([folder], store).ok
    ChunkIndexes(store).prepare()
    assert _customer_sees_only_customer_chunks(store) == {"refunds", "goodwill"}
    _write_corpus(folder, "internal")
    return folder


def _env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "KBASSIST_DATA_DIR": str(settings.data_dir)}
    if settings.chroma_url:
        env |= {"KBASSIST_CHROMA_URL": settings.chroma_url, "KBASSIST_COLLECTION": settings.collection}
    return env


def _after_the_kill_and_rerun(
    folder: Path, settings: Settings, step: str, reader_revision: str, expected: Snapshot
) -> None:
    store = KnowledgeStore(settings)
    # Right after the kill, before anything repairs the store: a customer gets nothing internal.
    seen = _customer_sees_only_customer_chunks(store)
    if STEPS.index(step) >= STEPS.index("chunks.upsert#1"):
        assert "goodwill" not in seen, "every goodwill chunk left is internal (or its stale one deleted)"
    interrupted = step != STEPS[-1]
    assert bool(store.write_in_progress()) == interrupted

    report = ingest([folder], store)
    assert report.ok
    assert report.recovered == interrupted
    written = STEPS.index(step) >= STEPS.index("registry.upsert#1")
    assert report.unchanged == (["goodwill", "refunds"] if written else ["refunds"])
    assert not store.write_in_progress()
    assert store.revision() != reader_revision, "no index built during the killed run is current"
    _indexes_match_the_store(store)
    assert _customer_sees_only_customer_chunks(store) == {"refunds"}
    assert store.document("goodwill").audience == "internal"
    assert _store_snapshot(store) == expected


@pytest.mark.parametrize("mode", ["embedded", "server"])
@pytest.mark.parametrize("step", STEPS)
def test_killed_at_every_write_step_a_customer_never_gets_the_internal_document(
    step: str, mode: str, made_internal: Snapshot, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, chroma_server if mode == "server" else None)
    folder = _published_customer_corpus(tmp_path, settings)
    # A reader builds every role's index right after the revision changed, before any chunk did.
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.kill_at", str(folder), step, STEPS[0]],
        env=_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, f"step {step} never happened: {done.stderr[-2000:]}"
    store = KnowledgeStore(settings)
    reader_revision = store.revision() if step != STEPS[-1] else ""
    if step != STEPS[-1]:
        # The reader's index is on the current revision and, past the chunk write, says customer
        # for chunks the store now calls internal: only the check at retrieval stands between.
        stale = ChunkIndexes(store).for_role("customer")
        current = _store_chunks(store)
        lagging = [i for r, i in enumerate(stale.ids) if current.get(i, {}) != stale.metadatas[r]]
        assert bool(lagging) == (STEPS.index(step) >= STEPS.index("chunks.delete#1")), lagging
    _after_the_kill_and_rerun(folder, settings, step, reader_revision, made_internal)


@pytest.mark.parametrize("step", ["chunks.upsert#1", "registry.upsert#1", "registry.modify#2"])
def test_server_stopped_at_a_write_step_a_customer_never_gets_the_internal_document(
    step: str, made_internal: Snapshot, chroma_server: ChromaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, chroma_server)
    folder = _published_customer_corpus(tmp_path, settings)
    original = kb_store.KnowledgeStore._invoke
    seen: dict[str, int] = {}

    def invoke(self: KnowledgeStore, operation: str, call: Any, write: bool, policy: Any) -> Any:
        result = original(self, operation, call, write, policy)
        name = step_name(operation, settings.kb_collection) if write else None
        if name:
            seen[name] = seen.get(name, 0) + 1
            if f"{name}#{seen[name]}" == step:
                chroma_server.stop()  # the server goes away right after this write
        return result

    monkeypatch.setattr(kb_store.KnowledgeStore, "_invoke", invoke)
    store = KnowledgeStore(settings)
    if step == STEPS[-1]:
        assert ingest([folder], store).updated == ["goodwill"]  # the last write went through
    else:
        with pytest.raises(StoreUnavailable):
            ingest([folder], store)
    monkeypatch.undo()
    chroma_server.start()
    _after_the_kill_and_rerun(folder, settings, step, "", made_internal)


def test_an_interrupted_publish_is_finished_by_publishing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, None)
    folder = _write_corpus(tmp_path / "docs", "customer")
    store = KnowledgeStore(settings)
    assert ingest([folder], store, publish=False).ok
    ChunkIndexes(store).prepare()
    assert _customer_sees_only_customer_chunks(store) == set(), "nothing published yet"
    original = kb_store.KnowledgeStore._invoke

    def invoke(self: KnowledgeStore, operation: str, call: Any, write: bool, policy: Any) -> Any:
        if step_name(operation, settings.kb_collection) == "registry.upsert":
            raise StoreUnavailable("the store went away")  # the chunks are marked, the registry is not
        return original(self, operation, call, write, policy)

    monkeypatch.setattr(kb_store.KnowledgeStore, "_invoke", invoke)
    with pytest.raises(StoreUnavailable):
        store.publish_documents(["goodwill"])
    monkeypatch.undo()
    assert store.write_in_progress() and store.document("goodwill").published is False
    assert [d.doc_id for d in store.unpublished()] == ["goodwill", "refunds"], "still listed for the owner"
    assert store.publish_documents(["goodwill", "refunds"]) == {"goodwill": 2, "refunds": 1}
    assert not store.write_in_progress() and not store.unpublished()
    _indexes_match_the_store(store)
    assert _customer_sees_only_customer_chunks(store) == {"goodwill", "refunds"}
    with pytest.raises(KeyError):
        store.publish_documents(["nope"])

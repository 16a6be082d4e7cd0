"""What a knowledge base holds, in a form two runs can be compared by: shared by the fault tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from ingest.pipeline import ingest
from kb.bundled import demo_docs_path
from kb.settings import Settings
from kb.store import KnowledgeStore

Snapshot = tuple[dict[str, str], dict[str, int]]


def snapshot(data_dir: Path) -> Snapshot:
    """``({chunk_id: text}, {doc_id: chunk_count})`` of the embedded store under ``data_dir``, opened afresh."""
    store = KnowledgeStore(Settings(data_dir=data_dir))
    got = store.chunks.get(include=["documents"])
    chunks = dict(zip(got["ids"], got["documents"], strict=True))
    return chunks, {d.doc_id: d.chunk_count for d in store.documents()}


def demo_subset(folder: Path, count: int) -> Path:
    """The first ``count`` files of the demo knowledge base (sidecars included), copied into ``folder``."""
    for path in sorted(demo_docs_path().iterdir())[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def clean_snapshot(corpus: Path, data_dir: Path) -> Snapshot:
    """What an uninterrupted ingest of ``corpus`` stores: the reference a faulted run must converge to."""
    assert ingest([corpus], KnowledgeStore(Settings(data_dir=data_dir))).ok
    return snapshot(data_dir)


def chunks_of(chunks: dict[str, str], doc_id: str) -> dict[str, str]:
    """The chunks of one document (chunk ids start with ``doc_id:``)."""
    return {i: t for i, t in chunks.items() if i.split(":", 1)[0] == doc_id}

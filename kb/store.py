"""The Chroma-backed store: a chunk collection plus a document registry collection.

Both live in the same Chroma (embedded ``PersistentClient`` or a server through ``HttpClient``),
so a deployment pointing several processes at one server sees one consistent registry.

Writes for a document follow one order, which is what makes an interrupted ingest converge
on re-run: (1) upsert the new chunks (ids are content-derived, so unchanged chunks are
rewritten in place), (2) delete that document's chunks that are not in the new set, (3) write
the registry record last. Until step 3 the registry still holds the old hash, so the next run
redoes the document; step 2 reads the store, not the registry, so no orphan survives.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings

from kb.embedding import MiniLMEmbedding, get_embedding_function
from kb.models import Chunk, DocumentRecord
from kb.settings import Settings

log = logging.getLogger(__name__)

_REGISTRY_SUFFIX = "__documents"


class StoreUnavailable(RuntimeError):
    """The configured Chroma cannot be reached or opened."""


@dataclass(frozen=True)
class KBStats:
    documents: int
    chunks: int
    by_audience: dict[str, int]
    by_market: dict[str, int]
    by_language: dict[str, int]
    by_format: dict[str, int]
    stale: list[str]


def open_client(settings: Settings) -> chromadb.ClientAPI:
    """Embedded Chroma under ``data_dir``, or a Chroma server when ``chroma_url`` is set."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StoreUnavailable(f"KBASSIST_CHROMA_URL must look like http://host:8000, got {settings.chroma_url!r}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            return chromadb.HttpClient(
                host=url.hostname, port=port, ssl=url.scheme == "https", settings=chroma_settings
            )
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError here
            raise StoreUnavailable(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}") from exc
    try:
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open the store at {settings.chroma_path}: {exc}") from exc


class KnowledgeStore:
    """Chunks and the document registry of one knowledge base."""

    def __init__(self, settings: Settings, client: chromadb.ClientAPI | None = None) -> None:
        self.settings = settings
        self.client = client or open_client(settings)
        self.embedder: MiniLMEmbedding = get_embedding_function(settings.embedding_model, settings.embedding_batch_size)
        self.chunks = self.client.get_or_create_collection(
            settings.collection,
            embedding_function=self.embedder,  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": settings.embedding_model},
        )
        # The registry holds metadata only; Chroma requires a vector, so every record gets [1.0].
        self.registry = self.client.get_or_create_collection(
            settings.collection + _REGISTRY_SUFFIX, embedding_function=None, configuration={"hnsw": {"space": "l2"}}
        )
        self._max_batch = max(1, min(self.client.get_max_batch_size(), 2048))

    # -- registry -----------------------------------------------------------------------------

    def documents(self) -> list[DocumentRecord]:
        """Every registered document, sorted by id."""
        got = self.registry.get(include=["metadatas"])
        records = [DocumentRecord.from_metadata(dict(m or {})) for m in got["metadatas"] or []]
        return sorted(records, key=lambda r: r.doc_id)

    def document(self, doc_id: str) -> DocumentRecord | None:
        got = self.registry.get(ids=[doc_id], include=["metadatas"])
        metas = got["metadatas"] or []
        return DocumentRecord.from_metadata(dict(metas[0] or {})) if metas else None

    def revision(self) -> str:
        """A token that changes with every write to this knowledge base, from any process.

        Cheap to read (collection metadata), so caches built from the chunks (the BM25 index)
        can check it on every query.
        """
        meta = self.client.get_collection(self.registry.name).metadata or {}
        return str(meta.get("revision", ""))

    def _bump_revision(self) -> None:
        self.registry.modify(metadata={"revision": uuid.uuid4().hex})

    # -- chunks -------------------------------------------------------------------------------

    def chunk_ids(self, doc_id: str) -> set[str]:
        """Ids of the chunks stored for ``doc_id``, read from the chunk collection itself."""
        return set(self.chunks.get(where={"doc_id": doc_id}, include=[])["ids"])

    def chunk_count(self) -> int:
        return self.chunks.count()

    def replace_documents(self, items: Sequence[tuple[DocumentRecord, Sequence[Chunk], np.ndarray]]) -> None:
        """Make the store hold exactly the given chunks for each document, then register it.

        Documents are written one after the other in the crash-safe order (module docstring);
        the revision token changes once for the whole group.
        """
        for record, chunks, embeddings in items:
            self._write_document(record, chunks, embeddings)
        if items:
            self._bump_revision()

    def replace_document(self, record: DocumentRecord, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        self.replace_documents([(record, chunks, embeddings)])

    def _write_document(self, record: DocumentRecord, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk is required")
        for start in range(0, len(chunks), self._max_batch):
            part = chunks[start : start + self._max_batch]
            self.chunks.upsert(
                ids=[c.id for c in part],
                documents=[c.text for c in part],
                metadatas=[dict(c.metadata) for c in part],
                embeddings=embeddings[start : start + self._max_batch],
            )
        stale = self.chunk_ids(record.doc_id) - {c.id for c in chunks}
        self._delete_chunks(stale)
        record.chunk_count = len(chunks)
        self.registry.upsert(ids=[record.doc_id], embeddings=[[1.0]], metadatas=[record.to_metadata()])
        log.info("stored doc_id=%s chunks=%d removed_stale=%d", record.doc_id, len(chunks), len(stale))

    def delete_document(self, doc_id: str) -> int:
        """Remove a document's chunks, then its registry record. Returns chunks removed."""
        ids = self.chunk_ids(doc_id)
        self._delete_chunks(ids)
        self.registry.delete(ids=[doc_id])
        self._bump_revision()
        log.info("deleted doc_id=%s chunks=%d", doc_id, len(ids))
        return len(ids)

    def _delete_chunks(self, ids: Iterable[str]) -> None:
        ids = sorted(ids)
        for start in range(0, len(ids), self._max_batch):
            self.chunks.delete(ids=ids[start : start + self._max_batch])

    def query(
        self, embedding: np.ndarray, n_results: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, str, dict[str, Any], float]]:
        """Nearest chunks as ``(id, text, metadata, cosine_similarity)``, best first."""
        res = self.chunks.query(
            query_embeddings=[embedding],
            n_results=n_results,
            where=where or None,
            include=["documents", "metadatas", "distances"],
        )
        ids = res["ids"][0]
        docs = (res["documents"] or [[]])[0]
        metas = (res["metadatas"] or [[]])[0]
        dists = (res["distances"] or [[]])[0]
        return [(i, d or "", dict(m or {}), 1.0 - float(s)) for i, d, m, s in zip(ids, docs, metas, dists, strict=True)]

    # -- reporting ----------------------------------------------------------------------------

    def stats(self, today: date | None = None) -> KBStats:
        docs = self.documents()
        today = today or date.today()
        stale = [d.doc_id for d in docs if d.review_by and d.review_by < today.isoformat()]
        return KBStats(
            documents=len(docs),
            chunks=self.chunk_count(),
            by_audience=dict(Counter(d.audience for d in docs)),
            by_market=dict(Counter(d.market for d in docs)),
            by_language=dict(Counter(d.language for d in docs)),
            by_format=dict(Counter(d.format for d in docs)),
            stale=stale,
        )

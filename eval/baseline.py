"""The plain LangChain pipeline every report is measured against.

Why: a number for kbassist means little on its own; beside it stands what a user would otherwise
build from the documentation: RecursiveCharacterTextSplitter (1000 characters, 200 overlap),
Chroma through ``langchain_chroma``, the same embedding model, top-4 similarity search. The
documents are read with kbassist's loaders (so PDF, Word and HTML reach it as the same text)
and carry their audience and market, so the baseline obeys the same access rule; everything
after loading is stock LangChain. This is the one place the baseline is defined (the
benchmarks import it too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assist.access import Filters, where_clause
from ingest.errors import LoadError
from ingest.loaders import load_document
from ingest.pipeline import discover
from kb.embedding import MiniLMEmbedding

CHUNK_SIZE, CHUNK_OVERLAP, TOP_K = 1000, 200, 4


@dataclass(frozen=True)
class BaselineHit:
    doc_id: str
    text: str


class LangChainBaseline:
    """A Chroma index built the stock LangChain way over a folder of documents."""

    def __init__(self, db: Any, chunks: int, ingest_s: float) -> None:
        self.db = db
        self.chunks = chunks
        self.ingest_s = ingest_s

    @classmethod
    def build(
        cls, docs: Path, embedder: MiniLMEmbedding, workdir: Path, max_bytes: int = 25_000_000
    ) -> LangChainBaseline:
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_core.embeddings import Embeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        class SameEmbedder(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return embedder.embed(texts).tolist()

            def embed_query(self, text: str) -> list[float]:
                return embedder.embed([text])[0].tolist()

        sources = discover([docs]).sources
        documents = []
        for source in sources:
            try:
                loaded = load_document(source.path, source.root, max_bytes)
            except LoadError:
                continue  # the same files kbassist rejects are absent here too
            meta = {k: loaded.metadata.get(k, "") for k in ("audience", "market", "language", "product")}
            documents.append(Document(page_content=loaded.text, metadata={"doc_id": loaded.doc_id, **meta}))
        chunks = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP).split_documents(
            documents
        )
        started = time.perf_counter()
        db = Chroma.from_documents(
            chunks, SameEmbedder(), persist_directory=str(workdir / "langchain"), collection_name="langchain-baseline"
        )
        return cls(db, len(chunks), time.perf_counter() - started)

    def search(self, query: str, role: str = "internal", filters: Filters | None = None, k: int = TOP_K) -> list[BaselineHit]:
        """Top-k similarity search under the same role scope and filters kbassist applies."""
        where = where_clause(role, filters)
        found = self.db.similarity_search(query, k=k, filter=where)
        return [BaselineHit(str(d.metadata.get("doc_id", "")), d.page_content) for d in found]

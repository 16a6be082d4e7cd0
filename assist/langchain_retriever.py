"""The hybrid retriever as a LangChain ``BaseRetriever``, to drop into any LangChain app."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from assist.access import Filters
from assist.retrieval import HybridRetriever


class KBAssistRetriever(BaseRetriever):
    """Role-scoped hybrid search; each ``Document`` carries chunk id, scores and source metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: HybridRetriever
    role: str = "customer"
    filters: Filters = Filters()
    k: int = 5

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        result = self.retriever.retrieve(query, self.role, self.filters, k=self.k)
        return [
            Document(
                id=p.chunk_id,
                page_content=p.text,
                metadata={**p.metadata, "chunk_id": p.chunk_id, "score": p.score, "confidence": result.confidence},
            )
            for p in result.passages
        ]

"""Plain records passed between ingest, the store and its readers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

AUDIENCES = ("customer", "agent", "internal")

# Metadata keys a document may carry (front matter or sidecar); copied onto each of its chunks.
DOCUMENT_METADATA_KEYS = ("title", "audience", "market", "language", "product", "owner", "review_by", "version")


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage: text (heading path prefixed) plus flat, filterable metadata."""

    id: str
    text: str
    metadata: dict[str, str | int | float | bool]


@dataclass
class DocumentRecord:
    """What the registry knows about one ingested document."""

    doc_id: str
    path: str
    sha256: str
    chunk_count: int
    ingested_at: str
    format: str
    title: str = ""
    audience: str = "internal"
    market: str = "ALL"
    language: str = "en"
    product: str = ""
    owner: str = ""
    review_by: str = ""
    version: str = ""
    # False for a document added or changed through the app until an owner publishes it: no role
    # retrieves it, only the owner's preview shows it. Records of earlier releases have no such
    # key and were published by being ingested.
    published: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str | int | bool]:
        """Flat metadata for Chroma (no None, no nesting)."""
        data = asdict(self)
        data.pop("extra")
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> DocumentRecord:
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta and k != "extra"}
        return cls(**known)

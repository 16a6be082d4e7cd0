"""Staff operations on whole documents: look at one, remove some.

The CLI (``kbassist kb show | remove``) and the owner workspace of the app call these functions
and never the store directly, so every removal and inspection passes one place. That is where
the audit record goes: ``actor`` names who asked (the shell's user, ``cli:<user>``, or the
signed-in owner, ``account:<name>``), and each call logs what it did to which document.

Removing is all or nothing on the ids: an unknown id stops the call before anything is deleted.
The store changes its revision once after the deletes, and the persisted BM25 index of every
role is keyed by that revision, so no role can retrieve a removed document afterwards, in this
process or any other.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kb.models import DocumentRecord
from kb.store import KnowledgeStore

log = logging.getLogger(__name__)


class UnknownDocuments(LookupError):
    """Some of the given document ids are not in the knowledge base; nothing was changed."""

    def __init__(self, missing: Sequence[str], known: Sequence[str]) -> None:
        self.missing = list(missing)
        hints = []
        for doc_id in self.missing:
            close = difflib.get_close_matches(doc_id, known, n=3, cutoff=0.6)
            hints.append(f"{doc_id!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        super().__init__(
            f"no such document{'s' if len(missing) > 1 else ''} in the knowledge base: {'; '.join(hints)}. "
            "Nothing was removed; `kbassist kb list` shows the ids."
        )


@dataclass(frozen=True)
class ChunkView:
    """One stored passage of a document, as an owner inspects it."""

    chunk_id: str
    position: int
    section: str
    tokens: int
    text: str


@dataclass(frozen=True)
class DocumentView:
    """A document's registry record and its passages in reading order."""

    record: DocumentRecord
    chunks: list[ChunkView]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self.record), "chunks": [asdict(c) for c in self.chunks]}


@dataclass(frozen=True)
class Removed:
    doc_id: str
    title: str
    path: str
    chunks: int


def find_documents(store: KnowledgeStore, doc_ids: Sequence[str]) -> list[DocumentRecord]:
    """The records of ``doc_ids`` (duplicates dropped, order kept), or :class:`UnknownDocuments`."""
    wanted = list(dict.fromkeys(doc_ids))
    records = {d.doc_id: d for d in store.documents()}
    missing = [d for d in wanted if d not in records]
    if missing:
        raise UnknownDocuments(missing, sorted(records))
    return [records[d] for d in wanted]


def documents_under(store: KnowledgeStore, folder: Path) -> list[str]:
    """Ids of the documents whose source file lies inside ``folder`` (resolved), sorted."""
    root = folder.expanduser().resolve()
    return [d.doc_id for d in store.documents() if d.path and Path(d.path).is_relative_to(root)]


def show_document(store: KnowledgeStore, doc_id: str, actor: str = "") -> DocumentView:
    """Metadata, source path and passages of one document (:class:`UnknownDocuments` if absent)."""
    record = store.document(doc_id)
    if record is None:
        raise UnknownDocuments([doc_id], sorted(d.doc_id for d in store.documents()))
    chunks = [
        ChunkView(
            chunk_id=chunk_id,
            position=int(meta.get("position", 0)),
            section=str(meta.get("section", "")),
            tokens=int(meta.get("tokens", 0)),
            text=text,
        )
        for chunk_id, text, meta in store.document_chunks(doc_id)
    ]
    log.info("shown doc_id=%s chunks=%d actor=%s", doc_id, len(chunks), actor or "-")
    return DocumentView(record, chunks)


def remove_documents(store: KnowledgeStore, doc_ids: Sequence[str], actor: str = "") -> list[Removed]:
    """Remove documents (chunks, registry record; role indexes retire with the revision).

    Every id is checked first: one unknown id raises :class:`UnknownDocuments` and nothing is
    removed. Returns what was removed, for the caller to report.
    """
    records = find_documents(store, doc_ids)
    counts = store.delete_documents([r.doc_id for r in records])
    removed = [Removed(r.doc_id, r.title, r.path, counts[r.doc_id]) for r in records]
    for item in removed:
        log.info("removed doc_id=%s chunks=%d actor=%s", item.doc_id, item.chunks, actor or "-")
    return removed

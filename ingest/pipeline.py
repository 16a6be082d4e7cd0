"""The ingest run: discover files, skip unchanged ones, load, chunk, embed in batches, store.

A file that fails to load is reported with its reason and left out; every other file still goes
in, and the failed file's previous version (if any) stays in the store untouched. All of a
document's chunks are embedded before anything of it is written, so bad input never leaves a
half-written document behind.

A store that cannot be written (disk full, read-only folder, server gone) stops the run with
:class:`kb.store.StoreUnavailable`: every later write would fail the same way. The documents
written before stay as they were, and running the same ingest again finishes the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingest.chunker import CHUNKER_VERSION, ChunkSpec, chunk_text
from ingest.errors import LoadError
from ingest.loaders import LoadedDocument, file_digest, is_supported, load_document
from kb.embedding import EMBEDDING_ID
from kb.models import Chunk, DocumentRecord
from kb.segments import SEGMENTER_VERSION, chunk_segments, embedding_text, segment_id
from kb.store import DocumentWrite, KnowledgeStore, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass
class FileError:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class IngestReport:
    """What one run did, per outcome."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.deleted)} deleted, {len(self.errors)} failed; "
            f"{self.chunks_written} chunks written in {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class Source:
    """A file to ingest and the folder its document id is relative to."""

    path: Path
    root: Path
    from_folder: bool


def discover(paths: Iterable[Path]) -> tuple[list[Source], list[FileError], list[Path]]:
    """Expand folders into supported files. Returns (sources, errors, folder roots)."""
    sources: list[Source] = []
    errors: list[FileError] = []
    roots: list[Path] = []
    for raw in paths:
        path = raw.expanduser().resolve()
        if path.is_dir():
            roots.append(path)
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path)
                if file.is_file() and is_supported(file) and not any(p.startswith(".") for p in rel.parts):
                    sources.append(Source(file, path, True))
        elif path.is_file():
            sources.append(Source(path, path.parent, False))
        else:
            errors.append(FileError(raw, "no such file or folder"))
    return sources, errors, roots


def config_signature(spec: ChunkSpec) -> str:
    """Part of each document's stored hash: changing chunking or model re-ingests everything."""
    return f"c{CHUNKER_VERSION}-{spec.max_tokens}-{spec.overlap_tokens}-s{SEGMENTER_VERSION}-{EMBEDDING_ID}"


def ingest(
    paths: Sequence[Path],
    store: KnowledgeStore,
    prune: bool | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    """Bring the store in line with ``paths``.

    ``prune`` (default: on when a folder is given) removes documents that were ingested from one
    of the given folders and are no longer there. ``progress(done, total, current_file)`` is
    called once per file.
    """
    started = time.perf_counter()
    settings = store.settings
    spec = ChunkSpec(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    signature = config_signature(spec)
    max_bytes = int(settings.max_file_mb * 1_000_000)
    report = IngestReport()
    sources, report.errors, roots = discover(paths)
    known = {d.doc_id: d for d in store.documents()}
    by_path = {d.path: d for d in known.values()}
    seen_ids: dict[str, Path] = {}
    seen_paths: set[str] = set()
    pending: list[tuple[LoadedDocument, list[Chunk]]] = []

    def flush() -> None:
        if not pending:
            return
        segments = [_segments(chunks) for _, chunks in pending]
        texts = [c.text for _, chunks in pending for c in chunks]
        texts += [text for doc_segments in segments for _, text in doc_segments]
        vectors = store.embedder.embed(texts)
        offset = 0
        segment_offset = sum(len(chunks) for _, chunks in pending)
        items = []
        for (doc, chunks), doc_segments in zip(pending, segments, strict=True):
            record = DocumentRecord(
                doc_id=doc.doc_id,
                path=str(doc.path),
                sha256=f"{doc.sha256}:{signature}",
                chunk_count=len(chunks),
                ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
                format=doc.format,
                **{k: v for k, v in doc.metadata.items() if k in DocumentRecord.__dataclass_fields__},
            )
            items.append(
                DocumentWrite(
                    record,
                    chunks,
                    vectors[offset : offset + len(chunks)],
                    [segment for segment, _ in doc_segments],
                    vectors[segment_offset : segment_offset + len(doc_segments)],
                )
            )
            offset += len(chunks)
            segment_offset += len(doc_segments)
        try:
            store.replace_documents(items)
        except StoreUnavailable:
            log.info(
                "ingest stopped by a failed store write while writing: %s", ", ".join(d.doc_id for d, _ in pending)
            )
            raise
        for doc, chunks in pending:
            report.chunks_written += len(chunks)
            (report.updated if doc.doc_id in known else report.added).append(doc.doc_id)
        pending.clear()

    for done, source in enumerate(sources, start=1):
        if progress:
            progress(done, len(sources), source.path.name)
        key = str(source.path)
        seen_paths.add(key)
        try:
            previous = by_path.get(key)
            if previous and previous.sha256 == f"{file_digest(source.path)}:{signature}":
                report.unchanged.append(previous.doc_id)
                seen_ids[previous.doc_id] = source.path
                continue
            doc = load_document(source.path, source.root, max_bytes)
            if doc.doc_id in seen_ids:
                raise LoadError(f"duplicate document id {doc.doc_id!r} (also {seen_ids[doc.doc_id].name})")
            chunks = chunk_text(doc.doc_id, doc.text, doc.metadata["title"], spec, _chunk_metadata(doc))
        except LoadError as exc:
            report.errors.append(FileError(source.path, str(exc)))
            log.warning("skipped file=%s reason=%s", source.path, exc)
            continue
        except OSError as exc:
            report.errors.append(FileError(source.path, f"cannot read: {exc.strerror or exc}"))
            continue
        seen_ids[doc.doc_id] = source.path
        pending.append((doc, chunks))
        # Documents are embedded together once enough chunks are pending: big batches keep the
        # embedder near its raw throughput even when documents are small.
        if sum(len(c) for _, c in pending) >= settings.ingest_group_chunks:
            flush()
    flush()

    failed_paths = {str(e.path) for e in report.errors}
    prune = bool(roots) if prune is None else prune
    for record in known.values():
        if record.doc_id in seen_ids or record.path in failed_paths:
            continue
        renamed = record.path in seen_paths  # same file now yields another id: the old id is gone
        vanished = prune and any(Path(record.path).is_relative_to(r) for r in roots)
        if renamed or vanished:
            store.delete_document(record.doc_id)
            report.deleted.append(record.doc_id)
    report.seconds = time.perf_counter() - started
    log.info("ingest finished: %s", report.summary())
    return report


def _segments(chunks: Sequence[Chunk]) -> list[tuple[str, str]]:
    """(segment id, text to embed) for every segment of the chunks, as answers will cut them."""
    out = []
    for chunk in chunks:
        section = str(chunk.metadata.get("section", ""))
        for segment in chunk_segments(chunk.text, section):
            out.append((segment_id(chunk.id, segment.position), embedding_text(segment, section)))
    return out


def _chunk_metadata(doc: LoadedDocument) -> dict[str, str]:
    """Document metadata copied onto every chunk, so filters run inside the vector store."""
    keep = ("audience", "market", "language", "product", "version", "review_by", "owner")
    meta = {k: doc.metadata[k] for k in keep if doc.metadata.get(k)}
    meta["format"] = doc.format
    meta["source"] = doc.path.name
    return meta

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
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.capture import fold
from ingest.chunker import CHUNKER_VERSION, ChunkSpec, chunk_text
from ingest.errors import LoadError
from ingest.loaders import (
    SIDECAR_SUFFIX,
    LoadedDocument,
    UnpackLimits,
    doc_id_for,
    file_digest,
    is_supported,
    legacy_doc_id_for,
)
from ingest.worker import FileLoadError, FileReader
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
        return f"{self.path}: {' '.join(self.reason.split())}"  # always one line


@dataclass(frozen=True)
class Duplicate:
    """A path that leads to a file already ingested in the same run (a symlink, a folder given twice)."""

    path: Path
    same_as: Path


@dataclass(frozen=True)
class OutsideLink:
    """A symlink in a folder being ingested that leads out of it (to /etc/passwd, another share...)."""

    path: Path
    target: Path


@dataclass(frozen=True)
class Replaced:
    """A document id taken over, as asked (``replace=True``), by a file other than the one it came from."""

    doc_id: str
    old_path: str
    new_path: str


@dataclass
class IngestReport:
    """What one run did, per outcome."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # (old id, new id): same file, new id, e.g. an id made before names were transliterated.
    renamed: list[tuple[str, str]] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    outside: list[OutsideLink] = field(default_factory=list)  # links out of a given folder, not followed
    replaced: list[Replaced] = field(default_factory=list)  # ids moved to another file on request
    unsupported: list[Path] = field(default_factory=list)  # files in a given folder of a type not read
    no_audience: list[str] = field(default_factory=list)  # documents made internal for want of an audience
    encodings: dict[str, str] = field(default_factory=dict)  # file -> encoding, for text not in UTF-8
    chunks_written: int = 0
    seconds: float = 0.0
    # An earlier write was interrupted before its last revision change; this run finished it.
    recovered: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> bool:
        """Whether the run wrote to the knowledge base (so indexes built from it are out of date)."""
        return bool(self.added or self.updated or self.deleted or self.renamed or self.recovered)

    def summary_lines(self) -> list[str]:
        """The outcome counts, then one line per thing worth knowing (each only when it happened)."""
        renamed = f"{len(self.renamed)} renamed, " if self.renamed else ""
        lines = [
            f"{len(self.added)} added, {len(self.updated)} updated, {renamed}{len(self.unchanged)} unchanged, "
            f"{len(self.deleted)} deleted, {len(self.errors)} failed; "
            f"{self.chunks_written} chunks written in {self.seconds:.1f}s"
        ]
        if self.recovered:
            lines.append("an earlier ingest or removal was interrupted; its changes are now live for every role")
        if self.renamed:
            pairs = ", ".join(f"{old} → {new}" for old, new in self.renamed)
            lines.append(f"{_count(self.renamed, 'document')} got a new id (old id removed): {pairs}")
        if self.no_audience:
            were = "was" if len(self.no_audience) == 1 else "were"
            lines.append(
                f"{_count(self.no_audience, 'document')} had no audience and {were} made internal: "
                f"{_names(self.no_audience)}"
            )
        if self.encodings:
            read = ", ".join(f"{Path(f).name} ({enc})" for f, enc in self.encodings.items())
            lines.append(f"{_count(self.encodings, 'file')} not in UTF-8, read in the encoding detected: {read}")
        if self.duplicates:
            same = ", ".join(f"{d.path.name} (same file as {d.same_as.name})" for d in self.duplicates)
            lines.append(f"{_count(self.duplicates, 'path')} to a file already ingested in this run skipped: {same}")
        if self.outside:
            links = ", ".join(f"{o.path.name} → {o.target}" for o in self.outside)
            lines.append(f"{_count(self.outside, 'symlink')} to outside the folder skipped (not followed): {links}")
        if self.replaced:
            moved = ", ".join(f"{r.doc_id} (was {r.old_path})" for r in self.replaced)
            lines.append(f"{_count(self.replaced, 'document')} replaced by another file, as asked: {moved}")
        if self.unsupported:
            kinds = Counter(p.suffix.lower() or "(no extension)" for p in self.unsupported)
            listed = ", ".join(f"{k} ×{v}" for k, v in sorted(kinds.items()))
            lines.append(
                f"{_count(self.unsupported, 'file')} of a type not ingested: {listed} (names: --json or --verbose)"
            )
        return lines

    def summary(self) -> str:
        return "\n".join(self.summary_lines())

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: errors as one-line strings, paths as strings."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "renamed": [{"old": old, "new": new} for old, new in self.renamed],
            "errors": [str(e) for e in self.errors],
            "duplicates": [{"path": str(d.path), "same_as": str(d.same_as)} for d in self.duplicates],
            "outside": [{"path": str(o.path), "target": str(o.target)} for o in self.outside],
            "replaced": [{"doc_id": r.doc_id, "old_path": r.old_path, "new_path": r.new_path} for r in self.replaced],
            "unsupported": [str(p) for p in self.unsupported],
            "no_audience": self.no_audience,
            "encodings": self.encodings,
            "chunks_written": self.chunks_written,
            "seconds": round(self.seconds, 3),
            "recovered": self.recovered,
        }


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _names(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass(frozen=True)
class Source:
    """A file to ingest and the folder its document id is relative to."""

    path: Path
    root: Path
    from_folder: bool


@dataclass
class Discovery:
    """What the given paths hold: files to ingest, and what is left out and why."""

    sources: list[Source] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    outside: list[OutsideLink] = field(default_factory=list)
    unsupported: list[Path] = field(default_factory=list)


def discover(paths: Iterable[Path]) -> Discovery:
    """Expand folders into supported files, one per real file.

    A second path to a file already found (a symlink to it, the file given beside its folder)
    is a :class:`Duplicate`, not a second document; when one of the paths is the file itself,
    that one is kept. Files inside a folder that no reader handles are listed in
    ``unsupported`` (hidden files and metadata sidecars are not: they are never documents).
    A symlink inside a folder that leads out of it is not followed: it is listed in ``outside``.
    """
    found = Discovery()
    by_real: dict[Path, int] = {}

    def add(source: Source) -> None:
        real = Path(os.path.realpath(source.path))
        index = by_real.get(real)
        if index is None:
            by_real[real] = len(found.sources)
            found.sources.append(source)
            return
        kept = found.sources[index]
        if kept.path != real and source.path == real:  # prefer the file itself over a link to it
            found.sources[index] = source
            kept, source = source, kept
        found.duplicates.append(Duplicate(source.path, kept.path))
        log.info("skipped file=%s reason=same file as %s", source.path, kept.path)

    for raw in paths:
        path = raw.expanduser().resolve()
        if path.is_dir():
            found.roots.append(path)
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path)
                if any(p.startswith(".") for p in rel.parts) or not file.is_file():
                    continue
                target = Path(os.path.realpath(file))
                if not target.is_relative_to(path):
                    found.outside.append(OutsideLink(file, target))
                    log.info("skipped file=%s reason=link to %s, outside the folder", file, target)
                    continue
                if is_supported(file):
                    add(Source(file, path, True))
                elif not file.name.endswith(SIDECAR_SUFFIX):
                    found.unsupported.append(file)
                    log.info("skipped file=%s reason=unsupported type %s", file, file.suffix or "(none)")
        elif path.is_file():
            add(Source(path, path.parent, False))
        else:
            found.errors.append(FileError(raw, "no such file or folder"))
    return found


def config_signature(spec: ChunkSpec) -> str:
    """Part of each document's stored hash: changing chunking or model re-ingests everything."""
    return f"c{CHUNKER_VERSION}-{spec.max_tokens}-{spec.overlap_tokens}-s{SEGMENTER_VERSION}-{EMBEDDING_ID}"


def ingest(
    paths: Sequence[Path],
    store: KnowledgeStore,
    prune: bool | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    replace: bool = False,
    publish: bool = True,
) -> IngestReport:
    """Bring the store in line with ``paths``.

    ``publish=False`` (what the app's owner workspace does) stores each document it adds or
    changes unpublished: no role retrieves it until :meth:`KnowledgeStore.publish_documents`.
    An unchanged file keeps its state; with ``publish=True`` an unpublished one is published.

    ``prune`` (default: on when a folder is given) removes documents that were ingested from one
    of the given folders and are no longer there. ``progress(done, total, current_file)`` is
    called once per file.

    A file whose document id belongs to a document from another file that still exists (the same
    ``id:`` in its front matter, or the same name below another folder) is an error naming both,
    and the document stays as it is; ``replace=True`` lets the new file take the id over.
    """
    started = time.perf_counter()
    settings = store.settings
    spec = ChunkSpec(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    signature = config_signature(spec)
    max_bytes = int(settings.max_file_mb * 1_000_000)
    report = IngestReport()
    found = discover(paths)
    sources, roots = found.sources, found.roots
    report.errors, report.duplicates, report.unsupported = found.errors, found.duplicates, found.unsupported
    report.outside = found.outside
    # Before reading the registry: a run killed after writing a document's record but before its
    # last revision change left the store consistent yet the role indexes on a revision that
    # may predate it; this run would find the document unchanged and write nothing.
    report.recovered = store.recover_interrupted_write()
    known = {d.doc_id: d for d in store.documents()}
    with FileReader(max_bytes, UnpackLimits.from_settings(settings), settings.parse_timeout_s) as reader:
        seen_ids, id_of_path = _ingest_sources(
            sources, store, known, reader, report, signature, spec, progress, replace, publish
        )
    _prune(store, report, known, seen_ids, id_of_path, roots, prune)
    report.seconds = time.perf_counter() - started
    log.info("ingest finished: %s", " | ".join(report.summary_lines()))
    return report


def _ingest_sources(
    sources: Sequence[Source],
    store: KnowledgeStore,
    known: dict[str, DocumentRecord],
    reader: FileReader,
    report: IngestReport,
    signature: str,
    spec: ChunkSpec,
    progress: Callable[[int, int, str], None] | None,
    replace: bool,
    publish: bool = True,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Read, chunk, embed and write each source; returns the ids seen (id → file) and each file's id."""
    settings = store.settings
    by_path = {d.path: d for d in known.values()}
    seen_ids: dict[str, Path] = {}
    id_of_path: dict[str, str] = {}
    pending: list[tuple[LoadedDocument, list[Chunk]]] = []
    replaced: list[Replaced] = []

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
                published=publish,
                **{
                    k: v
                    for k, v in doc.metadata.items()
                    if k in DocumentRecord.__dataclass_fields__ and k != "published"
                },
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
        written = {doc.doc_id for doc, _ in pending}
        report.replaced.extend(r for r in replaced if r.doc_id in written)
        pending.clear()

    for done, source in enumerate(sources, start=1):
        if progress:
            progress(done, len(sources), source.path.name)
        key = str(source.path)
        try:
            previous = by_path.get(key)
            if (
                previous
                and previous.sha256 == f"{file_digest(source.path)}:{signature}"
                and not _id_scheme_changed(previous, source)
                and (previous.published or not publish)
            ):
                report.unchanged.append(previous.doc_id)
                seen_ids[previous.doc_id] = source.path
                id_of_path[key] = previous.doc_id
                continue
            try:
                loaded = reader.read(source.path, source.root)
            except FileLoadError as exc:
                raise LoadError(f"{exc} ({fold(exc.notes)})" if exc.notes else str(exc)) from exc
            doc = loaded.document
            if loaded.notes:
                log.info("read file=%s with library warnings: %s", source.path, fold(loaded.notes))
            if doc.doc_id in seen_ids:
                raise LoadError(
                    f"its document id {doc.doc_id!r} is already taken by {seen_ids[doc.doc_id]} in this run; "
                    f"both {seen_ids[doc.doc_id].name} and {source.path.name} map to it. Rename one, or give one "
                    "an `id:` in its front matter"
                )
            owner = known.get(doc.doc_id)
            if owner is not None and _claims_other_file(owner, source.path):
                if not replace:
                    raise LoadError(
                        f"its document id {doc.doc_id!r} belongs to {owner.path}, already in the knowledge base; "
                        f"{source.path.name} would replace that document. Give one of them another `id:` in its "
                        "front matter or move it, or ingest with --replace to replace it"
                    )
                replaced.append(Replaced(doc.doc_id, owner.path, key))
            chunks = chunk_text(
                doc.doc_id, doc.text, doc.metadata["title"], spec, {**_chunk_metadata(doc), "published": publish}
            )
        except LoadError as exc:
            report.errors.append(FileError(source.path, str(exc)))
            log.info("skipped file=%s reason=%s", source.path, exc)  # the caller prints the error, once
            continue
        except OSError as exc:
            report.errors.append(FileError(source.path, f"cannot read: {exc.strerror or exc}"))
            continue
        except Exception as exc:  # a bug or a library surprise costs this file only, never the run
            report.errors.append(FileError(source.path, f"unexpected {type(exc).__name__}: {exc}"))
            log.warning("skipped file=%s after an unexpected error", source.path, exc_info=True)
            continue
        seen_ids[doc.doc_id] = source.path
        id_of_path[key] = doc.doc_id
        if doc.audience_defaulted:
            report.no_audience.append(doc.doc_id)
        if doc.encoding and doc.encoding != "utf-8":
            report.encodings[key] = doc.encoding
            log.info("read file=%s encoding=%s (not UTF-8)", source.path, doc.encoding)
        pending.append((doc, chunks))
        # Documents are embedded together once enough chunks are pending: big batches keep the
        # embedder near its raw throughput even when documents are small.
        if sum(len(c) for _, c in pending) >= settings.ingest_group_chunks:
            flush()
    flush()
    return seen_ids, id_of_path


def _prune(
    store: KnowledgeStore,
    report: IngestReport,
    known: dict[str, DocumentRecord],
    seen_ids: dict[str, Path],
    id_of_path: dict[str, str],
    roots: Sequence[Path],
    prune: bool | None,
) -> None:
    """Remove what is gone: a document whose file got another id, or vanished from a given folder."""
    failed_paths = {str(e.path) for e in report.errors}
    prune = bool(roots) if prune is None else prune
    for record in known.values():
        if record.doc_id in seen_ids or record.path in failed_paths:
            continue
        new_id = id_of_path.get(record.path)  # same file now yields another id: the old id is gone
        vanished = prune and any(Path(record.path).is_relative_to(r) for r in roots)
        if new_id is not None or vanished:
            store.delete_document(record.doc_id)
            if new_id is not None and new_id in report.added:
                report.added.remove(new_id)
                report.renamed.append((record.doc_id, new_id))
            else:
                report.deleted.append(record.doc_id)


def _claims_other_file(owner: DocumentRecord, path: Path) -> bool:
    """Whether ``path`` is another file than the one the stored document came from, which is still there.

    The same file by another way (a symlink, the folder given by another name) is not a claim,
    and neither is a file whose original is gone (moved or renamed with its ``id:``).
    """
    if not owner.path:
        return False
    if os.path.realpath(owner.path) == os.path.realpath(path):
        return False
    return os.path.exists(owner.path)


def _segments(chunks: Sequence[Chunk]) -> list[tuple[str, str]]:
    """(segment id, text to embed) for every segment of the chunks, as answers will cut them."""
    out = []
    for chunk in chunks:
        section = str(chunk.metadata.get("section", ""))
        for segment in chunk_segments(chunk.text, section):
            out.append((segment_id(chunk.id, segment.position), embedding_text(segment, section)))
    return out


def _id_scheme_changed(previous: DocumentRecord, source: Source) -> bool:
    """An unchanged file whose stored id was made by the slug of older releases (non-ASCII letters dropped).

    Such a file is read again so it gets today's id and the report names the rename, rather than
    keeping its old id until its content next changes. An id from front matter, or one that
    was already ASCII, never matches here, so it stays as it is.
    """
    legacy = legacy_doc_id_for(source.path, source.root)
    return previous.doc_id == legacy and legacy != doc_id_for(source.path, source.root)


def _chunk_metadata(doc: LoadedDocument) -> dict[str, str]:
    """Document metadata copied onto every chunk, so filters run inside the vector store."""
    keep = ("audience", "market", "language", "product", "version", "review_by", "owner")
    meta = {k: doc.metadata[k] for k in keep if doc.metadata.get(k)}
    meta["format"] = doc.format
    meta["source"] = doc.path.name
    return meta

"""Per-role chunk indexes of one store, persisted once per store revision and shared by processes.

At a million chunks, building a role's index means reading every chunk from Chroma and holding
its tokens, so no serving process should do that on start. Instead the index is written to
``<lexical_dir>/<collection>/<revision>/<role>-s<shards>-v<format>/`` and every process maps its
files read-only: N workers on a machine share one copy in the OS page cache, and a process
start reads a manifest, not the knowledge base.

- Keyed by :meth:`KnowledgeStore.revision`, which every ingest write group changes, so a
  process notices new content on its next query, from any writer.
- The first process to need a revision builds it under an exclusive file lock
  (``<lexical_dir>/<collection>/.lock``); the others wait and then map what it wrote. The
  build goes to a temporary directory renamed into place, and a manifest written last lists
  every file's size, so a half-written or truncated index is detected and rebuilt.
- After a build, the indexes of all but the newest two revisions are deleted. A process
  still mapping deleted files keeps reading them (POSIX unlink semantics) until it moves on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assist.access import ROLE_AUDIENCES, scope_where
from assist.chunk_index import FORMAT, ChunkIndex, IndexUnusable, write_index
from kb.settings import Settings
from kb.store import KnowledgeStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, the atomic rename still holds
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Revisions whose indexes survive a build: the current one and the one before it.
KEEP_REVISIONS = 2
# Chunks read from Chroma per request while building.
PAGE = 2000


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for the lexical index lock %s held by another process", path)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _remove(path: Path) -> None:
    """Rename away first, so no reader ever sees a half-deleted index under its real name."""
    doomed = path.with_name(f".stale-{path.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def namespace(settings: Settings) -> str:
    """Directory of a knowledge base's indexes: its collection, and which Chroma holds it.

    Two servers may both have a collection called ``kbassist``; their indexes must not meet.
    """
    if not settings.chroma_url:
        return settings.kb_collection
    return f"{settings.kb_collection}-{hashlib.sha256(settings.chroma_url.encode()).hexdigest()[:10]}"


class ChunkIndexes:
    """Per-role BM25 indexes over one store, persisted per revision and shared by processes."""

    def __init__(self, store: KnowledgeStore, settings: Settings | None = None) -> None:
        self.store = store
        settings = settings or store.settings
        self.shards = settings.lexical_shards
        self.root = settings.lexical_path / namespace(settings)
        self.builds = 0  # indexes this object built, as opposed to found on disk
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, ChunkIndex]] = {}

    def path(self, role: str, revision: str) -> Path:
        return self.root / revision / f"{role}-s{self.shards}-v{FORMAT}"

    def for_role(self, role: str) -> ChunkIndex:
        scope = scope_where(role)  # unknown roles fail here, before anything touches the disk
        revision, writing = self.store.revision_state()
        with self._lock:
            cached = self._cache.get(role)
            if cached and cached[0] == revision:
                return cached[1]
            index = self._open(role, scope, revision)
            index.revision = revision
            index.role = role
            # Built or mapped while a writer was between its first and last revision change (or
            # one was interrupted there): its rows may describe chunks as they were.
            index.settled = not writing
            self._cache[role] = (revision, index)
            return index

    def prepare(self, roles: Iterable[str] = tuple(ROLE_AUDIENCES)) -> None:
        """Build (or map) every role's index for the store's current revision.

        Called by a writer after it changed the store (``kbassist ingest``, a removal), so the
        first question afterwards maps a finished index instead of building one.
        """
        for role in roles:
            self.for_role(role)

    def _open(self, role: str, scope: dict[str, Any] | None, revision: str) -> ChunkIndex:
        if not revision:  # a store never written to: nothing to key a shared index on
            return self._build_in_memory(scope)
        final = self.path(role, revision)
        with contextlib.suppress(FileNotFoundError, IndexUnusable):
            return self._load(final)
        try:
            return self._build_shared(role, scope, revision, final)
        except OSError as exc:
            # A read-only or full index directory must not stop answers: this process builds
            # its own copy in memory, as every process did before indexes were persisted.
            log.warning(
                "cannot write the lexical index under %s (%s); building it in memory role=%s revision=%s",
                self.root,
                exc.strerror or exc,
                role,
                revision,
            )
            return self._build_in_memory(scope)

    def _build_shared(self, role: str, scope: dict[str, Any] | None, revision: str, final: Path) -> ChunkIndex:
        """Build ``final`` once across processes (under the lock), or map what another process built."""
        with _exclusive(self.root / ".lock"):
            try:
                return self._load(final)  # built by another process while this one waited
            except FileNotFoundError:
                pass
            except IndexUnusable as exc:
                log.warning("lexical index unusable, rebuilding role=%s revision=%s: %s", role, revision, exc)
                _remove(final)
            self._build(role, scope, revision, final)
            self._collect(revision)
            return self._load(final)

    def _load(self, path: Path) -> ChunkIndex:
        index = ChunkIndex(path)
        log.debug("mapped lexical index chunks=%d path=%s", len(index.ids), path)
        return index

    def _chunks(self, scope: dict[str, Any] | None) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]]]]:
        """The scope's chunks in pages, so a build never asks Chroma for everything at once."""
        offset = 0
        while True:
            got = self.store.chunks.get(where=scope, include=["documents", "metadatas"], limit=PAGE, offset=offset)
            ids = list(got["ids"])
            if not ids:
                return
            yield ids, [d or "" for d in got["documents"] or []], [dict(m or {}) for m in got["metadatas"] or []]
            offset += len(ids)
            if len(ids) < PAGE:
                return

    def _build_in_memory(self, scope: dict[str, Any] | None) -> ChunkIndex:
        return ChunkIndex.in_memory(self._chunks(scope), self.shards)

    def _build(self, role: str, scope: dict[str, Any] | None, revision: str, final: Path) -> None:
        started = time.perf_counter()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            chunks = write_index(
                tmp,
                self.shards,
                self._chunks(scope),
                {
                    "collection": self.store.settings.kb_collection,
                    "revision": revision,
                    "role": role,
                    "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "builder_pid": os.getpid(),
                },
            )
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.builds += 1
        if self.store.revision() != revision:
            log.info(
                "store changed during the lexical build role=%s revision=%s; the next query rebuilds", role, revision
            )
        log.info(
            "built lexical index role=%s revision=%s chunks=%d shards=%d seconds=%.2f path=%s",
            role,
            revision,
            chunks,
            self.shards,
            time.perf_counter() - started,
            final,
        )

    def _collect(self, current: str) -> None:
        """Delete the indexes of all but the newest revisions, and leftovers of crashed builds.

        Runs under the build lock, so no other process is writing any of these directories.
        """
        revisions = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        others = sorted((p for p in revisions if p.name != current), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP_REVISIONS - 1 :]:
            _remove(old)
            log.info("removed lexical indexes of old revision=%s path=%s", old.name, old)
        for leftover in self.root.glob(".stale-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for kept in [self.root / current, *others[: KEEP_REVISIONS - 1]]:
            for leftover in kept.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)

"""The Chroma-backed store: a chunk collection plus a document registry collection.

Both live in the same Chroma (embedded ``PersistentClient`` or a server through ``HttpClient``),
so a deployment pointing several processes at one server sees one consistent registry.

A third collection holds one vector per segment of every chunk (a sentence, list item,
procedure step or table row; see :mod:`kb.segments`), so answers can be chosen sentence by
sentence at the cost of one lookup by id.

Writes for a document follow one order, which is what makes an interrupted ingest converge
on re-run: (0) upsert the new chunks' segment vectors, (1) delete that document's chunks and
segment vectors that are not in the new set, (2) upsert the new chunks (ids are content-derived,
so unchanged chunks are rewritten in place, with the new metadata), (3) write the registry
record last. Until step 3 the registry still holds the old hash, so the next run redoes the
document; step 1 reads the store, not the registry, so no orphan survives. Deleting before
writing means that once step 2 is done nothing of the old version is left under its old
audience.

Caches built from the chunks (the role indexes) are keyed by the store's revision token, so a
write group is bracketed by two revision changes: before its first write the revision changes
and a "write in progress" marker is set in the registry's metadata; after its last write the
revision changes again and the marker is cleared, in one metadata update. An index built before
the group, or while it ran, is therefore never current once the group is done. A writer killed
in between (SIGKILL, a server stopped at that moment) leaves the marker behind: the next ingest
finds it (:meth:`KnowledgeStore.recover_interrupted_write`) and changes the revision even when
every document is unchanged, so no index built from half-written chunks outlives the crash.

Every call into Chroma goes through :meth:`KnowledgeStore._call` (the collections the store
exposes are wrapped, so callers that use ``store.chunks`` directly get the same handling):

- With a server, a request that fails to connect (server restarting, connection dropped) is
  retried with capped, jittered exponential backoff, then reported as :class:`StoreUnavailable`
  naming the URL. Retrying writes is safe for the same reason re-running an ingest is: chunk ids
  are content-derived and the write order above converges. A 502-504 from a proxy in front of
  the server counts as not connecting. Other errors are not retried.
- A server (or its authenticating proxy) that refuses the credentials (401/403) raises
  :class:`StoreAuthError` at once, naming the settings that carry them, never their values.
- A write that fails (disk full, read-only folder) raises :class:`StoreWriteError` with the
  reason the operating system gives, which Chroma's own message leaves out. What was written
  before stays consistent, by the write order above.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar, cast
from urllib.parse import ParseResult, urlparse

import chromadb
import httpx
import numpy as np
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import InternalError

from kb.diskcheck import disk_problem
from kb.embedding import MiniLMEmbedding, get_embedding_function
from kb.models import Chunk, DocumentRecord
from kb.settings import Settings

log = logging.getLogger(__name__)

_REGISTRY_SUFFIX = "__documents"
_SEGMENTS_SUFFIX = "__segments"
# Registry metadata key of the "write in progress" marker (see the module docstring).
_WRITING = "writing"


T = TypeVar("T")

class ServerBusy(httpx.HTTPStatusError):
    """The server, or the proxy in front of it, answered 502, 503 or 504: Chroma is not reachable right now.

    An authenticating proxy answers so while the Chroma behind it restarts, so it is retried like
    a refused connection.
    """


# What chromadb's HttpClient lets through when the server is down or drops the connection: it
# raises httpx's transport errors unchanged (ConnectError "[Errno 111] Connection refused" for
# a stopped server; ReadError/RemoteProtocolError for one that dies mid-request). httpx's
# UnsupportedProtocol and ProxyError are configuration mistakes, so they are not in this list.
# ServerBusy is what the store's own response check raises for a 502-504 (see _configure_session).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
    ConnectionError,
    ServerBusy,
)
_AUTH_STATUSES = frozenset({401, 403, 407})
_BUSY_STATUSES = frozenset({502, 503, 504})
_READS = frozenset({"get", "query", "count", "peek"})
_WRITES = frozenset({"add", "upsert", "update", "delete", "modify"})


class StoreUnavailable(RuntimeError):
    """The configured Chroma cannot be reached or opened."""


class StoreAuthError(StoreUnavailable):
    """The Chroma server, or the proxy in front of it, refused the credentials (HTTP 401/403).

    Never retried: the same credentials would be refused again.
    """


class StoreWriteError(StoreUnavailable):
    """A write to the store failed (disk full, read-only folder); earlier writes are intact."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request that could not reach the server is repeated."""

    retries: int
    backoff_s: float
    max_backoff_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.chroma_retries, settings.chroma_retry_backoff_s, settings.chroma_retry_max_backoff_s)

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Wait before retry number ``retry`` (0-based): doubling, capped, then jittered down to half.

        Jitter keeps many clients that lost the same server from all reconnecting at once.
        """
        step = min(self.max_backoff_s, self.backoff_s * 2.0**retry)
        return step * (0.5 + 0.5 * rng())

    @property
    def max_total_wait_s(self) -> float:
        """Upper bound of the time spent waiting before giving up."""
        return sum(min(self.max_backoff_s, self.backoff_s * 2.0**i) for i in range(self.retries))


def is_connection_failure(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_ERRORS)


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    server: str,
    operation: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run ``call``; repeat it while the server cannot be reached, then raise :class:`StoreUnavailable`.

    Only connection failures are repeated: an error the server answered with (bad argument,
    missing collection, refused credentials) would fail the same way again.
    """
    started = time.monotonic()
    for attempt in range(policy.retries + 1):
        try:
            return call()
        except Exception as exc:
            if not is_connection_failure(exc):
                raise
            reason = f"{type(exc).__name__}: {exc}"
            if attempt == policy.retries:
                waited = time.monotonic() - started
                attempts = f"{attempt + 1} attempt" + ("s" if attempt else "")
                raise StoreUnavailable(
                    f"cannot reach the Chroma server at {server} ({reason}; gave up after {attempts}"
                    f" in {waited:.1f}s). Check that the server is running and that KBASSIST_CHROMA_URL points"
                    " to it, then try again."
                ) from exc
            delay = policy.delay(attempt, rng)
            log.warning(
                "chroma request failed, retrying operation=%s server=%s attempt=%d/%d wait_s=%.2f error=%s",
                operation,
                server,
                attempt + 1,
                policy.retries + 1,
                delay,
                reason,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the loop either returns or raises


@dataclass(frozen=True)
class DocumentWrite:
    """Everything stored for one document: its record, chunks and their vectors, segment vectors."""

    record: DocumentRecord
    chunks: Sequence[Chunk]
    embeddings: np.ndarray
    segment_ids: Sequence[str] = ()
    segment_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass(frozen=True)
class KBStats:
    documents: int
    chunks: int
    by_audience: dict[str, int]
    by_market: dict[str, int]
    by_language: dict[str, int]
    by_format: dict[str, int]
    stale: list[str]


def _redacted(url: str) -> str:
    """``url`` without a user name or password, for messages."""
    parts = urlparse(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def auth_failure(settings: Settings, status: int, reason: str = "") -> StoreAuthError:
    """The error for a request the server (or its proxy) refused with ``status``; names settings, never values."""
    server = _redacted(settings.chroma_url or "")
    refused = f"HTTP {status}{' ' + reason if reason else ''}"
    if settings.chroma_credentials:
        why = f"the credentials in {settings.chroma_credentials} were not accepted"
        fix = "Check that they match what the server's proxy expects."
    else:
        why = "no credentials were sent"
        fix = (
            "Set KBASSIST_CHROMA_TOKEN (and KBASSIST_CHROMA_TOKEN_HEADER if the proxy reads another header) "
            "or KBASSIST_CHROMA_HEADERS to what the server's proxy expects."
        )
    return StoreAuthError(f"the Chroma server at {server} refused the request ({refused}: {why}). {fix}")


def _check_status(settings: Settings, response: httpx.Response) -> None:
    """Turn a refused (401/403) or unavailable (502-504) answer into the store's own errors."""
    if response.status_code in _AUTH_STATUSES:
        raise auth_failure(settings, response.status_code, response.reason_phrase)
    if response.status_code in _BUSY_STATUSES:
        raise ServerBusy(
            f"HTTP {response.status_code} {response.reason_phrase}", request=response.request, response=response
        )


def _warn_if_sent_in_clear(settings: Settings, url: ParseResult) -> None:
    loopback = url.hostname in ("localhost", "::1") or (url.hostname or "").startswith("127.")
    if url.scheme == "http" and settings.chroma_request_headers() and not loopback:
        log.warning(
            "chroma credentials are sent over plain http to %s; use https (a TLS-terminating proxy) off this machine",
            url.hostname,
        )


def open_client(settings: Settings) -> chromadb.ClientAPI:
    """Embedded Chroma under ``data_dir``, or a Chroma server when ``chroma_url`` is set.

    A server client sends ``settings.chroma_request_headers()`` with every request; a refused
    request raises :class:`StoreAuthError`.
    """
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.username is not None or url.password is not None:
            raise StoreUnavailable(
                f"KBASSIST_CHROMA_URL must not hold a user name or password ({_redacted(settings.chroma_url)}); "
                "put credentials in KBASSIST_CHROMA_TOKEN or KBASSIST_CHROMA_HEADERS"
            )
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StoreUnavailable(f"KBASSIST_CHROMA_URL must look like http://host:8000, got {settings.chroma_url!r}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        api = f"{url.scheme}://{url.hostname}:{port}/api/v2"
        headers = settings.chroma_request_headers()
        _warn_if_sent_in_clear(settings, url)
        try:
            # chromadb's client talks to the server while it is created, with no time limit: a
            # server that accepts connections but never answers would hang this process for good.
            # Its first request is /auth/identity, which a proxy that lets health checks through
            # (heartbeat) still guards, so a refusal is reported here by status, not as its page.
            for path in ("/heartbeat", "/auth/identity"):
                answer = httpx.get(api + path, headers=headers, timeout=settings.chroma_timeout_s)
                _check_status(settings, answer)
                answer.raise_for_status()
            client = chromadb.HttpClient(
                host=url.hostname, port=port, ssl=url.scheme == "https", headers=headers, settings=chroma_settings
            )
        except StoreUnavailable:
            raise
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(
                f"the Chroma server at {settings.chroma_url} did not answer within {settings.chroma_timeout_s:g}s"
            ) from exc
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError here
            raise StoreUnavailable(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}") from exc
        _configure_session(client, settings)
        return client
    try:
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open the store at {settings.chroma_path}: {exc.strerror or exc}") from exc
    except InternalError as exc:  # opening writes (migrations, log replay): a read-only or full disk fails here
        reason = disk_problem(settings.chroma_path) or str(exc)
        raise StoreUnavailable(f"cannot open the store at {settings.chroma_path}: {reason}") from exc


def _configure_session(client: chromadb.ClientAPI, settings: Settings) -> None:
    """Give every request of a server client a time limit (chromadb leaves it unlimited), and
    turn refused or unavailable answers into the store's errors before chromadb reads them.

    A request that runs out of time raises ``httpx.TimeoutException``, which the store retries
    like a refused connection, so a hung server becomes a clear error instead of a hung query.
    chromadb reports a 401/403 from a proxy as a bare ``Exception`` holding the proxy's page, so
    the status is checked here: a refusal becomes :class:`StoreAuthError` (not retried) and a
    502-504 :class:`ServerBusy` (retried).
    """
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(settings.chroma_timeout_s)
        session.event_hooks["response"] = [
            *session.event_hooks["response"],
            functools.partial(_check_status, settings),
        ]
    else:  # a chromadb release that keeps its HTTP session elsewhere: say so rather than hang silently
        log.warning("cannot set a request time limit on this chromadb client; a hung server will block")


class _GuardedCollection:
    """A Chroma collection whose reads and writes go through :meth:`KnowledgeStore._call`.

    Exposed as ``store.chunks`` and ``store.registry`` so code that queries the collections
    directly gets the same retries and error reporting as the store's own methods.
    """

    def __init__(self, collection: Collection, guard: Callable[..., Any]) -> None:
        self._collection = collection
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private and dunder lookups (copy, pickle) never reach the collection
            raise AttributeError(name)
        attr = getattr(self._collection, name)
        if name in _READS or name in _WRITES:
            return functools.partial(self._guard, f"{self._collection.name}.{name}", attr, name in _WRITES)
        return attr

    def __repr__(self) -> str:
        return f"guarded {self._collection!r}"


class KnowledgeStore:
    """Chunks and the document registry of one knowledge base."""

    def __init__(self, settings: Settings, client: chromadb.ClientAPI | None = None) -> None:
        self.settings = settings
        self.client = client or open_client(settings)
        client_settings = self.client.get_settings()
        self.is_server = client_settings.chroma_api_impl.endswith(".FastAPI")  # what HttpClient talks through
        # Where the data lives, for error messages: the server URL or the embedded store's folder.
        self.location = str(settings.chroma_path)
        if self.is_server:
            self.location = settings.chroma_url or (
                f"http://{client_settings.chroma_server_host}:{client_settings.chroma_server_http_port}"
            )
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.embedder: MiniLMEmbedding = get_embedding_function(settings.embedding_model, settings.embedding_batch_size)
        chunks = self._call(
            "open chunks",
            self.client.get_or_create_collection,
            True,
            settings.kb_collection,
            embedding_function=self.embedder,  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": settings.embedding_model},
        )
        # The registry holds metadata only; Chroma requires a vector, so every record gets [1.0].
        registry = self._call(
            "open registry",
            self.client.get_or_create_collection,
            True,
            settings.kb_collection + _REGISTRY_SUFFIX,
            embedding_function=None,
            configuration={"hnsw": {"space": "l2"}},
        )
        # Segment vectors are looked up by id only, never searched, so the index space is moot.
        segments = self._call(
            "open segments",
            self.client.get_or_create_collection,
            True,
            settings.kb_collection + _SEGMENTS_SUFFIX,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        self._registry = registry
        self.chunks = cast(Collection, _GuardedCollection(chunks, self._call))
        self.registry = cast(Collection, _GuardedCollection(registry, self._call))
        self.segments = cast(Collection, _GuardedCollection(segments, self._call))
        self._max_batch = max(1, min(self._call("max batch size", self.client.get_max_batch_size, False), 2048))

    def _call(self, operation: str, fn: Callable[..., T], write: bool, /, *args: Any, **kwargs: Any) -> T:
        """Call Chroma: retried while a server cannot be reached; failed writes name the OS reason.

        The embedded store runs in this process, so it is never retried: its failures do not go
        away by waiting.
        """
        return self._invoke(operation, lambda: fn(*args, **kwargs), write, self.retry_policy)

    def _invoke(self, operation: str, call: Callable[[], T], write: bool, policy: RetryPolicy) -> T:
        try:
            if self.is_server:
                return call_with_retries(call, policy, server=self.location, operation=operation)
            return call()
        except (InternalError, OSError) as exc:
            if not write:
                raise
            if self.is_server:
                reason = str(exc)
            else:
                reason = disk_problem(self.settings.chroma_path) or (
                    exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                )
            raise StoreWriteError(f"cannot write to the store at {self.location}: {reason}") from exc

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

    def _registry_metadata(self) -> dict[str, Any]:
        registry = self._call("revision", self.client.get_collection, False, self.registry.name)
        return dict(registry.metadata or {})

    def revision(self) -> str:
        """A token that changes before and after every write group to this knowledge base, from any process.

        Cheap to read (collection metadata), so caches built from the chunks (the BM25 index)
        can check it on every query.
        """
        return self.revision_state()[0]

    def revision_state(self) -> tuple[str, bool]:
        """(revision, whether a write group is in progress), from one read of the registry.

        A revision read with no write in progress describes chunks that no longer change under
        it: every write group changes the revision before its first write and after its last.
        """
        meta = self._registry_metadata()
        return str(meta.get("revision", "")), bool(meta.get(_WRITING))

    def write_in_progress(self) -> str:
        """The marker of a write group that started and has not finished ("" when none).

        Set while an ingest or removal writes; one left behind means a writer was interrupted
        between its first write and its last revision change.
        """
        return str(self._registry_metadata().get(_WRITING, ""))

    def _begin_writes(self) -> None:
        """New revision and a "write in progress" marker, before anything of the group is written."""
        self.registry.modify(metadata={"revision": uuid.uuid4().hex, _WRITING: uuid.uuid4().hex})

    def _bump_revision(self) -> None:
        """New revision, marker cleared: the group is done and indexes built before it are retired."""
        self.registry.modify(metadata={"revision": uuid.uuid4().hex, _WRITING: ""})

    def recover_interrupted_write(self) -> bool:
        """Finish the revision change of a write group that was interrupted; whether there was one.

        Every write of a group converges on re-run by the write order (module docstring), except
        the final revision change: a re-run that finds every document unchanged writes nothing,
        so without this the role indexes built from the half-written store would stay current.
        """
        if not self.write_in_progress():
            return False
        log.warning(
            "an earlier write to the store was interrupted before it finished location=%s; "
            "changing the revision so every role index is rebuilt",
            self.location,
        )
        self._bump_revision()
        return True

    def _bump_revision_after_failure(self) -> None:
        """A failed write may have changed part of the store: caches keyed on the revision must rebuild.

        Best effort and tried once: when the store takes no writes, the revision stays, and the
        next run finds the write-in-progress marker and changes it. The marker stays set: the
        group did not finish.
        """
        try:
            self._invoke(
                "revision",
                lambda: self._registry.modify(
                    metadata={"revision": uuid.uuid4().hex, _WRITING: uuid.uuid4().hex}
                ),
                True,
                RetryPolicy(retries=0, backoff_s=0.0, max_backoff_s=0.0),
            )
        except StoreUnavailable as exc:
            log.info("revision not updated after a failed write location=%s: %s", self.location, exc)

    # -- chunks -------------------------------------------------------------------------------

    def chunk_ids(self, doc_id: str) -> set[str]:
        """Ids of the chunks stored for ``doc_id``, read from the chunk collection itself."""
        return set(self.chunks.get(where={"doc_id": doc_id}, include=[])["ids"])

    def chunk_count(self) -> int:
        return self.chunks.count()

    def replace_documents(self, items: Sequence[DocumentWrite]) -> None:
        """Make the store hold exactly the given chunks for each document, then register it.

        Documents are written one after the other in the crash-safe order (module docstring);
        the revision token changes before the group's first write and after its last.
        """
        if not items:
            return
        self._begin_writes()
        try:
            for item in items:
                self._write_document(item)
        except Exception:
            self._bump_revision_after_failure()
            raise
        self._bump_revision()

    def _write_document(self, item: DocumentWrite) -> None:
        record, chunks, embeddings = item.record, item.chunks, item.embeddings
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk is required")
        if len(item.segment_ids) != len(item.segment_embeddings):
            raise ValueError("one embedding per segment is required")
        for start in range(0, len(item.segment_ids), self._max_batch):
            self.segments.upsert(
                ids=list(item.segment_ids[start : start + self._max_batch]),
                embeddings=item.segment_embeddings[start : start + self._max_batch],
                metadatas=[{"doc_id": record.doc_id}] * len(item.segment_ids[start : start + self._max_batch]),
            )
        # Chunks of the old version that the new one lacks go before the new ones are written: a
        # section whose document was narrowed (made internal) is never left readable under its
        # old audience once the document's new chunks are in.
        stale = self.chunk_ids(record.doc_id) - {c.id for c in chunks}
        self._delete_chunks(stale)
        self._delete_segments(self._segment_ids(record.doc_id) - set(item.segment_ids))
        for start in range(0, len(chunks), self._max_batch):
            part = chunks[start : start + self._max_batch]
            self.chunks.upsert(
                ids=[c.id for c in part],
                documents=[c.text for c in part],
                metadatas=[dict(c.metadata) for c in part],
                embeddings=embeddings[start : start + self._max_batch],
            )
        record.chunk_count = len(chunks)
        self.registry.upsert(ids=[record.doc_id], embeddings=[[1.0]], metadatas=[record.to_metadata()])
        log.info("stored doc_id=%s chunks=%d removed_stale=%d", record.doc_id, len(chunks), len(stale))

    def delete_document(self, doc_id: str) -> int:
        """Remove a document's chunks, then its registry record. Returns chunks removed."""
        return self.delete_documents([doc_id])[doc_id]

    def delete_documents(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """Remove each document's chunks, then its registry record; chunks removed per document.

        Chunks go first, so an interrupted delete leaves a registered document with fewer chunks
        (a re-ingest or a second delete finishes it), never chunks nobody can find. The revision
        changes before the first delete and after the last, which is what retires every role's
        lexical index built before or during the removal.
        """
        removed: dict[str, int] = {}
        if not doc_ids:
            return removed
        self._begin_writes()
        try:
            for doc_id in doc_ids:
                ids = self.chunk_ids(doc_id)
                self._delete_chunks(ids)
                self._delete_segments(self._segment_ids(doc_id))
                self.registry.delete(ids=[doc_id])
                removed[doc_id] = len(ids)
                log.info("deleted doc_id=%s chunks=%d", doc_id, len(ids))
        except Exception:
            self._bump_revision_after_failure()
            raise
        self._bump_revision()
        return removed

    def unpublished(self) -> list[DocumentRecord]:
        """Documents added or changed through the app that no owner has published yet."""
        return [d for d in self.documents() if not d.published]

    def publish_documents(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """Make each document's chunks readable by the roles its audience admits; chunks per document.

        Its chunks are marked first, its registry record last, in one write group (the revision
        changes before and after), so an interrupted publish leaves the document listed as
        unpublished and publishing it again finishes it. Unknown ids raise ``KeyError``, before
        anything is written.
        """
        records = {doc_id: self.document(doc_id) for doc_id in doc_ids}
        unknown = [doc_id for doc_id, record in records.items() if record is None]
        if unknown:
            raise KeyError(", ".join(unknown))
        published: dict[str, int] = {}
        if not records:
            return published
        self._begin_writes()
        try:
            for doc_id, record in records.items():
                assert record is not None
                ids = sorted(self.chunk_ids(doc_id))
                for start in range(0, len(ids), self._max_batch):
                    part = ids[start : start + self._max_batch]
                    self.chunks.update(ids=part, metadatas=[{"published": True}] * len(part))
                record.published = True
                self.registry.upsert(ids=[doc_id], embeddings=[[1.0]], metadatas=[record.to_metadata()])
                published[doc_id] = len(ids)
                log.info("published doc_id=%s chunks=%d", doc_id, len(ids))
        except Exception:
            self._bump_revision_after_failure()
            raise
        self._bump_revision()
        return published

    def document_chunks(self, doc_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """A document's chunks as ``(id, text, metadata)``, in reading order."""
        got = self.chunks.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
        rows = [
            (i, t or "", dict(m or {}))
            for i, t, m in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
        ]
        return sorted(rows, key=lambda r: (int(r[2].get("position", 0)), r[0]))

    def markets(self) -> set[str]:
        """Market codes the registered documents are for (``ALL`` included when a document says so)."""
        got = self.registry.get(include=["metadatas"])
        return {str((m or {}).get("market", "ALL")).upper() for m in got["metadatas"] or []}

    def has_market(self, market: str) -> bool:
        """Whether any registered document is for ``market``: one small lookup, not a registry read."""
        got = self.registry.get(where={"market": market.upper()}, limit=1, include=[])
        return bool(got["ids"])

    def _delete_chunks(self, ids: Iterable[str]) -> None:
        ids = sorted(ids)
        for start in range(0, len(ids), self._max_batch):
            self.chunks.delete(ids=ids[start : start + self._max_batch])

    def _segment_ids(self, doc_id: str) -> set[str]:
        return set(self.segments.get(where={"doc_id": doc_id}, include=[])["ids"])

    def _delete_segments(self, ids: Iterable[str]) -> None:
        ids = sorted(ids)
        for start in range(0, len(ids), self._max_batch):
            self.segments.delete(ids=ids[start : start + self._max_batch])

    def segment_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored (unit-length) vectors of the given segments; ids the store lacks are left out."""
        if not ids:
            return {}
        got = self.segments.get(ids=list(ids), include=["embeddings"])
        if not got["ids"]:
            return {}
        return dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))

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

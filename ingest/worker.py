"""Reading files in a worker process, with a deadline per file.

The readers' libraries are pure Python for the most part (pypdf above all): a file made to keep
them busy cannot be interrupted from inside the process reading it. So the ingest hands each
file to one long-lived worker process and waits at most ``KBASSIST_PARSE_TIMEOUT_S`` for the
result; a worker that is not done by then is killed (its memory goes with it), the file is
reported as taking too long, and the next file gets a fresh worker. A worker that dies (out of
memory, a crash in a C extension) costs only the file it was reading.

One worker serves every run of the process, so a normal file costs a pickle round trip (about
0.1 ms measured on small files); the first file pays the start of the worker (about 0.1 s), and
a run that reads nothing (every file unchanged) starts none.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ingest.capture import library_messages
from ingest.errors import LoadError
from ingest.loaders import DEFAULT_LIMITS, LoadedDocument, UnpackLimits, load_document

_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class Loaded:
    """A file read: the document, and what the readers' libraries warned about while reading it."""

    document: LoadedDocument
    notes: list[str]


class FileLoadError(LoadError):
    """A file could not be read; ``notes`` are the library warnings collected meanwhile."""

    def __init__(self, reason: str, notes: list[str] | None = None) -> None:
        super().__init__(reason)
        self.notes = list(notes or [])


def read_one(path: Path, root: Path, max_bytes: int, limits: UnpackLimits) -> Loaded:
    """Read a file here, in this process, collecting library warnings (what the worker runs)."""
    with library_messages() as notes:
        try:
            document = load_document(path, root, max_bytes, limits)
        except LoadError as exc:
            failure = str(exc)
        else:
            failure = None
    if failure is not None:
        raise FileLoadError(failure, notes)
    return Loaded(document, notes)


class FileReader:
    """Reads files one by one: in a worker process with a deadline when ``timeout_s`` is above 0,
    else here, without one.

    The worker outlives the reader: later runs in the same process (the app, a test session)
    reuse it, so only the first run pays its start. It ends with the process.
    """

    def __init__(self, max_bytes: int, limits: UnpackLimits = DEFAULT_LIMITS, timeout_s: float = 0.0) -> None:
        self.max_bytes = max_bytes
        self.limits = limits
        self.timeout_s = timeout_s

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, path: Path, root: Path) -> Loaded:
        """The file's document, or :class:`FileLoadError` with a one-line reason."""
        if self.timeout_s <= 0:
            return read_one(path, root, self.max_bytes, self.limits)
        worker = _worker_for(memory_cap(self.limits))
        with worker.lock:
            status, value, notes = worker.ask((path, root, self.max_bytes, self.limits), self.timeout_s)
        if status == "ok":
            return Loaded(value, notes)
        raise FileLoadError(value, notes)


class _Worker:
    """One worker process and the lock that gives it one request at a time."""

    def __init__(self, memory_cap: int) -> None:
        self.memory_cap = memory_cap
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0  # processes started, for tests and logs

    def ask(self, request: Any, timeout_s: float) -> tuple[str, Any, list[str]]:
        process = self._ensure()
        assert process.stdin is not None and process.stdout is not None
        try:
            _send(process.stdin, request)
            return _receive(process.stdout, time.monotonic() + timeout_s)
        except TimeoutError:
            self.stop()
            return "error", f"reading took longer than {timeout_s:g}s (KBASSIST_PARSE_TIMEOUT_S) and was stopped", []
        except (OSError, EOFError, pickle.UnpicklingError, struct.error):
            code = self.stop()
            return "error", f"the reader process ended while reading the file (exit code {code})", []

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self.process is not None and self.process.poll() is None:
            return self.process
        self.stop()
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "ingest.worker", str(self.memory_cap)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=package_parent,
        )
        self.started += 1
        return self.process

    def stop(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        code = process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return code


_WORKERS: dict[int, _Worker] = {}
_WORKERS_LOCK = threading.Lock()


def _worker_for(cap: int) -> _Worker:
    with _WORKERS_LOCK:
        if cap not in _WORKERS:
            _WORKERS[cap] = _Worker(cap)
        return _WORKERS[cap]


@atexit.register
def stop_workers() -> None:
    """End every worker process (at exit; tests call it to start from none)."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
    for worker in workers:
        with worker.lock:
            worker.stop()


def memory_cap(limits: UnpackLimits) -> int:
    """Address space the worker may use: room for the interpreter, the libraries and a few copies
    of the largest unpacked file. Beyond it an allocation fails (MemoryError, a per-file error)."""
    return 1_000_000_000 + 4 * limits.max_unpacked_bytes


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO, deadline: float) -> Any:
    """One message from the worker, or :class:`TimeoutError` once ``deadline`` (monotonic) passes."""
    fd = stream.fileno()
    # poll, not select: a process holding many files (an app, a test run) has descriptors past
    # select's limit of 1024.
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def read_exactly(size: int) -> bytes:
        parts: list[bytes] = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
                raise TimeoutError
            part = os.read(fd, min(size, 1 << 20))
            if not part:
                raise EOFError
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    (size,) = _HEADER.unpack(read_exactly(_HEADER.size))
    return pickle.loads(read_exactly(size))


def _serve() -> None:
    """The worker's loop: read a request from stdin, answer on the original stdout, until end of input."""
    # Anything a library prints must not reach the pipe the answers travel on.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    if len(sys.argv) > 1:
        import resource

        cap = int(sys.argv[1])
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    requests = sys.stdin.buffer
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        path, root, max_bytes, limits = pickle.loads(requests.read(_HEADER.unpack(header)[0]))
        try:
            loaded = read_one(path, root, max_bytes, limits)
            reply: tuple[str, Any, list[str]] = ("ok", loaded.document, loaded.notes)
        except FileLoadError as exc:
            reply = ("error", str(exc), exc.notes)
        except Exception as exc:  # never lose the worker to one file
            reply = ("error", f"unreadable: unexpected {type(exc).__name__}: {exc}", [])
        _send(answers, reply)


if __name__ == "__main__":
    _serve()

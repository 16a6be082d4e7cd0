"""Running a real ``kbassist`` process against a read-only folder or a full disk.

Tests run as root in CI, and root ignores file permissions, so "read-only" picks the strongest
mechanism the machine allows: permissions for an ordinary user; for root, a read-only bind mount
in a private mount namespace (``unshare --mount``); failing both, ``RLIMIT_FSIZE=0``, under which
no file may be written at all. A full disk is ``RLIMIT_FSIZE`` set just above the current files:
writes past it fail with EFBIG ("File too large"), as they would with ENOSPC, for root too.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && shift && exec "$@"'


def file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: files of the child may not grow past ``limit`` bytes; writes fail with EFBIG."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def largest_file(folder: Path) -> int:
    return max((p.stat().st_size for p in folder.rglob("*") if p.is_file()), default=0)


@functools.cache
def _can_mount_read_only() -> bool:
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run(
                ["unshare", "--mount", "sh", "-c", _MOUNT_RO, folder, "--", "true"],
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


@dataclass(frozen=True)
class ReadOnly:
    """How ``folder`` is made read-only for a child process, and the OS reason its writes get."""

    folder: Path
    mechanism: str  # "permissions", "mount" or "file-size-limit"

    @property
    def reason(self) -> str:
        return {
            "permissions": os.strerror(13),  # EACCES
            "mount": os.strerror(30),  # EROFS
            "file-size-limit": os.strerror(27),  # EFBIG
        }[self.mechanism]

    def run(self, cmd: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        with self._applied():
            if self.mechanism == "mount":
                cmd = ["unshare", "--mount", "sh", "-c", _MOUNT_RO, str(self.folder), "--", *cmd]
            preexec = file_size_limit(0) if self.mechanism == "file-size-limit" else None
            return subprocess.run(
                list(cmd), env=env, cwd=REPO, preexec_fn=preexec, capture_output=True, text=True, timeout=300
            )

    @contextmanager
    def _applied(self) -> Iterator[None]:
        if self.mechanism != "permissions":
            yield
            return
        modes = {p: p.stat().st_mode for p in [self.folder, *self.folder.rglob("*")]}
        write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        try:
            for path, mode in sorted(modes.items(), reverse=True):
                path.chmod(mode & ~write_bits)
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)


def read_only(folder: Path) -> ReadOnly:
    if os.geteuid() != 0:
        return ReadOnly(folder, "permissions")
    return ReadOnly(folder, "mount" if _can_mount_read_only() else "file-size-limit")


def kbassist(*args: str) -> list[str]:
    """The command line of a real ``kbassist`` process."""
    return [sys.executable, "-m", "kbassist_cli", *args]


def run(
    cmd: Sequence[str], env: dict[str, str], preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), env=env, cwd=REPO, preexec_fn=preexec_fn, capture_output=True, text=True, timeout=300
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]

"""Why a folder cannot take more data, in the operating system's words.

Chroma and SQLite report a failed write as "disk I/O error", "attempt to write a readonly
database" or "Failed to apply logs to the metadata segment", which hides what the user has to
fix. Probing the folder the same way the failed write used it names the cause: a read-only
file system, missing permissions, a full disk or a file size limit.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_BYTES = 1 << 20


def disk_problem(folder: Path) -> str | None:
    """The OS reason ``folder`` cannot grow its files, or None when it can.

    A scratch file is grown to the size of the folder's largest file plus 1 MiB, so it meets the
    same limits a growing database file meets (free space, quota, ``RLIMIT_FSIZE``). Space is
    allocated without writing data where the file system allows it, and the file is removed.
    """
    try:
        largest = max((p.stat().st_size for p in folder.iterdir() if p.is_file()), default=0)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".kbassist-probe-")
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, largest, PROBE_BYTES)
        else:  # no fallocate (macOS): write the bytes
            os.pwrite(fd, b"\0" * PROBE_BYTES, largest)
            os.fsync(fd)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            log.warning("could not remove the disk probe file=%s", probe)
    return None

"""What libraries say while one file is read, kept for that file's line in the report.

pypdf (and the other readers' libraries) log and warn about what they repair or skip while
reading a damaged file. Printed as they come, those messages appear apart from, and on top of,
the one error line the run gives the file, often two or three times over. Captured here, they
are folded into that line instead, or logged once at INFO for a file that loaded.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# Loggers of the libraries the readers use; their children ("pypdf._reader") propagate to them.
LIBRARY_LOGGERS = ("pypdf", "docx", "bs4", "charset_normalizer", "yaml", "PIL")
MAX_MESSAGES = 3
MAX_CHARS = 160


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def library_messages() -> Iterator[list[str]]:
    """Collect warnings (``logging`` and ``warnings``) the readers' libraries emit in the block.

    While the block runs, those loggers do not pass records on to the application's handlers,
    so nothing of them reaches the terminal; the list holds the messages once the block ends.
    Not thread-safe (``warnings.catch_warnings`` is process-wide), like the ingest loop.
    """
    messages: list[str] = []
    handler = _Collect(messages)
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    saved = [(logger, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                messages.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate


def fold(messages: list[str]) -> str:
    """The distinct messages on one line: ``a; b; c (+2 more)``, each cut to a readable length."""
    distinct = list(dict.fromkeys(" ".join(m.split()) for m in messages if m.strip()))
    shown = [m if len(m) <= MAX_CHARS else m[: MAX_CHARS - 1] + "…" for m in distinct[:MAX_MESSAGES]]
    more = len(distinct) - len(shown)
    return "; ".join(shown) + (f" (+{more} more)" if more else "")

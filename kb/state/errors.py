"""The two ways the state store can fail that callers must handle: it is unusable, or too new."""

from __future__ import annotations


class StateUnavailable(RuntimeError):
    """The state store cannot be opened or written: unreachable server, full or read-only disk, damaged file.

    One message, naming the store (never its password) and the reason, for the CLI to print and the
    app to show instead of a traceback. Whatever was committed before the failure is intact.
    """


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release; writing to it with this one could corrupt it."""

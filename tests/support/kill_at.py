"""A ``kbassist`` ingest that dies (SIGKILL) right after one given write to the store.

Run as ``python -m tests.support.kill_at CORPUS STEP [READER_STEP]``, with the store chosen by
the usual ``KBASSIST_*`` variables. A step is ``<collection>.<write>#<n>``: the ``n``-th
``upsert``/``delete``/``modify`` of the chunk collection (``chunks``), the segment vectors
(``segments``) or the document registry (``registry``, whose ``modify`` is the revision change).
``READER_STEP``, when given, is where a concurrent reader builds every role's index: the
worst moment for it is after the revision changed and before the chunks did.

Exit code 3 means the run finished without reaching ``STEP`` (the test chose a step that
does not happen), so a test can tell a missed kill from a clean run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from assist.role_indexes import ChunkIndexes
from ingest.pipeline import ingest
from kb import store as kb_store
from kb.settings import Settings

WRITES = ("upsert", "delete", "modify")


def step_name(operation: str, collection: str) -> str | None:
    """``kbassist__documents.upsert`` -> ``registry.upsert``; None for reads and other calls."""
    name, _, call = operation.rpartition(".")
    if call not in WRITES:
        return None
    part = {"": "chunks", "__segments": "segments", "__documents": "registry"}.get(name.removeprefix(collection))
    return f"{part}.{call}" if part and name.startswith(collection) else None


def main(corpus: str, kill_step: str, reader_step: str = "") -> int:
    settings = Settings()
    seen: Counter[str] = Counter()
    original = kb_store.KnowledgeStore._invoke
    busy = False

    def invoke(self: kb_store.KnowledgeStore, operation: str, call: Any, write: bool, policy: Any) -> Any:
        nonlocal busy
        result = original(self, operation, call, write, policy)
        step = step_name(operation, settings.kb_collection) if write and not busy else None
        if step is None:
            return result
        seen[step] += 1
        at = f"{step}#{seen[step]}"
        if at == reader_step:
            busy = True
            ChunkIndexes(self).prepare()
            busy = False
        if at == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    kb_store.KnowledgeStore._invoke = invoke  # type: ignore[method-assign]
    ingest([Path(corpus)], kb_store.KnowledgeStore(settings))
    print("steps:", dict(seen), file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

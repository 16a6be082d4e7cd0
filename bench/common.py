"""What every benchmark records next to its numbers: the machine and the library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def machine() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    versions = {p: metadata.version(p) for p in ("chromadb", "onnxruntime", "tokenizers", "tiktoken", "bm25s")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}

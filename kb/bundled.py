"""Data that ships inside the package: the demo knowledge base."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def demo_docs_path() -> Path:
    """The bundled demo knowledge base's documents (package data of ``kb``, see kb/demo/README.md)."""
    return Path(str(resources.files("kb") / "demo" / "docs"))

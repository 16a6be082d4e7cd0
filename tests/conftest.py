"""Shared fixtures: an isolated data dir per test, real files written on disk."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from kb.settings import Settings
from kb.store import KnowledgeStore
from tests.support.databases import BACKENDS, fresh_database

# Every run of the suite draws the same examples (derandomized) and reads no example database, so
# a result never depends on the machine, the day, or what an earlier run saved: a random draw
# cannot block a landing. Exploration with fresh random examples is a separate, explicit command
# (README, "Tests"): `scripts/test -k properties --hypothesis-profile=explore`; a failure it finds
# becomes an explicit @example in the test.
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile(
    "explore", derandomize=False, database=None, max_examples=2000, print_blob=True
)
hypothesis_settings.load_profile("deterministic")

DOCS = {
    "refunds.md": """---
title: Refunds
audience: customer
market: SE
review_by: 2030-01-01
version: 2
---
# Refunds

You can return an item within 30 days of delivery.

## Partial refunds

1. Open the order.
2. Choose the items to return.
   - Keep the receipt.
3. Confirm the refund.
""",
    "fees.md": """---
title: Late fees
audience: agent
market: DE
review_by: 2020-01-01
---
# Late fees

| Fee | Amount |
|-----|--------|
| Reminder | 2.50 EUR |
""",
}


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Tests see defaults only: no KBASSIST_* from the developer's shell, no kbassist.toml.

    The test servers' addresses (KBASSIST_TEST_*: Chroma, PostgreSQL, llama.cpp) stay. State
    stores a test opened are closed after it.
    """
    for name in list(os.environ):
        if name.startswith("KBASSIST_") and not name.startswith("KBASSIST_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KBASSIST_CONFIG", str(tmp_path / "no-config.toml"))
    yield
    if "kb.state.store" in sys.modules:  # only tests that used a state store pay for closing it
        sys.modules["kb.state.store"].close_all()


@pytest.fixture(params=BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty state database: SQLite, then PostgreSQL (KBASSIST_TEST_POSTGRES_URL)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def store(settings: Settings) -> KnowledgeStore:
    return KnowledgeStore(settings)


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeStore:
    """The bundled demo knowledge base, ingested once per test session."""
    from ingest.pipeline import ingest
    from kb.bundled import demo_docs_path

    store = KnowledgeStore(Settings(data_dir=tmp_path_factory.mktemp("demo") / "data"))
    report = ingest([demo_docs_path()], store)
    assert report.ok, [str(e) for e in report.errors]
    return store

"""Integration against a real ``chroma run`` server through HttpClient.

Uses the server named by KBASSIST_TEST_CHROMA_URL (``.ci/run`` starts one), or starts its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore, StoreUnavailable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("KBASSIST_TEST_CHROMA_URL"):
        yield url
        return
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma run did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ingest_and_query_through_http_client(chroma_url: str, tmp_path: Path, docs_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", chroma_url=chroma_url, collection=f"t-{uuid.uuid4().hex[:8]}")
    store = KnowledgeStore(settings)
    assert type(store.client).__name__ != "PersistentClient"
    report = ingest([docs_dir], store)
    assert report.ok and sorted(report.added) == ["fees", "refunds"]
    assert not (tmp_path / "data" / "chroma").exists(), "server mode must not write an embedded store"

    # A second process-level view of the same server sees the same registry.
    again = KnowledgeStore(settings)
    assert [d.doc_id for d in again.documents()] == ["fees", "refunds"]
    assert ingest([docs_dir], again).chunks_written == 0

    query = again.embedder.embed(["how many days do I have to return an item"])[0]
    hits = again.query(query, n_results=3, where={"audience": "customer"})
    assert hits and all(meta["audience"] == "customer" for _, _, meta, _ in hits)
    assert "30 days" in hits[0][1]


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, chroma_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(StoreUnavailable, match="cannot reach the Chroma server"):
        KnowledgeStore(settings)


def test_malformed_server_url(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="must look like"):
        KnowledgeStore(Settings(data_dir=tmp_path, chroma_url="localhost:8000"))

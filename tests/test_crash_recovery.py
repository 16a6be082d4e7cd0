"""An ingest killed with SIGKILL at any point converges, on re-run, to what a clean run stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore
from tests.support.stores import Snapshot, clean_snapshot, demo_subset, snapshot


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_subset(tmp_path_factory.mktemp("corpus"), 24)


@pytest.fixture(scope="module")
def clean(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return clean_snapshot(corpus, tmp_path_factory.mktemp("clean"))


def test_killed_ingest_converges(corpus: Path, clean, tmp_path: Path) -> None:
    partial_states = []
    for n, kill_after_s in enumerate((3.0, 6.0, 9.0)):
        data_dir = tmp_path / str(n)
        # Small groups: documents are written throughout the run, so kills land between writes.
        env = {**os.environ, "KBASSIST_DATA_DIR": str(data_dir), "KBASSIST_INGEST_GROUP_CHUNKS": "8"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kbassist_cli", "ingest", str(corpus)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(kill_after_s)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if (data_dir / "chroma").exists():
            partial_states.append(len(snapshot(data_dir)[1]))
        report = ingest([corpus], KnowledgeStore(Settings(data_dir=data_dir)))
        assert report.ok
        chunks, registry = snapshot(data_dir)
        assert registry == clean[1]
        assert chunks == clean[0], "same chunk ids and texts, no duplicates, no orphans"
    assert any(0 < docs < len(clean[1]) for docs in partial_states), f"no kill landed mid-ingest: {partial_states}"

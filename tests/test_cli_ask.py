"""`kbassist ask` from the shell: markets it knows, and what a start pays for (no index build after an
ingest, no package imported that the command does not use)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assist.access import ROLE_AUDIENCES
from assist.service import Assistant
from kb.settings import Settings
from kb.store import KnowledgeStore
from kbassist_cli import app
from tests.support.app_kb import write_kb

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The shared small knowledge base, ingested through the command line."""
    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(settings.data_dir))
    done = CliRunner().invoke(app, ["ingest", str(write_kb(tmp_path / "docs"))])
    assert done.exit_code == 0, done.output
    return settings


def test_an_unknown_market_is_an_error_naming_the_known_ones(cli_kb: Settings) -> None:
    runner = CliRunner()
    wrong = runner.invoke(app, ["ask", "How long do I have to return an item?", "--role", "customer", "--market", "XX"])
    assert wrong.exit_code == 2
    assert "no document for market 'XX'" in wrong.output and "markets it knows: DE, SE" in wrong.output
    for market in ("se", "ALL"):
        ok = runner.invoke(app, ["ask", "How long do I have to return an item?", "--market", market, "--json"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.output)["question"]


def test_the_first_ask_after_an_ingest_builds_no_index(cli_kb: Settings) -> None:
    store = KnowledgeStore(cli_kb)  # a new process's view: nothing cached
    assistant = Assistant(store)
    for role in ROLE_AUDIENCES:
        assistant.ask("How long do I have to return an item?", role=role)
    assert assistant.retriever.lexical.builds == 0, "the ingest command built every role's index"


def test_the_command_line_imports_only_what_a_command_uses() -> None:
    heavy = ["chromadb", "onnxruntime", "langchain_core", "streamlit", "eval.runner", "ingest.pipeline", "assist.service"]
    code = f"import sys, kbassist_cli; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

"""Removing and inspecting documents: the service functions, the CLI, and what every role can still find.

A real embedded Chroma with the shared small knowledge base (customer, agent and internal
documents), real persisted role indexes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kbassist_cli
from assist.access import ROLE_AUDIENCES, Filters
from assist.role_indexes import ChunkIndexes
from assist.service import Assistant
from ingest.pipeline import ingest
from kb.documents import UnknownDocuments, documents_under, remove_documents, show_document
from kb.settings import Settings
from kb.store import KnowledgeStore
from kbassist_cli import app
from tests.support.app_kb import DOCS, write_kb
from tests.support.stores import demo_subset

ROLES = tuple(ROLE_AUDIENCES)


@pytest.fixture
def kb(store: KnowledgeStore, tmp_path: Path) -> KnowledgeStore:
    assert ingest([write_kb(tmp_path / "docs")], store).ok
    return store


def _chunks_of(index, doc_id: str) -> list[str]:
    return [i for i in index.ids[:] if i.split(":", 1)[0] == doc_id]


def _found_by(assistant: Assistant, role: str, doc_id: str, query: str) -> set[str]:
    """Documents among a role's passages for ``query``, searched everywhere and within ``doc_id`` only."""
    everywhere = assistant.retriever.retrieve(query, role, Filters(), k=10).passages
    within = assistant.retriever.retrieve(query, role, Filters(doc_id=doc_id), k=10).passages
    return {p.doc_id for p in everywhere} | {p.doc_id for p in within}


@pytest.mark.parametrize(
    ("doc_id", "query", "readers"),
    [
        ("returns-se", "return an item within 30 days of delivery in Sweden", ROLES),
        ("fraud-thresholds", "Purchases above 9500 SEK trigger a manual fraud review FRX-17", ("internal",)),
    ],
)
def test_a_removed_document_is_retrieved_by_no_role(
    kb: KnowledgeStore, doc_id: str, query: str, readers: tuple[str, ...]
) -> None:
    assistant = Assistant(kb)
    assistant.retriever.lexical.prepare()
    for role in readers:  # before: every role that may read it finds it
        assert doc_id in _found_by(assistant, role, doc_id, query), role
        assert _chunks_of(assistant.retriever.lexical.for_role(role), doc_id), role
    revision, chunks = kb.revision(), kb.document(doc_id).chunk_count

    removed = remove_documents(kb, [doc_id], actor="test")
    assert [(r.doc_id, r.chunks) for r in removed] == [(doc_id, chunks)] and chunks > 0
    assert kb.revision() != revision, "the revision moves, which retires every role's index"
    assert kb.document(doc_id) is None and kb.chunk_ids(doc_id) == set()

    fresh = Assistant(KnowledgeStore(kb.settings))  # another process, with its own index cache
    for reader in (assistant, fresh):
        for role in ROLES:
            index = reader.retriever.lexical.for_role(role)
            assert index.revision == kb.revision()
            assert _chunks_of(index, doc_id) == [], role
            assert doc_id not in _found_by(reader, role, doc_id, query), role


def test_unknown_ids_remove_nothing(kb: KnowledgeStore) -> None:
    before, revision = [d.doc_id for d in kb.documents()], kb.revision()
    with pytest.raises(UnknownDocuments) as info:
        remove_documents(kb, ["returns-se", "returns-sweden", "nope"])
    assert info.value.missing == ["returns-sweden", "nope"]
    assert "returns-se" in str(info.value), "a close id is suggested"
    assert [d.doc_id for d in kb.documents()] == before and kb.revision() == revision


def test_show_gives_metadata_and_passages_in_order(kb: KnowledgeStore) -> None:
    view = show_document(kb, "disputes")
    assert view.record.title == "Handling a dispute" and view.record.path.endswith("disputes.md")
    assert [c.position for c in view.chunks] == list(range(len(view.chunks))) and view.chunks
    assert all(c.tokens > 0 and c.section.startswith("Handling a dispute") for c in view.chunks)
    assert sum(c.tokens for c in view.chunks) >= len(" ".join(c.text for c in view.chunks).split()) // 2
    with pytest.raises(UnknownDocuments):
        show_document(kb, "disputez")


def test_cli_show(kb: KnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(kb.settings.data_dir))
    runner = CliRunner()
    shown = runner.invoke(app, ["kb", "show", "disputes"])
    assert shown.exit_code == 0, shown.output
    assert "source:" in shown.output and "disputes.md" in shown.output and "tokens" in shown.output
    data = json.loads(runner.invoke(app, ["kb", "show", "disputes", "--json"]).output)
    assert data["doc_id"] == "disputes" and data["owner"] == "Disputes team"
    assert data["chunks"][0]["section"].startswith("Handling a dispute") and "Pause the invoice" in json.dumps(data)
    missing = runner.invoke(app, ["kb", "show", "nope"])
    assert missing.exit_code == 2 and "no such document" in missing.output


def test_cli_remove_asks_first(kb: KnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(kb.settings.data_dir))
    runner = CliRunner()
    declined = runner.invoke(app, ["kb", "remove", "newsletter", "disputes"], input="n\n")
    assert declined.exit_code == 1 and "Nothing removed" in declined.output
    assert "newsletter" in declined.output and "disputes" in declined.output
    assert kb.document("newsletter") is not None and kb.document("disputes") is not None
    unknown = runner.invoke(app, ["kb", "remove", "newsletter", "nope", "--yes"])
    assert unknown.exit_code == 2 and "'nope'" in unknown.output and "Nothing was removed" in unknown.output
    assert kb.document("newsletter") is not None
    accepted = runner.invoke(app, ["kb", "remove", "newsletter"], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "removed 1 document(s)" in accepted.output and kb.document("newsletter") is None
    forced = runner.invoke(app, ["kb", "remove", "disputes", "--yes"])
    assert forced.exit_code == 0 and kb.document("disputes") is None
    # The command prepared the role indexes of the new revision: the next question maps them.
    assert all(ChunkIndexes(kb).path(role, kb.revision()).is_dir() for role in ROLES)


def test_cli_remove_under_a_folder(kb: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write_kb(tmp_path / "other", ("fraud-thresholds.md",))
    (other / "fraud-thresholds.md").rename(other / "fraud-copy.md")
    assert ingest([other], kb).added == ["fraud-copy"]
    assert documents_under(kb, other) == ["fraud-copy"]
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(kb.settings.data_dir))
    done = CliRunner().invoke(app, ["kb", "remove", "--under", str(other), "--yes"])
    assert done.exit_code == 0, done.output
    assert kb.document("fraud-copy") is None and len(kb.documents()) == len(DOCS)


# -- the demo in its own knowledge base ------------------------------------------------------------


def test_the_demo_is_its_own_knowledge_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (tmp_path / "demo").mkdir()
    # The bundled demo, cut to its first files so the test runs in seconds: same folder layout, same CLI path.
    demo = demo_subset(tmp_path / "demo", 4)
    monkeypatch.setattr(kbassist_cli, "demo_docs_path", lambda: demo)
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(data))
    runner = CliRunner()
    # What `ingest --demo` did before the demo had a knowledge base of its own: the default one holds it.
    assert ingest([demo], KnowledgeStore(Settings(data_dir=data))).ok

    done = runner.invoke(app, ["ingest", "--demo"])
    assert done.exit_code == 0, done.output
    assert "kbassist kb remove --under" in done.output, "the leftovers in the default knowledge base are pointed out"
    default = KnowledgeStore(Settings(data_dir=data))
    demo_kb = KnowledgeStore(Settings(data_dir=data, kb="demo"))
    assert demo_kb.settings.kb_collection == "kbassist-demo" and len(demo_kb.documents()) == len(default.documents())
    assert all(ChunkIndexes(demo_kb).path(role, demo_kb.revision()).is_dir() for role in ROLES)

    removed = runner.invoke(app, ["kb", "remove", "--under", str(demo), "--yes"])
    assert removed.exit_code == 0, removed.output
    assert default.documents() == [] and len(demo_kb.documents()) > 0
    assert "empty" in runner.invoke(app, ["kb", "list"]).output
    listed = json.loads(runner.invoke(app, ["--kb", "demo", "kb", "list", "--json"]).output)
    assert sorted(d["doc_id"] for d in listed) == sorted(d.doc_id for d in demo_kb.documents())
    monkeypatch.setenv("KBASSIST_KB", "demo")
    assert json.loads(runner.invoke(app, ["kb", "list", "--json"]).output) == listed
    assert runner.invoke(app, ["--kb", "default", "kb", "list", "--json"]).output.strip() == "[]"
    assert runner.invoke(app, ["--kb", "nope", "kb", "list"]).exit_code == 2
    mixed = runner.invoke(app, ["ingest", "--demo", str(demo)])
    assert mixed.exit_code == 2 and "own knowledge base" in mixed.output


def test_demo_settings_keep_their_own_files(tmp_path: Path) -> None:
    own, demo = Settings(data_dir=tmp_path), Settings(data_dir=tmp_path, kb="demo")
    assert own.kb_collection == "kbassist" and demo.kb_collection == "kbassist-demo"
    assert own.interactions_path == tmp_path / "interactions.sqlite"
    assert demo.interactions_path == tmp_path / "demo" / "interactions.sqlite"
    assert demo.eval_runs_path == tmp_path / "demo" / "eval-runs" and own.eval_runs_path == tmp_path / "eval-runs"
    assert Settings(data_dir=tmp_path, kb="demo", collection="acme").kb_collection == "acme-demo"

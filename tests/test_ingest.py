from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ingest.pipeline import ingest
from kb.store import KnowledgeStore
from kbassist_cli import app


def _all_chunks(store: KnowledgeStore) -> dict[str, str]:
    got = store.chunks.get(include=["documents"])
    return dict(zip(got["ids"], got["documents"], strict=True))


def test_first_run_registers_documents(store: KnowledgeStore, docs_dir: Path) -> None:
    report = ingest([docs_dir], store)
    assert report.ok and sorted(report.added) == ["fees", "refunds"]
    records = {d.doc_id: d for d in store.documents()}
    assert records["refunds"].audience == "customer" and records["refunds"].version == "2"
    assert records["refunds"].chunk_count == len(store.chunk_ids("refunds")) > 0
    assert store.stats().stale == ["fees"]
    meta = store.chunks.get(where={"doc_id": "fees"}, include=["metadatas"])["metadatas"][0]
    assert meta["audience"] == "agent" and meta["market"] == "DE" and meta["section"] == "Late fees"


def test_rerun_on_unchanged_folder_writes_nothing(store: KnowledgeStore, docs_dir: Path) -> None:
    ingest([docs_dir], store)
    before = _all_chunks(store)
    report = ingest([docs_dir], store)
    assert report.chunks_written == 0 and sorted(report.unchanged) == ["fees", "refunds"]
    assert _all_chunks(store) == before


def test_changed_document_replaces_its_chunks(store: KnowledgeStore, docs_dir: Path) -> None:
    ingest([docs_dir], store)
    path = docs_dir / "refunds.md"
    path.write_text(path.read_text().replace("within 30 days", "within 14 days"))
    report = ingest([docs_dir], store)
    assert report.updated == ["refunds"] and report.unchanged == ["fees"]
    texts = [t for i, t in _all_chunks(store).items() if i.startswith("refunds:")]
    assert any("14 days" in t for t in texts) and not any("30 days" in t for t in texts)
    assert len(texts) == store.document("refunds").chunk_count


def test_deleted_document_is_pruned_only_for_folders(store: KnowledgeStore, docs_dir: Path) -> None:
    ingest([docs_dir], store)
    (docs_dir / "fees.md").unlink()
    assert ingest([docs_dir], store, prune=False).deleted == []
    assert ingest([docs_dir / "refunds.md"], store).deleted == []
    report = ingest([docs_dir], store)
    assert report.deleted == ["fees"]
    assert store.chunk_ids("fees") == set() and store.document("fees") is None


def test_bad_files_are_reported_and_the_rest_ingested(store: KnowledgeStore, docs_dir: Path) -> None:
    (docs_dir / "empty.md").write_bytes(b"")
    (docs_dir / "corrupt.pdf").write_bytes(b"%PDF-1.7 garbage")
    (docs_dir / "mixed.txt").write_bytes("Gebühr ".encode() + "Gebühr".encode("latin-1"))  # no one encoding reads it
    report = ingest([docs_dir], store)
    assert sorted(report.added) == ["fees", "refunds"]
    assert sorted(e.path.name for e in report.errors) == ["corrupt.pdf", "empty.md", "mixed.txt"]
    assert {d.doc_id for d in store.documents()} == {"fees", "refunds"}


def test_a_file_that_breaks_keeps_its_previous_version(store: KnowledgeStore, docs_dir: Path) -> None:
    ingest([docs_dir], store)
    before = store.chunk_ids("refunds")
    (docs_dir / "refunds.md").write_bytes(b"---\naudience: [oops\n---\n")
    report = ingest([docs_dir], store)
    assert [e.path.name for e in report.errors] == ["refunds.md"] and report.deleted == []
    assert store.chunk_ids("refunds") == before


def test_interrupted_write_converges(store: KnowledgeStore, docs_dir: Path) -> None:
    """Chunks upserted but the registry not updated (a crash between the two) heal on re-run."""
    ingest([docs_dir], store)
    clean = _all_chunks(store)
    store.chunks.upsert(
        ids=["refunds:orphan:0:deadbeef"],
        documents=["stale"],
        embeddings=[[0.1] * 384],
        metadatas=[{"doc_id": "refunds"}],
    )
    record = store.document("refunds")
    record.sha256 = "interrupted"
    store.registry.upsert(ids=["refunds"], embeddings=[[1.0]], metadatas=[record.to_metadata()])
    ingest([docs_dir], store)
    assert _all_chunks(store) == clean


def test_cli_ingest_list_stats(settings, docs_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(settings.data_dir))
    (docs_dir / "binary.txt").write_bytes(b"\x00\x00\x00")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(docs_dir)])
    assert result.exit_code == 1
    assert "binary.txt: binary content" in result.output and "2 added" in result.output
    listing = json.loads(runner.invoke(app, ["kb", "list", "--json"]).output)
    assert [d["doc_id"] for d in listing] == ["fees", "refunds"]
    stats = json.loads(runner.invoke(app, ["kb", "stats", "--json"]).output)
    assert stats["documents"] == 2 and stats["by_audience"] == {"agent": 1, "customer": 1}
    assert runner.invoke(app, ["ingest"]).exit_code == 2

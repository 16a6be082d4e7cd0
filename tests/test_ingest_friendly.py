"""Ingest says what it did with every file: encodings, duplicates, unsupported files, defaults, ids.

Real files on disk, a real embedded Chroma; the CLI runs as a real process where what reaches
the terminal is the point.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest import loaders
from ingest.loaders import doc_id_for, legacy_slugify, load_document, slugify
from ingest.pipeline import ingest
from kb.store import KnowledgeStore
from kbassist_cli import app

ROOT = Path(__file__).resolve().parents[1]
FRONT = "---\naudience: customer\nmarket: DE\n---\n"


def _pdf_bytes(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, text)
    return bytes(pdf.output())


def _bad_xref(data: bytes) -> bytes:
    """A readable PDF whose startxref pointer is off: pypdf warns, repairs it and reads the text."""
    return re.sub(rb"startxref\s+(\d+)", lambda m: b"startxref\n" + str(int(m.group(1)) + 7).encode(), data)


# -- encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("# Gebühren\n\nDie Mahngebühr beträgt 2,50 € für jede Erinnerung.", "cp1252"),
        ("# Återbetalning\n\nVi betalar tillbaka pengarna inom fem bankdagar – när butiken har registrerat returen.", "cp1252"),
        ("# Gebühr\n\nÄrger mit der Größe? Rückgabe innerhalb von 14 Tagen.", "latin-1"),
    ],
)
def test_a_file_not_in_utf8_is_read_in_the_detected_encoding(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "policy.md"
    path.write_bytes((FRONT + text).encode(encoding))
    doc = load_document(path, tmp_path, 10**6)
    assert doc.encoding == "cp1252", "the Western code page is named when it reads the same text"
    assert text.split("\n\n", 1)[1] in doc.text
    assert doc.metadata["audience"] == "customer", "front matter is read in the detected encoding too"


def test_utf8_and_utf16_are_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nÅterbetalning", encoding="utf-8")
    (tmp_path / "b.md").write_bytes("# B\n\nRückgabe".encode("utf-16"))
    assert load_document(tmp_path / "a.md", tmp_path, 10**6).encoding == "utf-8"
    assert load_document(tmp_path / "b.md", tmp_path, 10**6).encoding == "utf-16"


def test_the_report_names_the_encoding_and_logs_it(
    store: KnowledgeStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "gebuehren.txt").write_bytes((FRONT + "# Gebühren\n\nDie Mahngebühr beträgt 2,50 €.").encode("cp1252"))
    (folder / "plain.md").write_text(FRONT + "# Plain\n\nAll UTF-8.", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="ingest.pipeline"):
        report = ingest([folder], store)
    assert report.ok and sorted(report.added) == ["gebuehren", "plain"]
    assert report.encodings == {str(folder / "gebuehren.txt"): "cp1252"}
    assert "1 file not in UTF-8, read in the encoding detected: gebuehren.txt (cp1252)" in report.summary()
    assert report.to_dict()["encodings"] == {str(folder / "gebuehren.txt"): "cp1252"}
    assert any("encoding=cp1252" in r.getMessage() and "gebuehren.txt" in r.getMessage() for r in caplog.records)
    stored = store.chunks.get(where={"doc_id": "gebuehren"}, include=["documents"])["documents"]
    assert any("Mahngebühr beträgt 2,50 €" in t for t in stored)


# -- one document per real file -------------------------------------------------------------------


def test_a_symlink_to_a_file_in_the_run_is_not_a_second_document(store: KnowledgeStore, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "refunds.md").write_text(FRONT + "# Refunds\n\nWithin 14 days.", encoding="utf-8")
    # Sorted before the file it points to: the real file must still name the document.
    (folder / "a-shortcut.md").symlink_to(folder / "refunds.md")
    report = ingest([folder], store)
    assert report.ok and report.added == ["refunds"]
    assert [(d.path.name, d.same_as.name) for d in report.duplicates] == [("a-shortcut.md", "refunds.md")]
    assert "1 path to a file already ingested in this run skipped: a-shortcut.md (same file as refunds.md)" in (
        report.summary()
    )
    assert [d.doc_id for d in store.documents()] == ["refunds"]
    again = ingest([folder], store)
    assert again.unchanged == ["refunds"] and again.deleted == [] and len(again.duplicates) == 1


def test_a_file_given_beside_its_folder_is_ingested_once(store: KnowledgeStore, docs_dir: Path) -> None:
    report = ingest([docs_dir, docs_dir / "refunds.md"], store)
    assert report.ok and sorted(report.added) == ["fees", "refunds"]
    assert [d.path.name for d in report.duplicates] == ["refunds.md"]


# -- unsupported files and defaults ---------------------------------------------------------------


def test_unsupported_files_in_a_folder_are_counted_and_named(settings, docs_dir: Path, monkeypatch) -> None:
    (docs_dir / "prices.csv").write_text("fee,amount\nreminder,2.50\n")
    (docs_dir / "export.json").write_text("{}")
    (docs_dir / "notes.csv").write_text("a,b\n")
    (docs_dir / ".hidden.csv").write_text("never listed")
    (docs_dir / "refunds.md.meta.yaml").write_text("owner: Refunds team\n")  # a sidecar is not a document
    monkeypatch.setenv("KBASSIST_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(app, ["ingest", str(docs_dir)])
    assert result.exit_code == 0, result.output
    assert "3 files of a type not ingested: .csv ×2, .json ×1" in result.output
    listed = json.loads(CliRunner().invoke(app, ["ingest", str(docs_dir), "--json"]).output)
    assert sorted(Path(p).name for p in listed["unsupported"]) == ["export.json", "notes.csv", "prices.csv"]


def test_documents_without_an_audience_are_counted(store: KnowledgeStore, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "open.md").write_text("# Open\n\nNo front matter at all.", encoding="utf-8")
    (folder / "sidecar.md").write_text("# Sidecar\n\nText.", encoding="utf-8")
    (folder / "sidecar.md.meta.yaml").write_text("audience: agent\n")
    (folder / "titled.md").write_text("---\ntitle: Titled\n---\n# Titled\n\nText.", encoding="utf-8")
    report = ingest([folder], store)
    assert sorted(report.no_audience) == ["open", "titled"]
    assert "2 documents had no audience and were made internal: open, titled" in report.summary()
    assert {d.doc_id: d.audience for d in store.documents()} == {
        "open": "internal",
        "sidecar": "agent",
        "titled": "internal",
    }


# -- ids ------------------------------------------------------------------------------------------


def test_ids_are_transliterated_and_ascii_ids_unchanged(tmp_path: Path) -> None:
    assert slugify("Übersicht Zahlungsmethoden") == "ubersicht-zahlungsmethoden"
    assert slugify("Ärger") == "arger" != slugify("rger")
    assert [slugify(w) for w in ("Straße", "Smørrebrød", "Æble", "Återköp")] == ["strasse", "smorrebrod", "aeble", "aterkop"]
    for ascii_name in ("refunds-returns-se", "Late Fees (DE) v2", "a_b.c"):
        assert slugify(ascii_name) == legacy_slugify(ascii_name)
    cyrillic = [doc_id_for(tmp_path / name, tmp_path) for name in ("Отчёт.md", "Возврат.md")]
    assert all(i.startswith("document-") for i in cyrillic) and cyrillic[0] != cyrillic[1]


def test_two_files_with_one_id_fail_with_both_names(store: KnowledgeStore, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "Arger.md").write_text(FRONT + "# Arger\n\nOne.", encoding="utf-8")
    (folder / "Ärger.md").write_text(FRONT + "# Ärger\n\nTwo.", encoding="utf-8")
    (folder / "rger.md").write_text(FRONT + "# rger\n\nThree.", encoding="utf-8")
    report = ingest([folder], store)
    assert sorted(report.added) == ["arger", "rger"]
    [error] = report.errors
    message = str(error)
    assert "\n" not in message and "'arger'" in message
    assert "Arger.md" in message and "Ärger.md" in message


def test_ids_made_by_the_old_slug_are_renamed_and_reported(
    store: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "Übersicht Zahlungsmethoden.md").write_text(FRONT + "# Zahlungsmethoden\n\nRechnung, Raten.", "utf-8")
    (folder / "refunds.md").write_text(FRONT + "# Refunds\n\nWithin 14 days.", encoding="utf-8")
    with monkeypatch.context() as old_release:  # the knowledge base an older release left behind
        old_release.setattr(loaders, "slugify", legacy_slugify)
        old_release.setattr(store.settings, "parse_timeout_s", 0.0)  # read here, where the patch is
        assert sorted(ingest([folder], store).added) == ["bersicht-zahlungsmethoden", "refunds"]
    report = ingest([folder], store)
    assert report.renamed == [("bersicht-zahlungsmethoden", "ubersicht-zahlungsmethoden")]
    assert report.added == [] and report.deleted == [] and report.unchanged == ["refunds"]
    assert "1 renamed" in report.summary()
    assert "got a new id (old id removed): bersicht-zahlungsmethoden → ubersicht-zahlungsmethoden" in report.summary()
    assert [d.doc_id for d in store.documents()] == ["refunds", "ubersicht-zahlungsmethoden"]
    assert store.chunk_ids("bersicht-zahlungsmethoden") == set()
    assert ingest([folder], store).unchanged == ["refunds", "ubersicht-zahlungsmethoden"]


def test_an_id_from_front_matter_is_kept(store: KnowledgeStore, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "Übersicht.md").write_text("---\nid: payment-overview\n---\n# Overview\n\nText.", encoding="utf-8")
    ingest([folder], store)
    report = ingest([folder], store)
    assert report.unchanged == ["payment-overview"] and report.renamed == []


# -- one line per error ---------------------------------------------------------------------------


def test_library_warnings_are_folded_into_the_files_one_line(
    store: KnowledgeStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    good = _pdf_bytes("Refunds are paid within 5 days.")
    (folder / "repaired.pdf").write_bytes(_bad_xref(good))
    (folder / "truncated.pdf").write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.INFO):
        report = ingest([folder], store)
    assert report.added == ["repaired"]
    [error] = report.errors
    assert error.path.name == "truncated.pdf" and "\n" not in str(error)
    assert "corrupt or unreadable PDF" in error.reason and "EOF marker not found" in error.reason
    assert not [r for r in caplog.records if r.name.startswith("pypdf")], "pypdf's own records never reach the log"
    assert any("repaired.pdf" in r.getMessage() and "startxref" in r.getMessage() for r in caplog.records)


def test_the_cli_prints_each_error_once_and_no_library_warning(settings, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    good = _pdf_bytes("Refunds are paid within 5 days.")
    (folder / "repaired.pdf").write_bytes(_bad_xref(good))
    (folder / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (folder / "empty.md").write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBASSIST_")}
    env |= {"KBASSIST_DATA_DIR": str(settings.data_dir), "KBASSIST_CONFIG": str(tmp_path / "none.toml")}
    done = subprocess.run(
        [sys.executable, "-m", "kbassist_cli", "ingest", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("ingest")]  # no progress bar
    [truncated] = [ln for ln in lines if "truncated.pdf" in ln]
    assert truncated.startswith("error: ") and "EOF marker not found" in truncated
    assert [ln for ln in lines if "empty.md" in ln] == [f"error: {folder / 'empty.md'}: empty file"]
    assert not [ln for ln in lines if "pypdf" in ln or "WARNING" in ln], lines
    assert "1 added" in done.stdout and "2 failed" in done.stdout

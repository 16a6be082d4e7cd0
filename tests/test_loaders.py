from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import LoadError
from ingest.loaders import load_document

MAX = 1_000_000


def _pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 10, "Chargebacks", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 10, "Time limits", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, "A chargeback must be raised within 120 days of the purchase.", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "1. Collect the receipt.", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "2. Submit the form.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(pdf.l_margin + 8)
    pdf.multi_cell(0, 6, "- Keep a copy.", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "| Market | Days |", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "| SE | 120 |", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "A paragraph after the table", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def _docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Identity checks", level=1)
    document.add_heading("Documents we accept", level=2)
    document.add_paragraph("We accept a passport or a national ID card.")
    document.add_paragraph("Ask for the document.", style="List Number")
    document.add_paragraph("Check the photo.", style="List Number")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Market", "Minimum age"
    table.cell(1, 0).text, table.cell(1, 1).text = "SE", "18"
    document.save(str(path))
    return path


def test_markdown_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "Refund Policy.md"
    path.write_text("---\naudience: Customer\nmarket: se\nreview_by: 2027-01-31\n---\n# Refunds\n\nText.\n")
    doc = load_document(path, tmp_path, MAX)
    assert doc.doc_id == "refund-policy"
    assert doc.metadata == {
        "audience": "customer",
        "market": "SE",
        "review_by": "2027-01-31",
        "language": "en",
        "title": "Refunds",
    }
    assert doc.text == "# Refunds\n\nText."


def test_missing_audience_defaults_to_least_exposure(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("Plain note without front matter.")
    assert load_document(path, tmp_path, MAX).metadata["audience"] == "internal"


def test_html_structure_and_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "late-fees.html"
    path.write_text(
        "<html><head><title>Late fees</title><meta name='audience' content='agent'></head><body>"
        "<nav>Home | Help</nav><h1>Late fees</h1><p>A reminder costs <b>60 SEK</b>.</p>"
        "<ol><li>Check the due date.</li><li>Waive once.<ul><li>Log it.</li></ul></li></ol>"
        "<table><tr><th>Market</th><th>Fee</th></tr><tr><td>SE</td><td>60 SEK</td></tr></table>"
        "<footer>© Brightloop</footer><script>track()</script></body></html>"
    )
    doc = load_document(path, tmp_path, MAX)
    assert doc.metadata["audience"] == "agent" and doc.metadata["title"] == "Late fees"
    assert "# Late fees" in doc.text and "A reminder costs 60 SEK." in doc.text
    assert "1. Check the due date.\n2. Waive once.\n   - Log it." in doc.text
    assert "| Market | Fee |\n| SE | 60 SEK |" in doc.text
    assert "Home" not in doc.text and "Brightloop" not in doc.text and "track" not in doc.text


def test_pdf_headings_from_font_size(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "chargebacks.pdf")
    path.with_name("chargebacks.pdf.meta.yaml").write_text("audience: agent\nmarket: DE\n")
    doc = load_document(path, tmp_path, MAX)
    assert doc.format == "pdf" and doc.metadata["market"] == "DE"
    assert "# Chargebacks" in doc.text and "## Time limits" in doc.text
    assert "1. Collect the receipt.\n2. Submit the form.\n   - Keep a copy." in doc.text
    assert "| SE | 120 |\n\nA paragraph after the table" in doc.text


def test_docx_headings_steps_tables(tmp_path: Path) -> None:
    doc = load_document(_docx(tmp_path / "kyc.docx"), tmp_path, MAX)
    assert "# Identity checks" in doc.text and "## Documents we accept" in doc.text
    assert "1. Ask for the document.\n2. Check the photo." in doc.text
    assert "| Market | Minimum age |\n| SE | 18 |" in doc.text


def test_sidecar_overrides_embedded_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("---\naudience: customer\n---\n# A\n\nx")
    (tmp_path / "a.md.meta.yaml").write_text("audience: internal\nid: Custom ID\n")
    doc = load_document(path, tmp_path, MAX)
    assert doc.metadata["audience"] == "internal" and doc.doc_id == "custom-id"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.md", b"   \n\n  ", "no extractable text"),
        ("binary.txt", b"\x00\x01\x02binary" * 10, "binary content"),
        ("mixed.md", "Rückgabe ".encode() + "Rückgabe".encode("latin-1"), "mixes UTF-8 with another encoding"),
        ("broken.pdf", b"%PDF-1.4\nthis is not a pdf", "corrupt or unreadable PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "corrupt or unreadable DOCX"),
        ("bad-yaml.md", b"---\naudience: [customer\n---\nx", "invalid front matter"),
        ("bad-audience.md", b"---\naudience: everyone\n---\nx", "audience must be one of"),
        ("bad-date.md", b"---\nreview_by: soon\n---\nx", "review_by must be a date"),
        ("image.png", b"\x89PNG", "unsupported file type"),
    ],
)
def test_bad_input_has_a_one_line_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError) as info:
        load_document(path, tmp_path, MAX)
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_oversize_file(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_text("word " * 1000)
    with pytest.raises(LoadError, match="above the 0 MB limit"):
        load_document(path, tmp_path, 100)

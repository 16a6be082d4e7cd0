"""Hostile input at ingest: every file is made here, by the test, and put beside a good file.

Each attack must end as one clear error (or skip) for its own file, the good file beside it must
be ingested, and the run must stay within a bound of time and memory: the ingest process may not
grow by more than a little, and neither may the worker process that reads the files.
"""

from __future__ import annotations

import io
import os
import resource
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import worker
from ingest.pipeline import IngestReport, ingest
from kb.settings import Settings
from kb.store import KnowledgeStore

GOOD = "---\naudience: customer\n---\n# Refunds\n\nA refund is paid within 14 days of the return.\n"
MAX_SECONDS = 8.0
MAX_GROWTH_MB = 150  # the ingest process, measured as its peak resident size
MAX_WORKER_MB = 400  # the reading worker's peak resident size (its unpack limit is 100 MB)


def _self_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _worker_peak_mb() -> float:
    """Peak resident size of the live worker processes (VmHWM), in MB; 0 when none runs."""
    peak = 0.0
    for reader in worker._WORKERS.values():
        if reader.process is None or reader.process.poll() is not None:
            continue
        status = Path(f"/proc/{reader.process.pid}/status").read_text()
        line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
        peak = max(peak, int(line.split()[1]) / 1024)
    return peak


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One ingest first, so the embedding model and the libraries are loaded before anything is measured."""
    folder = tmp_path_factory.mktemp("warm")
    (folder / "refunds.md").write_text(GOOD, encoding="utf-8")
    assert ingest([folder], KnowledgeStore(Settings(data_dir=folder / "data"))).ok


@pytest.fixture(autouse=True)
def _fresh_worker() -> Iterator[None]:
    """Each test starts its own worker, so the worker's high-water mark is this test's."""
    worker.stop_workers()
    yield
    worker.stop_workers()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text(GOOD, encoding="utf-8")
    return docs


def bounded_ingest(paths: list[Path], store: KnowledgeStore, **kwargs: object) -> IngestReport:
    """``ingest``, asserting it stays within the time and memory bounds."""
    before = _self_peak_mb()
    started = time.monotonic()
    report = ingest(paths, store, **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed < MAX_SECONDS, f"ingest took {elapsed:.1f}s"
    assert _self_peak_mb() - before < MAX_GROWTH_MB, "the ingest process grew too much"
    assert _worker_peak_mb() < MAX_WORKER_MB, f"the worker grew to {_worker_peak_mb():.0f} MB"
    return report


def only_error(report: IngestReport, name: str) -> str:
    """The run's single error, which must be about the file ``name``; the good file went in."""
    assert [e.path.name for e in report.errors] == [name], [str(e) for e in report.errors]
    assert "refunds" in report.added, report.summary()
    message = str(report.errors[0])
    assert "\n" not in message
    return message


# -- YAML ---------------------------------------------------------------------------------------

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{new}: &{new} [{', '.join(['*' + old] * 9)}]\n" for old, new in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_billion_laughs_in_front_matter_is_refused(store: KnowledgeStore, folder: Path) -> None:
    assert len(LAUGHS) < 500  # expands to 9**9 strings under a plain safe_load
    (folder / "laughs.md").write_text(f"---\n{LAUGHS}---\n# Laughs\n\nText.\n", encoding="utf-8")
    message = only_error(bounded_ingest([folder], store), "laughs.md")
    assert "front matter" in message and "aliases" in message


def test_billion_laughs_in_a_sidecar_is_refused(store: KnowledgeStore, folder: Path) -> None:
    (folder / "fees.md").write_text("# Fees\n\nA reminder costs 2 EUR.\n", encoding="utf-8")
    (folder / "fees.md.meta.yaml").write_text(LAUGHS, encoding="utf-8")
    message = only_error(bounded_ingest([folder], store), "fees.md")
    assert "sidecar fees.md.meta.yaml" in message and "aliases" in message


def test_plain_metadata_with_anchors_but_no_aliases_still_loads(store: KnowledgeStore, folder: Path) -> None:
    (folder / "fees.md").write_text("---\naudience: &who agent\ntitle: Fees\n---\n# Fees\n\nText.\n", "utf-8")
    report = bounded_ingest([folder], store)
    assert report.ok and sorted(report.added) == ["fees", "refunds"]


# -- DOCX ---------------------------------------------------------------------------------------


def _good_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Identity checks", level=1)
    document.add_paragraph("We accept a passport or a national ID card.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _docx_with(part: str, write: object) -> bytes:
    """A real DOCX whose ``part`` is replaced by what ``write(stream)`` writes (streamed, never held)."""
    source = zipfile.ZipFile(io.BytesIO(_good_docx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as package:
        for item in source.infolist():
            if item.filename != part:
                package.writestr(item, source.read(item))
        with package.open(part, "w") as stream:
            write(stream)  # type: ignore[operator]
    return out.getvalue()


W_OPEN = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
)
W_CLOSE = b"</w:body></w:document>"


def test_docx_zip_bomb_is_refused_before_parsing(store: KnowledgeStore, folder: Path) -> None:
    block = b"<w:p><w:r><w:t>lol</w:t></w:r></w:p>" * 30_000  # ~1 MB

    def bomb(stream: io.BufferedIOBase) -> None:  # well-formed: a parser would build all of it
        stream.write(W_OPEN)
        for _ in range(150):  # 150 MB of XML: above the 100 MB default
            stream.write(block)
        stream.write(W_CLOSE)

    data = _docx_with("word/document.xml", bomb)
    assert len(data) < 2_000_000
    (folder / "bomb.docx").write_bytes(data)
    message = only_error(bounded_ingest([folder], store), "bomb.docx")
    assert "KBASSIST_MAX_UNPACKED_MB" in message


def test_docx_part_compressed_beyond_the_ratio_is_refused(store: KnowledgeStore, folder: Path) -> None:
    data = _docx_with("word/document.xml", lambda s: [s.write(W_OPEN), *(s.write(b" " * 1_000_000) for _ in range(20)), s.write(W_CLOSE)])
    (folder / "dense.docx").write_bytes(data)  # 20 MB: within the size limit, not the ratio
    message = only_error(bounded_ingest([folder], store), "dense.docx")
    assert "KBASSIST_MAX_COMPRESSION_RATIO" in message and "word/document.xml" in message


def test_the_unpack_limit_is_a_setting(tmp_path: Path, folder: Path) -> None:
    store = KnowledgeStore(Settings(data_dir=tmp_path / "data", max_unpacked_mb=0.01))
    (folder / "kyc.docx").write_bytes(_good_docx())  # ~37 KB unpacked
    message = only_error(bounded_ingest([folder], store), "kyc.docx")
    assert "limit of 0.01 MB" in message


def test_truncated_docx_is_one_error(store: KnowledgeStore, folder: Path) -> None:
    data = _good_docx()
    (folder / "cut.docx").write_bytes(data[: len(data) // 2])
    message = only_error(bounded_ingest([folder], store), "cut.docx")
    assert "corrupt or unreadable DOCX" in message


def test_docx_whose_part_lies_about_its_size_is_stopped(store: KnowledgeStore, folder: Path) -> None:
    """A central directory that understates a part: inflation stops at the declared size (bad CRC)."""
    data = bytearray(_good_docx())
    package = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = package.getinfo("word/document.xml")
    central = data.rfind(b"PK\x01\x02" + data[info.header_offset + 4 : info.header_offset + 6])
    # Patch the uncompressed size (offset 24 in a central directory record) of every record of this part.
    name = info.filename.encode()
    at = data.find(b"PK\x01\x02", central if central >= 0 else 0)
    while at != -1:
        if data[at + 46 : at + 46 + len(name)] == name:
            data[at + 24 : at + 28] = (100).to_bytes(4, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    (folder / "liar.docx").write_bytes(bytes(data))
    message = only_error(bounded_ingest([folder], store), "liar.docx")
    assert "corrupt or unreadable DOCX" in message


ENTITY_BOMB = (
    b'<?xml version="1.0"?>\n<!-- padding to push the DTD away from the start -->' + b" " * 10_000 + b"\n"
    b'<!DOCTYPE w:document [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>\n'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    b"<w:body><w:p><w:r><w:t>&d;&d;&d;&d;</w:t></w:r></w:p></w:body></w:document>"
)


def test_docx_with_an_xml_entity_bomb_is_refused(store: KnowledgeStore, folder: Path) -> None:
    (folder / "entities.docx").write_bytes(_docx_with("word/document.xml", lambda s: s.write(ENTITY_BOMB)))
    message = only_error(bounded_ingest([folder], store), "entities.docx")
    assert "declares a DTD or entities" in message


def test_docx_xml_syntax_error_is_one_error(store: KnowledgeStore, folder: Path) -> None:
    (folder / "broken.docx").write_bytes(_docx_with("word/document.xml", lambda s: s.write(b"<w:document><w:body>")))
    message = only_error(bounded_ingest([folder], store), "broken.docx")
    assert "corrupt or unreadable DOCX" in message


# -- PDF ----------------------------------------------------------------------------------------


def _pdf_with_content(stream: bytes) -> bytes:
    """A one-page PDF, written byte by byte, whose page content is ``stream`` (Flate-compressed)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_decompression_bomb_is_one_error(store: KnowledgeStore, folder: Path) -> None:
    packer = zlib.compressobj(9)
    block = b" " * 1_000_000
    stream = b"".join(packer.compress(block) for _ in range(150)) + packer.flush()  # 150 MB of spaces
    assert len(stream) < 500_000
    (folder / "bomb.pdf").write_bytes(_pdf_with_content(stream))
    message = only_error(bounded_ingest([folder], store), "bomb.pdf")
    assert "KBASSIST_MAX_UNPACKED_MB" in message


def test_a_raw_pdf_within_limits_is_read(store: KnowledgeStore, folder: Path) -> None:
    """The same writer with a small content stream: the bomb above fails for its size, nothing else."""
    content = b"BT /F1 12 Tf 72 720 Td (Chargebacks are raised within 120 days.) Tj ET"
    (folder / "small.pdf").write_bytes(_pdf_with_content(zlib.compress(content)))
    report = bounded_ingest([folder], store)
    assert "refunds" in report.added and not any("Unpack" in str(e) for e in report.errors)


# -- time ---------------------------------------------------------------------------------------


def test_a_file_that_reads_too_long_is_stopped_and_the_run_goes_on(tmp_path: Path, folder: Path) -> None:
    store = KnowledgeStore(Settings(data_dir=tmp_path / "data", parse_timeout_s=1.0))
    # 12 MB of tiny elements: many seconds for the HTML parser, far beyond the 1 s budget.
    (folder / "slow.html").write_text("<html><body>" + "<b>x</b>" * 1_500_000 + "</body></html>", encoding="utf-8")
    (folder / "zz-after.md").write_text(GOOD.replace("Refunds", "Returns"), encoding="utf-8")
    report = bounded_ingest([folder], store)
    message = only_error(report, "slow.html")
    assert "longer than 1s" in message and "KBASSIST_PARSE_TIMEOUT_S" in message
    assert "zz-after" in report.added  # read by a fresh worker after the stopped one


def test_an_unexpected_exception_is_a_per_file_error(
    store: KnowledgeStore, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import loaders

    def explode(data: bytes, limits: object) -> tuple[str, dict[str, str]]:
        raise ZeroDivisionError("a library bug")

    monkeypatch.setitem(loaders.READERS, ".html", ("html", explode))
    monkeypatch.setattr(store.settings, "parse_timeout_s", 0.0)  # in this process, where the patch is
    (folder / "page.html").write_text("<p>Hello</p>", encoding="utf-8")
    message = only_error(bounded_ingest([folder], store), "page.html")
    assert "unexpected ZeroDivisionError: a library bug" in message


# -- symlinks -----------------------------------------------------------------------------------


def test_a_symlink_out_of_the_folder_is_skipped_and_listed(store: KnowledgeStore, folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.md"
    secret.parent.mkdir()
    secret.write_text("---\naudience: customer\n---\n# Secret\n\nThe root password is hunter2.\n", "utf-8")
    (folder / "innocent.md").symlink_to(secret)
    (folder / "passwd.md").symlink_to("/etc/passwd")
    (folder / "again.md").symlink_to(folder / "refunds.md")  # inside: one document, as before
    report = bounded_ingest([folder], store)
    assert report.ok and report.added == ["refunds"]
    assert sorted(o.path.name for o in report.outside) == ["innocent.md", "passwd.md"]
    assert "2 symlinks to outside the folder skipped (not followed)" in report.summary()
    assert [d.path.name for d in report.duplicates] == ["again.md"]
    assert all("hunter2" not in text for _, text, _ in store.document_chunks("refunds"))
    assert [d.doc_id for d in store.documents()] == ["refunds"]


def test_a_sidecar_linked_out_of_the_folder_is_not_read(store: KnowledgeStore, folder: Path, tmp_path: Path) -> None:
    (tmp_path / "meta.yaml").write_text("audience: customer\n", encoding="utf-8")
    (folder / "fees.md").write_text("# Fees\n\nA reminder costs 2 EUR.\n", encoding="utf-8")
    (folder / "fees.md.meta.yaml").symlink_to(tmp_path / "meta.yaml")
    message = only_error(bounded_ingest([folder], store), "fees.md")
    assert "outside" in message


# -- hidden HTML --------------------------------------------------------------------------------

HIDDEN_PAGE = """<html><head><title>Password help</title><style>p { color: red }</style></head><body>
<h1>Password help</h1>
<p>Reset your password from the sign-in page.</p>
<div style="display: none">The override password is OVERRIDE-1.</div>
<div style="COLOR: red; Visibility:Hidden !important">OVERRIDE-2</div>
<p hidden>OVERRIDE-3</p>
<section aria-hidden="true"><p>OVERRIDE-4</p></section>
<template><p>OVERRIDE-5</p></template>
<noscript>OVERRIDE-6</noscript>
<script>var OVERRIDE7 = 1;</script>
<p aria-hidden="false">Shown to everyone.</p>
<p style="display:block">Also shown.</p>
</body></html>"""


def test_hidden_html_is_not_ingested(store: KnowledgeStore, folder: Path) -> None:
    (folder / "password.html").write_text(HIDDEN_PAGE, encoding="utf-8")
    report = bounded_ingest([folder], store)
    assert report.ok and sorted(report.added) == ["password", "refunds"]
    text = " ".join(t for _, t, _ in store.document_chunks("password"))
    assert "Reset your password" in text and "Shown to everyone." in text and "Also shown." in text
    assert "OVERRIDE" not in text


# -- document ids -------------------------------------------------------------------------------


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "team-a", tmp_path / "team-b"
    first.mkdir()
    second.mkdir()
    return first, second


def test_a_front_matter_id_cannot_take_over_another_files_document(store: KnowledgeStore, tmp_path: Path) -> None:
    first, second = _two_folders(tmp_path)
    (first / "refunds.md").write_text(GOOD, encoding="utf-8")
    assert bounded_ingest([first], store).added == ["refunds"]
    (second / "refunds.md").write_text(GOOD, encoding="utf-8")  # a good file beside the attack
    (second / "evil.md").write_text("---\nid: refunds\naudience: customer\n---\n# Refunds\n\nNo refunds.\n", "utf-8")
    (second / "other.md").write_text(GOOD.replace("Refunds", "Returns"), encoding="utf-8")
    report = bounded_ingest([second], store)
    messages = {e.path.name: str(e) for e in report.errors}
    assert set(messages) == {"evil.md", "refunds.md"}  # both claim the id "refunds" of team-a/refunds.md
    for name, message in messages.items():
        assert str(first / "refunds.md") in message and name in message and "--replace" in message
    assert report.added == ["other"] and report.updated == []
    assert store.document("refunds").path == str(first / "refunds.md")
    assert "No refunds" not in " ".join(t for _, t, _ in store.document_chunks("refunds"))


def test_the_same_file_name_in_another_folder_cannot_take_over(store: KnowledgeStore, tmp_path: Path) -> None:
    first, second = _two_folders(tmp_path)
    (first / "refunds.md").write_text(GOOD, encoding="utf-8")
    bounded_ingest([first], store)
    (second / "refunds.md").write_text(GOOD.replace("14 days", "1 year"), encoding="utf-8")
    (second / "returns.md").write_text(GOOD.replace("Refunds", "Returns"), encoding="utf-8")
    report = bounded_ingest([second], store)
    [error] = report.errors
    assert error.path == second / "refunds.md" and str(first / "refunds.md") in str(error)
    assert report.added == ["returns"] and report.updated == []
    assert store.document("refunds").path == str(first / "refunds.md")


def test_replace_lets_a_file_take_an_id_over_and_says_so(store: KnowledgeStore, tmp_path: Path) -> None:
    first, second = _two_folders(tmp_path)
    (first / "refunds.md").write_text(GOOD, encoding="utf-8")
    bounded_ingest([first], store)
    (second / "refunds.md").write_text(GOOD.replace("14 days", "10 days"), encoding="utf-8")
    report = bounded_ingest([second / "refunds.md"], store, replace=True)
    assert report.ok and report.updated == ["refunds"]
    assert [(r.doc_id, r.old_path) for r in report.replaced] == [("refunds", str(first / "refunds.md"))]
    assert "replaced by another file, as asked" in report.summary()
    assert store.document("refunds").path == str(second / "refunds.md")


def test_the_same_file_again_updates_as_before(store: KnowledgeStore, folder: Path) -> None:
    assert bounded_ingest([folder], store).added == ["refunds"]
    (folder / "refunds.md").write_text(GOOD.replace("14 days", "10 days"), encoding="utf-8")
    assert bounded_ingest([folder], store).updated == ["refunds"]
    (folder / "refunds.md").write_text(GOOD.replace("14 days", "12 days"), encoding="utf-8")
    report = bounded_ingest([folder / "refunds.md"], store)  # the file by itself: same file, same id
    assert report.ok and report.updated == ["refunds"]


def test_a_document_whose_file_is_gone_may_be_claimed(store: KnowledgeStore, tmp_path: Path) -> None:
    """A file moved to another folder with its ``id:``: the old file is gone, so no one is taken over."""
    first, second = _two_folders(tmp_path)
    (first / "a.md").write_text("---\nid: refunds\naudience: customer\n---\n# Refunds\n\nText.\n", "utf-8")
    bounded_ingest([first], store)
    os.replace(first / "a.md", second / "a.md")
    report = bounded_ingest([second], store)
    assert report.ok and report.updated == ["refunds"]


def test_the_command_line_refuses_a_takeover_unless_told_to_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from kbassist_cli import app

    monkeypatch.setenv("KBASSIST_DATA_DIR", str(tmp_path / "data"))
    first, second = _two_folders(tmp_path)
    (first / "refunds.md").write_text(GOOD, encoding="utf-8")
    (second / "refunds.md").write_text(GOOD.replace("14 days", "1 year"), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(first)]).exit_code == 0
    refused = runner.invoke(app, ["ingest", str(second)])
    assert refused.exit_code == 1
    assert str(first / "refunds.md") in refused.output and str(second / "refunds.md") in refused.output
    replaced = runner.invoke(app, ["ingest", "--replace", str(second)])
    assert replaced.exit_code == 0, replaced.output
    assert "1 document replaced by another file, as asked: refunds" in replaced.output


# -- the worker itself ------------------------------------------------------------------------


def test_the_worker_reads_in_a_process_holding_more_than_1024_files(store: KnowledgeStore, folder: Path) -> None:
    """An app or a long test run holds many descriptors; the worker's pipe may be numbered past
    what ``select`` can watch, and every file would then fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit of open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        report = ingest([folder], store)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert report.ok and report.added == ["refunds"], report.summary()

"""Property-based checks of the loaders on real files, end to end through cleaning and chunking.

Files are written to disk as an editor, an export or a careless copy would leave them: arbitrary
Unicode, 100k-character lines, headings dozens of levels deep, byte order marks, Windows line
ends, bytes that are part UTF-8 and part Latin-1, zero-width and right-to-left characters. For
each: loading either succeeds or raises the loaders' own :class:`LoadError` with a one-line
reason; nothing the file says is lost between the cleaned text and the chunks, and no chunk
exceeds the token bound.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.chunker import ChunkSpec, chunk_text
from ingest.clean import clean_text
from ingest.errors import LoadError
from ingest.loaders import LoadedDocument, load_document
from kb.models import Chunk
from kb.tokens import count_tokens
from tests.test_chunker_properties import line as chunker_line

SPEC = ChunkSpec(max_tokens=96, overlap_tokens=16)
MAX_BYTES = 50_000_000
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

SPECIAL = (
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2069\u061c"  # direction marks and overrides
    "مرحبا بالعالم שלום עולם"  # Arabic, Hebrew
    "åäöÅÄÖüÜßé€–’“”"  # what a Latin-1 / cp1252 mix-up breaks
)
unicode_text = st.text(
    st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), st.sampled_from(SPECIAL)),
    max_size=200,
)
huge_line = st.builds(
    lambda seed, n: (seed * (n // len(seed) + 1))[:n],
    st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=12),
    st.integers(50_000, 100_000),
)
deep_heading = st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 60), unicode_text)
heading_ladder = st.integers(1, 40).map(lambda n: "\n".join("#" * (i % 6 + 1) + f" Level {i}" for i in range(n)))
body_line = st.one_of(
    chunker_line.filter(lambda s: "\x00" not in s),
    unicode_text,
    deep_heading,
    heading_ladder,
    st.sampled_from(SPECIAL).map(lambda c: f"before{c}after {c} alone"),
)
body = st.tuples(st.lists(body_line, max_size=25), st.lists(huge_line, max_size=1)).map(
    lambda parts: "\n".join(parts[0] + parts[1])
)

FRONT_MATTER = "---\ntitle: Generated\naudience: customer\nmarket: SE\nreview_by: 2030-01-31\n---\n"


# -- oracles ------------------------------------------------------------------------------------


_HEADING = re.compile(r"#{1,6}\s+(.+?)\s*#*\s*$")


def _is_heading(text_line: str) -> bool:
    """A line the chunker turns into a heading (its text moves into the chunks' heading path)."""
    return not text_line.startswith((" ", "\t")) and _HEADING.match(text_line.strip()) is not None


def _expected_words(text: str) -> list[str]:
    """The words chunk bodies must hold: all but headings, or the headings of a headings-only text."""
    lines = text.split("\n")
    words = [w for ln in lines if not _is_heading(ln) for w in ln.split()]
    if words:
        return words
    return [w for ln in lines if (m := _HEADING.match(ln.strip())) for w in m.group(1).split()]


def _body_of(chunk: Chunk) -> str:
    """A chunk's text without the heading-path prefix the chunker puts first."""
    prefix = chunk.metadata["section"] + "\n\n" if chunk.metadata["section"] else ""
    assert chunk.text.startswith(prefix)
    return chunk.text[len(prefix) :]


def _assert_in_order(words: list[str], stream: str, what: str) -> None:
    """Every word occurs in ``stream`` after the previous one, whitespace ignored.

    Whitespace is ignored because chunks re-join lines and cut words that alone exceed the
    bound; repeats (chunk overlap, a repeated table header) are allowed, losses and
    reordering are not.
    """
    flat = "".join(stream.split())
    pos = 0
    for n, word in enumerate(words):
        found = flat.find(word, pos)
        assert found >= 0, f"{what}: word {n} {word[:40]!r} lost or out of order"
        pos = found + len(word)


def _check_chunks(text: str, title: str) -> list[Chunk]:
    chunks = chunk_text("doc", text, title, SPEC)
    assert chunks, "a document with text has chunks"
    over = [count_tokens(c.text) for c in chunks if count_tokens(c.text) > SPEC.max_tokens]
    assert not over, f"chunks above the bound of {SPEC.max_tokens} tokens: {over}"
    assert len({c.id for c in chunks}) == len(chunks)
    _assert_in_order(_expected_words(text), "\n".join(_body_of(c) for c in chunks), "cleaned text -> chunks")
    return chunks


def _load(path: Path, data: bytes) -> LoadedDocument | LoadError:
    path.write_bytes(data)
    try:
        return load_document(path, path.parent, MAX_BYTES)
    except LoadError as exc:
        message = str(exc)
        assert message and "\n" not in message, "a load error is one readable line"
        return exc


# -- Markdown and plain text --------------------------------------------------------------------


def _encode(text: str, newline: str, bom: str) -> bytes:
    text = text.replace("\n", newline)
    if bom == "utf-16":
        return text.encode("utf-16")  # writes its own BOM
    return {"none": b"", "utf-8": b"\xef\xbb\xbf", "utf-8 twice": b"\xef\xbb\xbf" * 2}[bom] + text.encode("utf-8")


@PROPERTY
@given(
    text=body,
    suffix=st.sampled_from([".md", ".txt"]),
    front_matter=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.sampled_from(["none", "utf-8", "utf-8 twice", "utf-16"]),
)
@example(text="# Refunds\n\nYou can return an item.", suffix=".md", front_matter=True, newline="\r\n", bom="none")
@example(text="# Refunds\n\nYou can return an item.", suffix=".md", front_matter=True, newline="\n", bom="utf-8 twice")
@example(
    text="# A\n\nfirst part\n\n# B\n\nmiddle\n\n# A\n\nlast part", suffix=".md", front_matter=True, newline="\n", bom="none"
)
@example(text="x" * 100_000, suffix=".txt", front_matter=False, newline="\n", bom="none")
@example(text="# 0", suffix=".md", front_matter=False, newline="\n", bom="none")
@example(text="0\r\n1", suffix=".md", front_matter=True, newline="\r\n", bom="none")
def test_markdown_and_text_files(
    tmp_path_factory: pytest.TempPathFactory, text: str, suffix: str, front_matter: bool, newline: str, bom: str
) -> None:
    if not front_matter and text.lstrip("\ufeff").startswith("---"):
        text = "Intro\n" + text  # a body that opens with '---' is front matter by definition
    path = tmp_path_factory.mktemp("md") / f"doc{suffix}"
    result = _load(path, _encode((FRONT_MATTER if front_matter else "") + text, newline, bom))
    expected = clean_text(text.replace("\n", newline))  # a stray "\r" before a "\r\n" is a line end of its own
    if isinstance(result, LoadError):
        assert not expected, f"only a file without text may fail to load: {result}"
        return
    if front_matter:
        assert result.metadata["audience"] == "customer", "front matter is found whatever the BOM and line ends"
        assert result.metadata["title"] == "Generated"
    assert result.text == expected, "the loader keeps the body exactly, up to cleaning"
    _check_chunks(result.text, result.metadata["title"])


# -- HTML -----------------------------------------------------------------------------------------

html_text = st.text(
    st.one_of(st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from(SPECIAL)), min_size=1, max_size=120
)


def _visible(text: str) -> bool:
    return bool(clean_text(text).split())


@st.composite
def html_blocks(draw: st.DrawFn, depth: int = 0) -> tuple[str, list[str]]:
    """One block of HTML and the texts a reader sees in it, in reading order."""
    kind = draw(st.sampled_from(["p", "h", "list", "table", "nest", "div"] if depth < 2 else ["p", "h", "div"]))
    if kind == "p":
        text = draw(html_text)
        inline = draw(st.sampled_from(["{}", "<b>{}</b>", "<span>{}</span>", "<em>{}</em>"]))
        return "<p>" + inline.format(html.escape(text)) + "</p>", [text]
    if kind == "h":
        text = draw(html_text)
        level = draw(st.integers(1, 6))
        return f"<h{level}>{html.escape(text)}</h{level}>", [text]
    if kind == "div":
        texts = draw(st.lists(html_text, min_size=1, max_size=3))
        return "<div>" + "<br>".join(html.escape(t) for t in texts) + "</div>", texts
    if kind == "list":
        tag = draw(st.sampled_from(["ol", "ul"]))
        start = draw(st.sampled_from(["", ' start="3"', ' start="x"', ' start=""', ' start="1e3"']))
        items = draw(st.lists(html_text, min_size=1, max_size=5))
        nested = draw(st.lists(html_text, max_size=3))
        sub = "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in nested) + "</ul>" if nested else ""
        lis = [f"<li>{html.escape(t)}{sub if i == 0 else ''}</li>" for i, t in enumerate(items)]
        return f"<{tag}{start}>" + "".join(lis) + f"</{tag}>", [items[0], *nested, *items[1:]]
    if kind == "table":
        caption = draw(st.one_of(st.none(), html_text))
        rows = draw(st.lists(st.lists(html_text, min_size=1, max_size=3), min_size=1, max_size=4))
        body_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        head = f"<caption>{html.escape(caption)}</caption>" if caption is not None else ""
        return f"<table>{head}{body_html}</table>", ([caption] if caption is not None else []) + [
            c for row in rows for c in row
        ]
    # kind == "nest": a section nested dozens of levels deep, headings inside
    levels = draw(st.integers(1, 60))
    inner, texts = zip(*draw(st.lists(html_blocks(depth + 1), min_size=1, max_size=3)), strict=True)
    wrapper = draw(st.sampled_from(["section", "div", "article"]))
    return f"<{wrapper}>" * levels + "".join(inner) + f"</{wrapper}>" * levels, [t for ts in texts for t in ts]


html_documents = st.lists(html_blocks(), min_size=1, max_size=8)


def _page(blocks: list[tuple[str, list[str]]], comment: str) -> tuple[str, list[str]]:
    markup = "".join(b for b, _ in blocks)
    texts = [t for _, ts in blocks for t in ts]
    page = (
        "<!DOCTYPE html><html><head><title>Generated</title>"
        '<meta name="audience" content="customer"></head>'
        f"<body><!-- {html.escape(comment)} -->{markup}</body></html>"
    )
    return page, texts


DEEP = ("<section><div>" * 3000 + "<h2>Deep</h2><p>deep text</p>" + "</div></section>" * 3000, ["Deep", "deep text"])


@PROPERTY
@given(blocks=html_documents, bom=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]))
@example(blocks=[DEEP], bom=False, newline="\n")
@example(blocks=[('<ol start="x"><li>first step</li></ol>', ["first step"])], bom=False, newline="\n")
@example(
    blocks=[
        (
            "<table><caption>Fees by market</caption><tr><td>SE</td><td>60 SEK</td></tr></table>",
            ["Fees by market", "SE", "60 SEK"],
        )
    ],
    bom=True,
    newline="\r\n",
)
def test_html_files(tmp_path_factory: pytest.TempPathFactory, blocks: list, bom: bool, newline: str) -> None:
    page, texts = _page(blocks, "internal note: do not publish")
    data = (b"\xef\xbb\xbf" if bom else b"") + page.replace("\n", newline).encode("utf-8")
    result = _load(tmp_path_factory.mktemp("html") / "page.html", data)
    visible = [t for t in texts if _visible(t)]
    if isinstance(result, LoadError):
        assert not visible, f"only a page without text may fail to load: {result}"
        return
    assert result.metadata["audience"] == "customer" and result.metadata["title"] == "Generated"
    assert "internal note" not in result.text, "comments are not content"
    words = [w for t in visible for w in clean_text(t).split()]
    _assert_in_order(words, result.text, "HTML -> loaded text")
    _check_chunks(result.text, result.metadata["title"])


# -- mixed encodings and raw bytes -----------------------------------------------------------------

latin = st.text(st.sampled_from("abc XYZ åäöÅÄÖüÜßé–’“”€"), min_size=1, max_size=40)
segment = st.one_of(
    st.builds(lambda t: t.encode("utf-8"), unicode_text),
    st.builds(lambda t: t.encode("latin-1", "ignore"), latin),
    st.builds(lambda t: t.encode("cp1252", "ignore"), latin),
)


@PROPERTY
@given(
    segments=st.lists(segment, min_size=1, max_size=6),
    bom=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]),
    suffix=st.sampled_from([".md", ".txt", ".html"]),
)
@example(segments=["Rückgabe ".encode(), "Rückgabe".encode("latin-1")], bom=b"", suffix=".md")
@example(segments=["Avgift 60 kr – ".encode(), "“påminnelse”".encode("cp1252")], bom=b"\xef\xbb\xbf", suffix=".txt")
def test_mixed_encodings_load_or_say_why(
    tmp_path_factory: pytest.TempPathFactory, segments: list[bytes], bom: bytes, suffix: str
) -> None:
    raw = b"".join(segments)
    data = bom + (b"<p>" + raw + b"</p>" if suffix == ".html" else raw)
    result = _load(tmp_path_factory.mktemp("enc") / f"mixed{suffix}", data)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    if bom in (b"", b"\xef\xbb\xbf"):
        if decoded is None:
            # Not UTF-8: read in a detected encoding (and named as such), or refused saying so.
            if isinstance(result, LoadError):
                assert "not valid UTF-8" in str(result)
            else:
                assert result.encoding not in ("", "utf-8") and result.text
            return
        if b"\x00" not in data[:8192] and clean_text(decoded).split():
            assert not isinstance(result, LoadError), result
            if suffix != ".html":
                assert result.text == clean_text(decoded.lstrip("\ufeff"))
    if not isinstance(result, LoadError):
        _check_chunks(result.text, result.metadata["title"])


@PROPERTY
@given(data=st.binary(min_size=1, max_size=2000), suffix=st.sampled_from([".md", ".txt", ".html"]))
def test_arbitrary_bytes_never_crash(tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str) -> None:
    result = _load(tmp_path_factory.mktemp("bytes") / f"any{suffix}", data)
    if not isinstance(result, LoadError):
        _check_chunks(result.text, result.metadata["title"])


# -- front matter ---------------------------------------------------------------------------------

yaml_value = st.one_of(
    unicode_text.map(lambda s: s.replace("\n", " ")),
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(1, 9999), st.integers(0, 99), st.integers(0, 99)),
    st.integers().map(str),
    st.just("9" * 5000),
    st.just("[" * 200 + "]" * 200),
    st.just("&a [*a]"),
)


@PROPERTY
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(["title", "audience", "market", "review_by", "version", "id", "owner"]), yaml_value),
        max_size=5,
    )
)
@example(pairs=[("review_by", "2027-02-30")])
@example(pairs=[("title", "2027-13-45")])
@example(pairs=[("version", "9" * 5000)])
@example(pairs=[("id", "!!!")])
def test_any_front_matter_loads_or_is_rejected_cleanly(
    tmp_path_factory: pytest.TempPathFactory, pairs: list[tuple[str, str]]
) -> None:
    front = "".join(f"{key}: {value}\n" for key, value in pairs)
    path = tmp_path_factory.mktemp("fm") / "policy.md"
    result = _load(path, f"---\n{front}---\n# Policy\n\nThe body text.\n".encode())
    if not isinstance(result, LoadError):
        assert result.doc_id, "a document always has an id"
        assert result.metadata["audience"] in ("customer", "agent", "internal")
        _check_chunks(result.text, result.metadata["title"])


# -- regressions the properties found, pinned as plain tests ---------------------------------------


def test_repeated_heading_keeps_reading_order() -> None:
    chunks = chunk_text("d", "# A\n\nfirst part\n\n# B\n\nmiddle\n\n# A\n\nlast part", "T", SPEC)
    assert [_body_of(c) for c in chunks] == ["first part", "middle", "last part"]


def test_long_unbroken_run_is_cut_within_the_bound() -> None:
    run = "iVBORw0KGgoAAAANSUhEUgAA" * 12_500  # 300k characters, as a base64 image in Markdown
    chunks = chunk_text("d", f"# Logo\n\n![logo](data:image/png;base64,{run})", "T", ChunkSpec(384, 48))
    assert all(count_tokens(c.text) <= 384 for c in chunks)
    assert "".join(_body_of(c) for c in chunks).count("iVBORw0KGgo") == 12_500

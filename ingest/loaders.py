"""Readers that turn one file into structured text plus metadata.

Every reader returns the same light Markdown dialect, so one chunker serves all formats:
``#``-prefixed heading lines, ``1.`` / ``-`` list items, ``| a | b |`` table rows and
blank-line separated paragraphs. Metadata comes from YAML front matter (Markdown, text), HTML
``<meta>`` tags, or a sidecar ``<file>.meta.yaml`` next to any file; the sidecar wins.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ingest.clean import clean_text
from ingest.errors import LoadError
from kb.models import AUDIENCES, DOCUMENT_METADATA_KEYS

SIDECAR_SUFFIX = ".meta.yaml"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class UnpackLimits:
    """How far a reader may unpack a compressed file (``KBASSIST_MAX_UNPACKED_MB``...)."""

    max_unpacked_bytes: int = 100_000_000
    max_compression_ratio: float = 100.0

    @classmethod
    def from_settings(cls, settings: Any) -> UnpackLimits:
        return cls(int(settings.max_unpacked_mb * 1_000_000), float(settings.max_compression_ratio))


DEFAULT_LIMITS = UnpackLimits()


@dataclass
class LoadedDocument:
    """A document read from disk, before chunking."""

    doc_id: str
    path: Path
    format: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    encoding: str = ""  # how a text format was decoded ("utf-8", "cp1252"...); empty for PDF and DOCX
    audience_defaulted: bool = False  # no audience given anywhere: made internal


# Letters NFKD does not take apart into a base letter and marks: written out, as in a URL.
_TRANSLITERATE = str.maketrans(
    {"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ł": "l", "ı": "i", "ŧ": "t"}
)


def slugify(value: str) -> str:
    """Lower-case ASCII words joined by ``-``: "Übersicht Zahlungsmethoden" → "ubersicht-zahlungsmethoden".

    Accented letters lose their accents (ü → u, å → a) and a few letters are written out
    (ß → ss, æ → ae, ø → o), so names that differ only in such letters stay apart ("Ärger" is
    "arger", not "rger"). ASCII input gives exactly what it always gave, so existing ids of
    ASCII-named files never change.
    """
    folded = unicodedata.normalize("NFKD", value.lower().translate(_TRANSLITERATE))
    ascii_only = "".join(ch for ch in folded if ch.isascii())
    return _SLUG.sub("-", ascii_only).strip("-")


def legacy_slugify(value: str) -> str:
    """The slug of releases before transliteration, which dropped every non-ASCII letter.

    Kept to recognise ids made that way in an existing knowledge base (see ``legacy_doc_id_for``).
    """
    return _SLUG.sub("-", value.lower()).strip("-")


def doc_id_for(path: Path, root: Path) -> str:
    """Stable document id: the path below the source root, without suffix, slugified per part.

    A name with no letter that has an ASCII form (Cyrillic, CJK) gets a short hash of its name,
    so two such files do not share one id.
    """
    return _doc_id(path, root, slugify) or "document-" + hashlib.sha256(path.stem.encode()).hexdigest()[:8]


def legacy_doc_id_for(path: Path, root: Path) -> str:
    """The id :func:`doc_id_for` gave before transliteration (dropped letters, "document" when empty)."""
    return _doc_id(path, root, legacy_slugify) or "document"


def _doc_id(path: Path, root: Path, slug: Callable[[str], str]) -> str:
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    parts = [slug(p) for p in rel.with_suffix("").parts]
    return "/".join(p for p in parts if p) or slug(path.stem)


# -- decoding ---------------------------------------------------------------------------------

# Encodings detection never picks for a text file: those without a byte order mark are read as
# binary above (NUL bytes), and EBCDIC code pages fit almost any byte string.
_NOT_TEXT_FILE_ENCODINGS = [
    "utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le", "utf_7",
    "cp037", "cp273", "cp424", "cp500", "cp875", "cp1006", "cp1026", "cp1140",
]  # fmt: skip
# Preferred, in this order, when detection finds them plausible or when they give the same text:
# Windows Western European, what Nordic and German files that are not UTF-8 are almost always in.
_WESTERN = ("cp1252", "iso8859_15", "latin_1")
# A valid UTF-8 sequence of two or more bytes: in a file that is not valid UTF-8 as a whole, a
# sign of a file where UTF-8 and another encoding were mixed (no single encoding reads it).
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def decode_text(data: bytes) -> tuple[str, str]:
    """The file's text, with Unix line ends and no leading byte order mark, and the encoding read.

    UTF-8 (with or without BOM) and UTF-16 with a BOM are read as such. Anything else is given
    to charset-normalizer, preferring the Windows Western European code page when it fits, and
    named (``cp1252``, ``cp1250``...) so the report can say how the file was read.

    Front matter is recognised by its ``---`` lines at the very start, so a file saved with
    Windows line ends, or with its BOM doubled by a second conversion, must not hide it: the
    metadata (audience above all) would silently fall back to defaults and the YAML become text.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text, encoding = data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise LoadError(f"invalid UTF-16 text: {exc.reason} at byte {exc.start}") from exc
    elif b"\x00" in data[:8192]:
        raise LoadError("binary content, not text (NUL bytes)")
    else:
        try:
            text, encoding = data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError as exc:
            text, encoding = _detect_encoding(data, exc)
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff"), encoding


def _detect_encoding(data: bytes, failure: UnicodeDecodeError) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    where = f"byte 0x{data[failure.start]:02x} at offset {failure.start}"
    if _UTF8_MULTIBYTE.search(data):
        raise LoadError(
            f"not valid UTF-8 ({where}) although parts of it are: the file mixes UTF-8 with another "
            "encoding; re-save it as UTF-8"
        )
    matches = from_bytes(data, cp_exclusion=_NOT_TEXT_FILE_ENCODINGS)
    chosen = next(
        (m for enc in _WESTERN for m in matches if m.encoding == enc or enc in m.could_be_from_charset), None
    ) or matches.best()
    if chosen is None:
        raise LoadError(f"not valid UTF-8 ({where}) and no other text encoding reads it; re-save the file as UTF-8")
    text = str(chosen)
    # Code pages that read these bytes as the same text are all right; name the likeliest.
    for name in _WESTERN:
        try:
            if data.decode(name) == text:
                return text, name
        except UnicodeDecodeError:
            continue
    return text, chosen.encoding


def _decode(data: bytes) -> str:
    return decode_text(data)[0]


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    return _parse_yaml(match.group(1), "front matter"), text[match.end() :]


# Metadata is a few flat keys; a document of more nodes than this is not metadata.
MAX_YAML_NODES = 10_000


class _MetadataLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases, and with a bound on the number of nodes.

    An alias (``*name``) makes one node stand for another; nine levels of ten aliases each (the
    "billion laughs", a few hundred bytes) build a value of billions of items. Front matter and
    sidecars never need them, so the first alias is an error, before anything is expanded.
    """

    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in metadata", event.start_mark
            )
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_YAML_NODES} values: not document metadata", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


def _load_yaml(source: str) -> Any:
    loader = _MetadataLoader(source)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _parse_yaml(source: str, what: str) -> dict[str, Any]:
    try:
        data = _load_yaml(source) or {}
    except yaml.YAMLError as exc:
        raise LoadError(f"invalid {what}: {str(exc).splitlines()[0]}") from exc
    except (ValueError, OverflowError, RecursionError) as exc:
        # Well-formed YAML whose value cannot be built: an impossible date (2027-02-30), an
        # integer too long to convert, absurd nesting. One bad file must not stop the run.
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoadError(f"invalid {what}: a value cannot be read ({reason})") from exc
    if not isinstance(data, dict):
        raise LoadError(f"invalid {what}: expected key: value pairs")
    return data


# -- formats ----------------------------------------------------------------------------------


def _read_markdown(data: bytes, limits: UnpackLimits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    meta, body = _split_front_matter(_decode(data))
    return body, meta


def _list_start(value: Any) -> int:
    """The number an ``<ol start=...>`` counts from; browsers ignore a value that is not a number."""
    try:
        return int(str(value).strip())
    except ValueError:
        return 1


# Inline styles that keep an element from being shown: its text is never ingested.
_HIDDEN_STYLE = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse))\b", re.I)
_NEVER_SHOWN = ["script", "style", "noscript", "template"]


def _is_hidden(tag: Any) -> bool:
    """Whether a browser hides the element (or hides it from every reader, screen readers included)."""
    attrs = tag.attrs or {}
    if "hidden" in attrs:
        return True
    if str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style) and bool(_HIDDEN_STYLE.search(str(style)))


def _read_html(data: bytes, limits: UnpackLimits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

    soup = BeautifulSoup(_decode(data), "html.parser")
    meta: dict[str, Any] = {}
    for tag in soup.find_all("meta"):
        name = str(tag.get("name") or "").lower().removeprefix("kb:").removeprefix("kbassist:")
        if name in DOCUMENT_METADATA_KEYS or name == "id":
            meta[name] = str(tag.get("content") or "")
    if soup.title and soup.title.string and "title" not in meta:
        meta["title"] = soup.title.string.strip()
    # Text a reader of the page never sees is not policy: a hidden block may hold anything
    # (an "override password", instructions to the answering model), so it is dropped first.
    for hidden in [t for t in soup.find_all(True) if _is_hidden(t)]:
        if not hidden.decomposed:
            hidden.decompose()
    for junk in soup.find_all([*_NEVER_SHOWN, "nav", "footer", "header", "aside", "form"]):
        junk.decompose()
    root = soup.body or soup
    out: list[str] = []

    def inline(node: Tag) -> str:
        text = " ".join(node.get_text(" ", strip=True).split())
        return re.sub(r" ([.,;:!?)])", r"\1", text)  # "<b>60 SEK</b>." must not read "60 SEK ."

    def walk(node: Tag) -> None:
        """Depth first with an explicit stack: generated pages nest elements thousands deep,
        beyond Python's recursion limit."""
        stack = [iter(node.children)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
                continue  # never shown by a browser; a comment may hold an editor's internal note
            if isinstance(child, NavigableString):
                text = " ".join(str(child).split())
                if text:
                    out.append(text)
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if re.fullmatch(r"h[1-6]", name):
                out.extend(["", "#" * int(name[1]) + " " + inline(child), ""])
            elif name in ("ol", "ul"):
                start = _list_start(child.get("start", 1)) if name == "ol" else 0
                out.append("")
                for n, li in enumerate(child.find_all("li", recursive=False)):
                    marker = f"{start + n}." if name == "ol" else "-"
                    nested = li.find_all(["ol", "ul"], recursive=False)
                    for sub in nested:
                        sub.extract()
                    out.append(f"{marker} {inline(li)}")
                    for sub in nested:
                        for item in sub.find_all("li", recursive=False):
                            out.append(f"   - {inline(item)}")
                out.append("")
            elif name == "table":
                out.append("")
                caption = child.find("caption", recursive=False)
                if caption is not None:
                    out.extend([inline(caption), ""])
                for tr in child.find_all("tr"):
                    cells = [inline(c) for c in tr.find_all(["th", "td"])]
                    out.append("| " + " | ".join(cells) + " |")
                out.append("")
            elif name in ("p", "blockquote", "pre", "dt", "dd", "figcaption", "caption", "address"):
                out.extend(["", inline(child), ""])
            elif name == "br":
                out.append("")
            else:
                stack.append(iter(child.children))

    walk(root)
    return "\n".join(out), meta


def _read_pdf(data: bytes, limits: UnpackLimits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PyPdfError

    most = limits.max_unpacked_bytes
    meta: dict[str, Any] = {}
    # pypdf's own bounds, set to ours: a stream that inflates past them raises LimitReachedError.
    with apply_configuration(
        maximum_declared_stream_length=most,
        array_based_stream_maximum_output_length=most,
        jbig2_maximum_output_length=most,
        lzw_maximum_output_length=most,
        run_length_maximum_output_length=most,
        zlib_maximum_output_length=most,
        brotli_maximum_output_length=most,
        image_maximum_buffer_size=most,
    ):
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise LoadError("encrypted PDF (remove the password and re-export)")
            lines: list[_PdfLine] = []
            for page in reader.pages:
                lines.extend(_pdf_page_lines(page))
            if reader.metadata and reader.metadata.title:
                meta["title"] = str(reader.metadata.title)
        except LoadError:
            raise
        except LimitReachedError as exc:
            raise LoadError(
                f"PDF unpacks beyond the limit of {most / 1e6:g} MB (KBASSIST_MAX_UNPACKED_MB): {exc}"
            ) from exc
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, zlib.error) as exc:
            raise LoadError(f"corrupt or unreadable PDF: {exc}") from exc
    return _pdf_lines_to_markdown(lines), meta


@dataclass(frozen=True)
class _PdfLine:
    size: float  # font size the line was set in
    x: float  # left edge, to tell a sub-bullet from a top-level one
    text: str


def _pdf_page_lines(page: Any) -> list[_PdfLine]:
    """Text lines of a page with their font size and left edge (for headings and nesting)."""
    fragments: list[tuple[float, float, float, str]] = []

    def visitor(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text:
            scale = abs(tm[3] * cm[3]) or 1.0
            x = tm[4] * cm[0] + cm[4]
            fragments.append((round(tm[5] * cm[3] + cm[5], 1), round(x, 1), round(size * scale, 1), text))

    page.extract_text(visitor_text=visitor)
    lines: list[_PdfLine] = []
    current_y: float | None = None
    parts: list[str] = []
    sizes: list[float] = []
    left = 0.0
    for y, x, size, text in fragments:
        for i, piece in enumerate(text.split("\n")):
            if i > 0 or (current_y is not None and abs(y - current_y) > 1.0):
                if parts:
                    lines.append(_PdfLine(max(sizes), left, "".join(parts).strip()))
                parts, sizes = [], []
            if not parts:
                left = x
            current_y = y
            if piece:
                parts.append(piece)
                sizes.append(size)
    if parts:
        lines.append(_PdfLine(max(sizes), left, "".join(parts).strip()))
    return [line for line in lines if line.text]


def _pdf_lines_to_markdown(lines: list[_PdfLine]) -> str:
    """Lines set larger than the body text become headings, ranked by size (largest = #).

    A bullet set further right than the numbered step above it is that step's sub-item.
    """
    if not lines:
        return ""
    weight = Counter[float]()
    for line in lines:
        weight[line.size] += len(line.text)
    body = weight.most_common(1)[0][0]
    heading_sizes = sorted({ln.size for ln in lines if ln.size > body * 1.12 and len(ln.text) < 120}, reverse=True)[:4]
    level = {s: i + 1 for i, s in enumerate(heading_sizes)}
    out: list[str] = []
    step_x: float | None = None
    for line in lines:
        text = line.text
        if line.size in level and len(text) < 120:
            out.extend(["", "#" * level[line.size] + " " + text, ""])
            step_x = None
        elif re.match(r"^\d+[.)]\s", text):
            out.append(text)
            step_x = line.x
        elif re.match(r"^[-•*]\s", text):
            nested = step_x is not None and line.x > step_x + 2
            out.append(("   - " if nested else "- ") + text[2:].strip())
        elif text.startswith("|"):
            out.append(text)
            step_x = None
        elif out and out[-1] and not out[-1].startswith(("#", "|")) and not re.search(r"[.:!?]$", out[-1]):
            out[-1] = out[-1] + " " + text  # a wrapped line of the same paragraph or step
        else:
            out.extend(["", text])
            step_x = None
    return "\n".join(out)


_DTD = re.compile(rb"<!DOCTYPE|<!ENTITY", re.I)
_RATIO_CHECKED_ABOVE = 1_000_000  # small parts may compress very well (empty styles, repeated tags)


def check_docx_package(data: bytes, limits: UnpackLimits) -> None:
    """Refuse a DOCX that would unpack beyond the limits, before any XML of it is parsed.

    The sizes the zip declares are checked first (total, and the ratio of each large part);
    every part is then inflated in pieces, counting, so a zip whose headers understate a part
    is stopped at the limit too (and a truncated one found). XML parts may not declare a DTD:
    Word never writes one, and entity definitions are how an XML bomb multiplies its text.
    """
    most = limits.max_unpacked_bytes
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            members = package.infolist()
            declared = sum(m.file_size for m in members)
            if declared > most:
                raise LoadError(
                    f"DOCX unpacks to {declared / 1e6:.0f} MB, above the limit of {most / 1e6:g} MB "
                    "(KBASSIST_MAX_UNPACKED_MB)"
                )
            for member in members:
                ratio = member.file_size / max(member.compress_size, 1)
                if member.file_size > _RATIO_CHECKED_ABOVE and ratio > limits.max_compression_ratio:
                    raise LoadError(
                        f"DOCX part {member.filename} unpacks to {ratio:.0f} times its packed size, above the limit "
                        f"of {limits.max_compression_ratio:g} (KBASSIST_MAX_COMPRESSION_RATIO): a zip bomb?"
                    )
            total = 0
            for member in members:
                xml = member.filename.lower().endswith((".xml", ".rels"))
                with package.open(member) as stream:
                    tail = b""  # the end of the previous block: a declaration may straddle two
                    while block := stream.read(1 << 20):
                        total += len(block)
                        if total > most:
                            raise LoadError(
                                f"DOCX unpacks beyond the limit of {most / 1e6:g} MB (KBASSIST_MAX_UNPACKED_MB)"
                            )
                        if xml and _DTD.search(tail + block):
                            raise LoadError(
                                f"DOCX part {member.filename} declares a DTD or entities, which Word never writes"
                            )
                        tail = block[-16:]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, ValueError) as exc:
        raise LoadError(f"corrupt or unreadable DOCX: {exc}") from exc


def _read_docx(data: bytes, limits: UnpackLimits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph
    from lxml import etree

    check_docx_package(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, etree.LxmlError, EOFError, zlib.error) as exc:
        raise LoadError(f"corrupt or unreadable DOCX: {' '.join(str(exc).split()) or type(exc).__name__}") from exc
    out: list[str] = []
    counters: dict[int, int] = {}
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "tbl":
            counters.clear()
            out.append("")
            for row in Table(element, document).rows:
                cells = [" ".join(c.text.split()) for c in row.cells]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
            continue
        if tag != "p":
            continue
        para = Paragraph(element, document)
        text = " ".join(para.text.split())
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        heading = re.match(r"Heading (\d)", style)
        if heading or style == "Title":
            counters.clear()
            out.extend(["", "#" * (int(heading.group(1)) if heading else 1) + " " + text, ""])
        elif "List Number" in style:
            depth = int(style[-1]) if style[-1].isdigit() else 1
            counters[depth] = counters.get(depth, 0) + 1
            for deeper in [d for d in counters if d > depth]:
                del counters[deeper]
            out.append("   " * (depth - 1) + f"{counters[depth]}. {text}")
        elif "List" in style or (element.pPr is not None and element.pPr.numPr is not None):
            out.append("   - " + text if "2" in style else "- " + text)
        else:
            counters.clear()
            out.extend(["", text])
    meta: dict[str, Any] = {}
    if document.core_properties.title:
        meta["title"] = document.core_properties.title
    return "\n".join(out), meta


READERS: dict[str, tuple[str, Callable[[bytes, UnpackLimits], tuple[str, dict[str, Any]]]]] = {
    ".md": ("markdown", _read_markdown),
    ".markdown": ("markdown", _read_markdown),
    ".txt": ("text", _read_markdown),
    ".html": ("html", _read_html),
    ".htm": ("html", _read_html),
    ".pdf": ("pdf", _read_pdf),
    ".docx": ("docx", _read_docx),
}


TEXT_FORMATS = frozenset({"markdown", "text", "html"})


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in READERS and not path.name.endswith(SIDECAR_SUFFIX)


def sidecar_for(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _normalise_metadata(raw: dict[str, Any], text: str, path: Path) -> dict[str, str]:
    meta = {k: raw[k] for k in (*DOCUMENT_METADATA_KEYS, "id") if raw.get(k) is not None}
    for key, value in list(meta.items()):
        meta[key] = value.isoformat() if isinstance(value, date) else str(value).strip()
    audience = meta.get("audience", "internal").lower()
    if audience not in AUDIENCES:
        raise LoadError(f"audience must be one of {', '.join(AUDIENCES)}, got {meta['audience']!r}")
    meta["audience"] = audience
    meta["market"] = meta.get("market", "ALL").upper()
    meta["language"] = meta.get("language", "en").lower()
    if "review_by" in meta:
        try:
            meta["review_by"] = date.fromisoformat(meta["review_by"]).isoformat()
        except ValueError as exc:
            raise LoadError(f"review_by must be a date (YYYY-MM-DD), got {meta['review_by']!r}") from exc
    if not meta.get("title"):
        heading = re.search(r"^#{1,6}\s+(.+)$", text, re.M)
        meta["title"] = heading.group(1).strip() if heading else path.stem.replace("-", " ").replace("_", " ").title()
    return meta


def load_document(path: Path, root: Path, max_bytes: int, limits: UnpackLimits = DEFAULT_LIMITS) -> LoadedDocument:
    """Read, decode and clean one file. Raises :class:`LoadError` with a one-line reason.

    Any other exception a reader's library raises on a hostile or broken file becomes a
    :class:`LoadError` naming its type, so one file never ends the run.
    """
    try:
        return _load_document(path, root, max_bytes, limits)
    except (LoadError, KeyboardInterrupt):
        raise
    except MemoryError as exc:
        raise LoadError("ran out of memory while reading the file") from exc
    except RecursionError as exc:
        raise LoadError("nested too deeply to read (RecursionError)") from exc
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise LoadError(f"unreadable: unexpected {type(exc).__name__}" + (f": {reason}" if reason else "")) from exc


def _load_document(path: Path, root: Path, max_bytes: int, limits: UnpackLimits) -> LoadedDocument:
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise LoadError(f"unsupported file type {suffix or '(none)'} (supported: {', '.join(sorted(READERS))})")
    try:
        size = path.stat().st_size
        if size == 0:
            raise LoadError("empty file")
        if size > max_bytes:
            raise LoadError(
                f"file is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit (KBASSIST_MAX_FILE_MB)"
            )
        data = path.read_bytes()
        sidecar = sidecar_for(path)
        sidecar_bytes = b""
        if sidecar.is_file():
            if not _inside(sidecar, root):
                raise LoadError(f"sidecar {sidecar.name} links to a file outside {root}; not read")
            if sidecar.stat().st_size > max_bytes:
                raise LoadError(f"sidecar {sidecar.name} is above the {max_bytes / 1e6:.0f} MB limit")
            sidecar_bytes = sidecar.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    fmt, reader = READERS[suffix]
    encoding = ""
    if fmt in TEXT_FORMATS:
        # Decoded once here, to learn the encoding; the reader then gets plain UTF-8.
        decoded, encoding = decode_text(data)
        body, meta = reader(decoded.encode("utf-8"), limits)
    else:
        body, meta = reader(data, limits)
    if sidecar_bytes:
        meta.update(_parse_yaml(_decode(sidecar_bytes), f"sidecar {sidecar.name}"))
    text = clean_text(body)
    if not text:
        raise LoadError("no extractable text" + (" (scanned PDF without a text layer?)" if fmt == "pdf" else ""))
    audience_defaulted = meta.get("audience") is None
    metadata = _normalise_metadata(meta, text, path)
    # An id made only of punctuation slugifies to nothing; the path still names the document.
    doc_id = slugify(metadata.pop("id", "")) or doc_id_for(path, root)
    return LoadedDocument(
        doc_id=doc_id,
        path=path,
        format=fmt,
        text=text,
        metadata=metadata,
        sha256=_digest(data, sidecar_bytes),
        encoding=encoding,
        audience_defaulted=audience_defaulted,
    )


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its links followed, is inside ``root`` (links followed too)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def _digest(data: bytes, sidecar_bytes: bytes) -> str:
    return hashlib.sha256(data + b"\0" + sidecar_bytes).hexdigest()


def file_digest(path: Path) -> str:
    """Content hash of a file and its sidecar: what decides whether a re-ingest is needed."""
    sidecar = sidecar_for(path)
    return _digest(path.read_bytes(), sidecar.read_bytes() if sidecar.is_file() else b"")

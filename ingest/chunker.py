"""Section-aware chunking bounded in cl100k_base tokens.

A document is cut at its headings first; inside a section the text is split into atomic units
(a paragraph, a list item together with its sub-bullets, one table row) that are packed into
chunks up to the token bound, with a small overlap of whole units. A unit is only split when it
alone exceeds the bound (then at sentence, word, and finally character boundaries). Every chunk
starts with its heading path ("Refunds > Partial refunds"), which is also kept in metadata; a
chunk that continues a table repeats the table's header row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from kb.models import Chunk
from kb.tokens import count_tokens

CHUNKER_VERSION = "3"  # 3: an unbroken run is cut between words; 2: loaders drop HTML comments, repeated headings keep order
PATH_SEPARATOR = " > "

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_ITEM = re.compile(r"^ ?(\d{1,3}[.)]|[-*+•])\s+")
_TABLE_SEPARATOR = re.compile(r"^\|?[\s:|-]+\|?$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_WORD_CHAR = re.compile(r"\w")


@dataclass
class Unit:
    """The smallest piece of text the chunker keeps whole when it fits."""

    path: tuple[str, ...]
    kind: str  # "para" | "item" | "row" | "header"
    text: str
    table_header: str | None = None


def parse_units(text: str) -> list[Unit]:
    """Split Markdown-like text into units, each tagged with its heading path."""
    units: list[Unit] = []
    stack: list[tuple[int, str]] = []
    current: Unit | None = None
    header: str | None = None

    def path() -> tuple[str, ...]:
        return tuple(title for _, title in stack)

    def flush() -> None:
        nonlocal current
        if current is not None and current.text.strip():
            units.append(current)
        current = None

    for line in text.split("\n"):
        stripped = line.strip()
        heading = _HEADING.match(stripped) if not line.startswith((" ", "\t")) else None
        if heading:
            flush()
            header = None
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            continue
        if not stripped:
            if current is not None and current.kind != "row":
                flush()
            header = None if current is None or current.kind != "row" else header
            continue
        if stripped.startswith("|"):
            if current is not None and current.kind not in ("row", "header"):
                flush()
            if header is None and (current is None or current.kind not in ("row", "header")):
                flush()
                current = Unit(path(), "header", stripped)
                header = stripped
            elif current is not None and current.kind == "header" and _TABLE_SEPARATOR.match(stripped):
                current.text += "\n" + stripped
                header = current.text
            else:
                flush()
                current = Unit(path(), "row", stripped, table_header=header)
            continue
        if current is not None and current.kind in ("row", "header"):
            flush()
            header = None
        if current is not None and current.kind == "item" and line.startswith(("  ", "\t")):
            current.text += "\n" + line.rstrip()  # sub-bullet or wrapped line: stays with its step
        elif _ITEM.match(line):
            flush()
            current = Unit(path(), "item", stripped)
        elif current is not None:
            current.text += ("\n" if current.kind == "item" else " ") + stripped
        else:
            current = Unit(path(), "para", stripped)
    flush()
    return units


def _split_oversized(text: str, budget: int) -> list[str]:
    """Cut one over-long unit into pieces of at most ``budget`` tokens, at the gentlest boundary."""
    if count_tokens(text) <= budget:
        return [text]
    for splitter in (_SENTENCE_END, re.compile(r"(?<=\S)\s+")):
        pieces = [p for p in splitter.split(text) if p]
        if len(pieces) > 1:
            return [out for part in _pack_strings(pieces, budget) for out in _split_oversized(part, budget)]
    # One unbroken run of characters: cut by binary search on the token count. The upper end is
    # found by doubling from the budget, so each cut tokenizes about one piece's worth of text:
    # searching the whole remainder made a long run (a base64 image in Markdown) quadratic.
    out: list[str] = []
    rest = text
    while rest:
        lo, hi = 1, min(len(rest), budget)
        while hi < len(rest) and count_tokens(rest[:hi]) <= budget:
            lo, hi = hi, min(len(rest), hi * 2)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(rest[:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = _word_boundary_before(rest, lo) if lo < len(rest) else lo
        out.append(rest[:cut])
        rest = rest[cut:]
    return out


def _word_boundary_before(text: str, limit: int) -> int:
    """The last position at or before ``limit`` that does not fall inside a word, else ``limit``.

    A run without spaces ("0:0:Å0Ï0Ø…") still has words in it; cutting where the tokens run out
    can split one of them across two chunks, so a search for it finds neither. Only a single
    word longer than the budget is cut inside.
    """
    for cut in range(limit, 0, -1):
        if not (_WORD_CHAR.match(text, cut - 1) and _WORD_CHAR.match(text, cut)):
            return cut
    return limit


def _pack_strings(pieces: list[str], budget: int) -> Iterator[str]:
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and count_tokens(candidate) > budget:
            yield current
            current = piece
        else:
            current = candidate
    if current:
        yield current


@dataclass(frozen=True)
class ChunkSpec:
    """Chunk bound and overlap, in tokens (values come from settings)."""

    max_tokens: int
    overlap_tokens: int


def _join(units: list[Unit]) -> str:
    return "\n".join(u.text for u in units)


def _pack_section(units: list[Unit], budget: int, overlap: int) -> list[list[Unit]]:
    chunks: list[list[Unit]] = []
    current: list[Unit] = []
    for unit in units:
        if current and count_tokens(_join([*current, unit])) > budget:
            carried = [current.pop()] if current[-1].kind == "header" and len(current) > 1 else []
            chunks.append(current)
            if carried:  # a table header never ends a chunk: it moves on with its first row
                current = carried
                if count_tokens(_join([*current, unit])) <= budget:
                    current.append(unit)
                    continue
                chunks.append(current)
            tail: list[Unit] = []
            for prev in reversed(current):
                if prev.kind == "header" or count_tokens(_join([prev, *tail])) > overlap:
                    break
                tail.insert(0, prev)
            current = tail
            if unit.kind == "row" and unit.table_header and all(u.kind != "header" for u in current):
                current.insert(0, Unit(unit.path, "header", unit.table_header))
            while current and count_tokens(_join([*current, unit])) > budget:
                current.pop(0)
        current.append(unit)
    if current:
        chunks.append(current)
    return chunks


def chunk_text(
    doc_id: str, text: str, title: str, spec: ChunkSpec, metadata: dict[str, str | bool] | None = None
) -> list[Chunk]:
    """Chunk a cleaned document. Ids are deterministic: same input, same ids."""
    metadata = metadata or {}
    # Consecutive units under the same heading path form a section. A heading repeated later
    # ("## Example" twice) starts a new one: merging them would move text out of reading order.
    sections: list[tuple[tuple[str, ...], list[Unit]]] = []
    parsed = parse_units(text)
    if not parsed:  # headings only (a one-line notice written as a title): the headings are the content
        lines = [m.group(2) if (m := _HEADING.match(ln.strip())) else ln.strip() for ln in text.split("\n")]
        parsed = [Unit((), "para", ln) for ln in lines if ln]
    for unit in parsed:
        if sections and sections[-1][0] == unit.path:
            sections[-1][1].append(unit)
        else:
            sections.append((unit.path, [unit]))
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for path, units in sections:
        section = PATH_SEPARATOR.join(path) or title
        prefix = section + "\n\n"
        budget = spec.max_tokens - count_tokens(prefix)
        if budget < spec.max_tokens // 2:  # a heading path eating the bound: keep only its tail
            while section and count_tokens(section + "\n\n") > spec.max_tokens // 2:
                section = section[max(1, len(section) // 8) :]
            prefix = section + "\n\n" if section else ""
            budget = spec.max_tokens - count_tokens(prefix)
        pieces = [
            Unit(u.path, u.kind, piece, u.table_header) for u in units for piece in _split_oversized(u.text, budget)
        ]
        for ordinal, group in enumerate(_pack_section(pieces, budget, spec.overlap_tokens)):
            body = _join(group)
            content = prefix + body
            digest = hashlib.sha1(content.encode()).hexdigest()[:12]
            chunk_id = f"{doc_id}:{_slug(section)}:{ordinal}:{digest}"
            n = 1
            while chunk_id in seen:
                n += 1
                chunk_id = f"{doc_id}:{_slug(section)}:{ordinal}.{n}:{digest}"
            seen.add(chunk_id)
            chunks.append(
                Chunk(
                    id=chunk_id,
                    text=content,
                    metadata={
                        **metadata,
                        "doc_id": doc_id,
                        "title": title,
                        "section": section,
                        "ordinal": ordinal,
                        "position": len(chunks),
                        "tokens": count_tokens(content),
                    },
                )
            )
    return chunks


def _slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")[:48] or "body"

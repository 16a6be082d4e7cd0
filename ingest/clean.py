"""Text normalisation applied to every loaded document before chunking."""

from __future__ import annotations

import re
import unicodedata

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """NFC-normalise, drop control and zero-width characters, collapse runs of blanks.

    Line structure is kept: headings, list items and table rows are recognised line by line
    downstream.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text.translate(_ZERO_WIDTH))
    lines = [_normalise_line(line) for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n").rstrip()


def _normalise_line(line: str) -> str:
    """Collapse inner runs of blanks; keep the indent, which marks sub-items of a list."""
    body = line.lstrip(" \t")
    indent = line[: len(line) - len(body)].replace("\t", "    ")
    body = _SPACES.sub(" ", body).rstrip()
    return indent + body if body else ""

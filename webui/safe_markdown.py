"""Markdown that is safe to show a customer: no images, no raw HTML, links only to trusted domains.

Documents and model output are written by many hands; a passage shown in the customer chat must
not load an image from somewhere else (a tracking pixel), render HTML, or offer a link to a site
the business does not control. :func:`safe_markdown` rewrites text before ``st.markdown``:

- images (``![alt](src)``, ``![alt][ref]``) become their alt text; nothing is fetched;
- links (``[text](url)``, ``[text][ref]``) stay links only when the URL is ``http(s)`` or
  ``mailto`` on an allowed domain (the domain itself or one of its subdomains); any other link
  becomes its text;
- bare URLs and e-mail addresses that Markdown would turn into links are shown as inline code
  unless they point at an allowed domain;
- ``<`` and ``&`` are escaped, so HTML shows as written; ``$`` is escaped (no maths mode);
- code spans and fenced code blocks are kept as they are (nothing in them renders).

The allowed domains come from ``KBASSIST_CUSTOMER_LINK_DOMAINS`` (empty: no links at all).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_REF_DEFINITION = re.compile(r"^ {0,3}\[([^\]\n]+)\]:[ \t]*<?([^\s>]+)>?.*(?:\n|$)", re.MULTILINE)
_URL_IN_PARENS = r"\(\s*<?([^\s<>()]*(?:\([^\s<>()]*\)[^\s<>()]*)*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
_IMAGE = re.compile(r"!\[((?:[^\[\]]|\[[^\[\]]*\])*)\](?:" + _URL_IN_PARENS + r"|\[([^\]]*)\])?")
_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\](?:" + _URL_IN_PARENS + r"|\[([^\]]*)\])")
_BARE = re.compile(
    r"(?i)(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>`]*[^\s<>`.,;:!?'\")\]]"
    r"|\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)


def parse_domains(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"example.com, help.example.org"`` → ``("example.com", "help.example.org")``, lower case."""
    items = value.split(",") if isinstance(value, str) else value
    domains = (d.strip().lower().strip(".") for d in items)
    return tuple(dict.fromkeys(d for d in domains if d))


def link_allowed(url: str, domains: Iterable[str]) -> bool:
    """Whether ``url`` is an http(s) or mailto link to one of ``domains`` or a subdomain of one."""
    allowed = parse_domains(domains)
    if not allowed:
        return False
    url = url.strip()
    if url.lower().startswith("www."):
        url = "https://" + url
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if parts.username or parts.password:  # https://trusted.com@evil.example/ goes to evil.example
            return False
        host = (parts.hostname or "").lower().rstrip(".")
    elif scheme == "mailto":
        address = parts.path.split("?")[0]
        host = address.rpartition("@")[2].lower() if "@" in address else ""
    elif not scheme and "@" in url and "/" not in url:  # a bare e-mail address
        host = url.rpartition("@")[2].lower()
    else:
        return False
    return bool(host) and any(host == d or host.endswith("." + d) for d in allowed)


def safe_markdown(text: str, allowed_domains: Iterable[str] = ()) -> str:
    """``text`` rewritten so that it renders no image, no HTML and no link outside ``allowed_domains``."""
    domains = parse_domains(allowed_domains)
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is None and opening:
            out.append(_prose("".join(prose), domains))
            prose = []
            fence = opening.group(1)[0] * len(opening.group(1))
            out.append(line)
        elif fence is not None:
            out.append(line)
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
        else:
            prose.append(line)
    out.append(_prose("".join(prose), domains))
    return "".join(out)


def _prose(text: str, domains: tuple[str, ...]) -> str:
    """Text outside fenced code: definitions resolved, then images, links and the rest."""
    if not text:
        return text
    references = {m.group(1).strip().lower(): m.group(2) for m in _REF_DEFINITION.finditer(text)}
    text = _REF_DEFINITION.sub("", text)
    pieces: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(text):
        pieces.append(_inline(text[position : span.start()], domains, references))
        pieces.append(span.group(0))  # nothing inside a code span renders
        position = span.end()
    pieces.append(_inline(text[position:], domains, references))
    return "".join(pieces)


def _inline(text: str, domains: tuple[str, ...], references: dict[str, str]) -> str:
    text = _IMAGE.sub(lambda m: _image_text(m.group(1)), text)
    pieces: list[str] = []
    position = 0
    for link in _LINK.finditer(text):
        pieces.append(_literal(text[position : link.start()], domains))
        label, url, ref = link.group(1), link.group(2), link.group(3)
        if url is None:
            url = references.get((ref or label).strip().lower())
        shown = _literal(label, domains) if label.strip() else _literal(url or "", domains)
        if url and link_allowed(url, domains):
            pieces.append(f"[{shown}](<{quote(url.strip(), safe=_URL_SAFE)}>)")
        else:
            pieces.append(shown)
        position = link.end()
    pieces.append(_literal(text[position:], domains))
    return "".join(pieces)


_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def _image_text(alt: str) -> str:
    # The alt text says what the picture was; nested brackets would only start new syntax.
    return re.sub(r"[\[\]]", "", alt).strip()


def _literal(text: str, domains: tuple[str, ...]) -> str:
    """Plain text: HTML and maths escaped, leftover link syntax broken, bare links quoted as code."""
    pieces: list[str] = []
    position = 0
    for bare in _BARE.finditer(text):
        pieces.append(_escape(text[position : bare.start()]))
        target = bare.group(0)
        pieces.append(target if link_allowed(target, domains) else f"`{target}`")
        position = bare.end()
    pieces.append(_escape(text[position:]))
    return "".join(pieces)


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace("$", "\\$")
    # A "]" followed by "(", "[" or ":" could still make a link or a definition: break it.
    return re.sub(r"\](?=[(\[:])", r"\\]", text)

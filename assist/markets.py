"""Markets in questions and in answers: which country a text is about, and quoting only its rules.

Policies often state both markets side by side ("60 SEK in Sweden and 2.50 EUR in Germany", a
table with a Sweden and a Germany column). A customer in Sweden who is shown both figures has
to pick the right one, and picks wrong often enough; so once the asker's market is known, an
answer quotes only that market's row, column or clause. When it is not known and the figures
differ, the answer labels each market (or asks which country, see :mod:`assist.selection`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Country names → market codes, for "and in Germany?" style follow-ups and explicit mentions.
MARKET_NAMES: dict[str, tuple[str, ...]] = {
    "SE": ("sweden", "swedish", "sverige", "schweden", "svensk", "svenska"),
    "DE": ("germany", "german", "deutschland", "tyskland", "deutsch", "deutsche", "deutschen"),
    "NO": ("norway", "norwegian", "norge"),
    "DK": ("denmark", "danish", "danmark"),
    "FI": ("finland", "finnish", "suomi"),
    "NL": ("netherlands", "dutch"),
    "AT": ("austria", "austrian", "österreich"),
    "GB": ("united kingdom", "uk", "britain"),
    "US": ("united states", "usa"),
}
# How each market is named in a policy's own text (cells, labels, clauses), with its currency.
LABELS: dict[str, tuple[str, ...]] = {
    "SE": ("Sweden", "SE", "Schweden", "Sverige"),
    "DE": ("Germany", "DE", "Deutschland", "Tyskland"),
}
CURRENCY = {"SE": ("SEK", "kr"), "DE": ("EUR", "€")}
DISPLAY = {"SE": "Sweden", "DE": "Germany"}

_MARKET_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(n) for names in MARKET_NAMES.values() for n in names) + r")\b", re.I
)
_LABEL = {m: "|".join(re.escape(x) for x in names) for m, names in LABELS.items()}
_ANY_LABEL = "|".join(_LABEL.values())
# "X (Sweden)", "X (SE)", "X in Sweden", "X in SE", "X i Sverige": a value tied to a market.
_MARKER = re.compile(rf"\s*(?:\((?P<p>{_ANY_LABEL})\)|\b(?:in|i) (?P<i>{_ANY_LABEL})\b)")
# "in Sweden the Swedish authority (IMY), in Germany the authority of your federal state."
_IN_PAIR = re.compile(
    rf"\b[Ii]n (?P<m1>{_ANY_LABEL})\b,? (?P<a>[^,;]+?)[,;] (?:and )?[Ii]n (?P<m2>{_ANY_LABEL})\b,? (?P<b>[^,;.]+)"
)
# A segment that is about one market only: "- Sweden: log in with…", "In Germany, …", "SE: …".
_LEADING = re.compile(
    rf"^\s*(?:[-*+•]\s+|\d{{1,3}}[.)]\s+)?(?:(?:in|for customers in|i|für kunden in)\s+(?P<m>{_ANY_LABEL})\b(?! and| or| und| och)"
    rf"|(?P<label>{_ANY_LABEL})\s*:)",
    re.I,
)


def code_of(label: str) -> str | None:
    """The market code a label names ("Sweden", "SE", "Schweden" → "SE")."""
    low = label.strip().lower()
    return next((m for m, names in LABELS.items() if low in (n.lower() for n in names)), None)


def mentioned_market(text: str) -> str | None:
    """The last market named in ``text`` ("...in Germany?" → "DE"), if any.

    A message that is nothing but a market code ("SE", "de.") names it too: the usual reply to
    "Are you in Sweden or Germany?". Inside a sentence a code is left alone ("se" and "de" are
    words too).
    """
    bare = text.strip(" .!?,").upper()
    if bare in LABELS:  # markets the policies label; a bare "no" is not Norway
        return bare
    found = _MARKET_PATTERN.findall(text)
    if not found:
        return None
    name = found[-1].lower()
    return next(code for code, names in MARKET_NAMES.items() if name in names)


def only_market(text: str) -> str | None:
    """The market ``text`` names when it names exactly one ("Are you in Sweden or Germany?" names none)."""
    found = {mentioned_market(name) for name in _MARKET_PATTERN.findall(text)}
    return found.pop() if len(found) == 1 else None


def markets_in(text: str) -> set[str]:
    """Markets a policy text states something for (by label or currency)."""
    found = set()
    for market, names in LABELS.items():
        pattern = "|".join(re.escape(x) for x in (*names, *CURRENCY[market]))
        if re.search(rf"(?<!\w)({pattern})(?!\w)", text):
            found.add(market)
    return found


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@dataclass(frozen=True)
class Row:
    """A table row read with its header: cells by column name, and the market it is for, if any."""

    header: list[str]
    cells: list[str]

    @classmethod
    def parse(cls, text: str) -> Row:
        header, _, body = text.partition("\n")
        return cls(_cells(header), _cells(body))

    @property
    def market_columns(self) -> dict[str, int]:
        """Columns named after a market ("| | Sweden | Germany |")."""
        return {code: i for i, name in enumerate(self.header) if (code := code_of(name))}

    @property
    def row_market(self) -> str | None:
        """The market a row is for when its first cell names one ("| SE | 21 days |")."""
        return code_of(self.cells[0]) if self.cells else None


def row_text(text: str, market: str | None) -> str | None:
    """A table row (with its header) as one readable line for ``market``; ``None`` when it is
    another market's row.

    Market columns: "First late fee: 60 SEK, 10 days after the due date (Sweden)", or with no
    market known, every market labelled (with a market the table has no column for, ``None``). A row for one market: "SE: 21 days" style cells
    joined with their column names.
    """
    row = Row.parse(text)
    if len(row.header) != len(row.cells):
        return " ".join(c for c in row.cells if c)
    own = row.row_market
    if own is not None:
        if market and own != market:
            return None
        pairs = [f"{h}: {c}" for h, c in zip(row.header[1:], row.cells[1:], strict=True) if c]
        label = DISPLAY.get(own, row.cells[0])
        return f"{label} — " + "; ".join(pairs) if pairs else label
    columns = row.market_columns
    if not columns:
        return "; ".join(f"{h}: {c}" if h else c for h, c in zip(row.header, row.cells, strict=True) if c)
    subject = [c for i, c in enumerate(row.cells) if i not in columns.values() and c]
    lead = " — ".join(subject)
    if market and market in columns:
        value = row.cells[columns[market]]
        return f"{lead}: {value} ({DISPLAY.get(market, market)})" if lead else f"{value} ({DISPLAY.get(market, market)})"
    if market:  # a market the table has no column for: its values are all for someone else
        return None
    values = "; ".join(f"{DISPLAY.get(m, m)}: {row.cells[i]}" for m, i in columns.items() if row.cells[i])
    return f"{lead} — {values}" if lead else values


def clause_for_market(text: str, market: str | None) -> str | None:
    """A sentence, item or step with another market's parallel clause removed; ``None`` when the
    whole text is about another market. Text that is not market-specific comes back unchanged.

    Handles the shapes policies use: "A (Sweden) or B (Germany)", "A in SE and B in DE",
    "in Sweden A, in Germany B", and a leading label ("- Germany: …").
    """
    if not market:
        return text
    leading = _LEADING.match(text)
    if leading:
        return text if code_of(leading.group("m") or leading.group("label")) == market else None
    pair = _IN_PAIR.search(text)
    if pair and {code_of(pair.group("m1")), code_of(pair.group("m2"))} == set(LABELS):
        first = code_of(pair.group("m1")) == market
        keep = f"in {pair.group('m1')} {pair.group('a')}" if first else f"in {pair.group('m2')} {pair.group('b')}"
        return text[: pair.start()] + keep + text[pair.end() :]
    return _reduce_pairs(text, market)


# Words after which a value starts: "more than 5,000 SEK", "is 60 SEK", "on 010-555 20 00".
_BEFORE_VALUE = frozenset(
    "is are was were be been than of on to at by for with from about within over above below under after before "
    "up ist sind von bis über unter innerhalb är av på till inom över under".split()
)


def _value_start(before: str, words: int) -> int:
    """Where the first market's value starts, given the text before its market marker.

    Values in a pair are parallel ("5,000 SEK (Sweden) or 500 EUR (Germany)"), so the first
    is about as long as the second (``words``). It starts after the nearest punctuation or
    word that opens a value ("than", "is", "on", "agency:") within a couple of words more
    than that; failing one, exactly ``words`` words back.
    """
    spans = [m.span() for m in re.finditer(r"\S+", before)]
    for taken, (lo, _hi) in enumerate(reversed(spans), start=1):
        if taken > words + 2:
            break
        previous = spans[len(spans) - taken - 1] if taken < len(spans) else None
        if previous is None:
            return 0
        word = before[previous[0] : previous[1]]
        if word[-1] in ":;,(" or word.lower() in _BEFORE_VALUE:
            return lo
    return spans[max(len(spans) - words, 0)][0] if spans else 0


_CONJ = re.compile(r"\s*,?\s*(?:and|or|und|oder|och|eller)\s+", re.I)


def _reduce_pairs(text: str, market: str) -> str:
    """Rewrite each "A <marker> and/or B <marker>" pair of two markets to the asker's half."""
    out = text
    start = 0
    while True:
        first = _MARKER.search(out, start)
        if not first:
            return out
        conj = _CONJ.match(out, first.end())
        second = _MARKER.search(out, conj.end()) if conj else None
        if not conj or not second or second.start() - conj.end() > 60:
            start = first.end()
            continue
        m1 = code_of(first.group("p") or first.group("i"))
        m2 = code_of(second.group("p") or second.group("i"))
        if m1 is None or m2 is None or m1 == m2 or market not in (m1, m2):
            start = second.end()
            continue
        b = out[conj.end() : second.start()]
        words = len(b.split())
        if not words:  # "in Sweden and in Germany": two markets named, no values to choose between
            start = second.end()
            continue
        a_start = _value_start(out[: first.start()], words)
        if market == m1:
            out = out[: first.end()] + out[second.end() :]
            start = first.end()
        else:
            out = out[:a_start] + out[conj.end() :]
            start = a_start + (second.end() - conj.end())

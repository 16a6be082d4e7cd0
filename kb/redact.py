"""Remove personal data from free text before it is stored.

Conversations, feedback comments and hand-offs are kept for analytics and for the people who pick
up a hand-off; card numbers, IBANs, e-mail addresses, phone numbers and Swedish personal identity
numbers have no place in those records. Each is replaced by a typed placeholder (``[card]``,
``[iban]``, ``[email]``, ``[phone]``, ``[personnummer]``) so the text still reads naturally.

How text is matched. Matching runs on a *normalised view* of the text: NFKC (fullwidth digits and
``＠`` become ASCII), every Unicode space, tab and line break becomes one space, zero-width
characters and soft hyphens vanish, and every Unicode dash becomes ``-``. Each character of the
view remembers where it came from, so a match replaces exactly the original span (zero-width
characters and line breaks inside it included) and the rest of the text is stored as written.

A "digit run" is digits joined by short separators (spaces, ``. - / _ ( ) +``, at most three in a
row). Dates in it (``2026-12-02``, ``02.12.2026``, ``02-12-2026``) are blanked out first, unless they
begin a 12-digit personnummer. Candidates are windows of whole groups of a run, leftmost and
longest first, and are kept only when they validate, so ordinary numbers stay readable:

* personnummer: 10 (YYMMDDNNNN) or 12 (YYYYMMDDNNNN) digits, a real calendar date (samordningsnummer
  add 60 to the day; a 12-digit form may not lie in the future) and Luhn over the 10-digit form;
* card: 13-19 digits passing Luhn;
* IBAN: python-stdnum (country, length and BBAN format, ISO 7064 mod 97-10);
* phone: a phone *shape* first (``+``/``00`` international; a trunk ``0`` national number; a
  Swedish mobile without its ``0`` whose first group is two digits, ``70 123 45 67``; North
  American ``555 123 4567`` / ``(555) 123-4567``), then ``phonenumbers`` (regions SE, DE, GB, US)
  must call it valid (only possible, for the international and North American shapes, so example
  numbers like 555 ones count). A window that continues an amount's thousands groups
  (the ``020 000`` of ``1 020 000.50``) is only a phone in international form.

A run glued to a word is still a candidate (``card4111...``), except when that word is made of hex
digits only: that is an identifier (a UUID, a digest) in a stored JSON document.

Left alone: amounts (``1,000 EUR``, ``1 500 SEK``, ``14.9%``), dates, times (``08:00-20:00``),
percentages, and order or case numbers shorter than 8 digits. The company's own support numbers
(``010-555 20 00``, ``030 5555 2000``) and addresses *are* redacted: telling them apart from a
customer's number would need a list kept in step with the documents, and the placeholder loses
nothing an analyst needs.

Known limits: a number that fails its check (a mistyped card, a phone number ``phonenumbers``
calls invalid) is kept; so is a digit run glued to other digits without a separator
(``41111111111111110000``), and an 8-digit reference starting with ``0`` that happens to be a valid
German or Swedish number (``0301 2345``) becomes ``[phone]``.

Measured (``scripts/redaction_report.py``) over the 44 demo documents and the 583 questions of
``eval/datasets``: 19 spans redacted, all in the documents and all the company's own contact
details or an example number (11 ``[phone]``: the SE/DE support and fraud lines and the
``+46 70 000 00 00`` of a phishing example; 8 ``[email]``: privacy@, phishing@, complaints@); none in
the questions, and no amount, date, time or reference number.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import phonenumbers
from stdnum import iban as _stdnum_iban

# --- the normalised view -------------------------------------------------------------------------

_ZERO_WIDTH = frozenset("\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff")


def _view(text: str) -> tuple[str, list[int], list[int]]:
    """The normalised text, and for each of its characters the original span ``[start, end)``."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, ch in enumerate(text):
        if ch in _ZERO_WIDTH or (unicodedata.category(ch) == "Cf" and not ch.isprintable()):
            continue
        if ch.isspace() or unicodedata.category(ch) == "Zs":
            if chars and chars[-1] == " ":  # a run of spaces is one separator
                ends[-1] = i + 1
                continue
            out = " "
        elif ch.isdecimal():  # any script's digits (٤, ४, fullwidth) are matched as ASCII digits
            out = str(unicodedata.decimal(ch))
        elif unicodedata.category(ch) == "Pd" or ch == "\u2212":
            out = "-"
        else:
            out = unicodedata.normalize("NFKC", ch) if ord(ch) > 127 else ch
        for piece in out:
            chars.append(piece)
            starts.append(i)
            ends.append(i + 1)
    return "".join(chars), starts, ends


# --- check digits and plausibility ---------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment cards and Swedish personnummer."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: a known country, its BBAN length and format, and mod 97 == 1 (python-stdnum)."""
    return bool(_stdnum_iban.is_valid(re.sub(r"[ \-._/]", "", candidate)))


def _real_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def personnummer_valid(digits: str) -> bool:
    """10 or 12 digits: a real birth date (day + 60 for a samordningsnummer) and Luhn over 10 digits."""
    if not digits.isdigit() or len(digits) not in (10, 12):
        return False
    short = digits[-10:]
    month, day = int(short[2:4]), int(short[4:6])
    day = day - 60 if day > 60 else day
    if not luhn_valid(short):
        return False
    if len(digits) == 12:
        year = int(digits[:4])
        born = _real_date(year, month, day)
        return born is not None and year >= 1880 and born <= date.today()
    yy = int(short[:2])
    return any(_real_date(century + yy, month, day) for century in (1900, 2000))


# --- digit runs ----------------------------------------------------------------------------------

_SEP = r"[ .\-/_()+]"
_RUN = re.compile(rf"(?<!\d)[+(]{{0,2}}\d(?:{_SEP}{{1,3}}\d|\d)*")
# A digit group glued to a word made only of hex digits belongs to an identifier (a UUID, a
# digest), not to a number someone typed; glued to any other word (card4111...) it still counts.
_HEX_BEFORE = re.compile(r"(?<![^\W_])[0-9a-f]+$", re.I)
_HEX_AFTER = re.compile(r"^[0-9a-f]+(?![^\W_])", re.I)
_GROUP = re.compile(r"\d+")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_DMY_DATE = re.compile(r"(?<!\d)(\d{1,2})[./](\d{1,2})[./](\d{4}|\d{2})(?!\d)")
_DMY_DASHED_DATE = re.compile(r"(?<!\d)(\d{1,2})-(\d{1,2})-(\d{4})(?!\d)")
_NANP = re.compile(r"^\+?(?:1[ .\-]?)?(?:\(\d{3}\) ?|\d{3}[ .\-/])\d{3}[ .\-]\d{4}$")
_SE_MOBILE_NO_TRUNK = re.compile(r"^7[02369]\d{7}$")
_SE_MOBILE_FIRST_GROUP = re.compile(r"^7[02369][^\d]")


def _is_date(window: str) -> bool:
    """Whether ``window`` holds a date (2026-12-02, 02.12.2026, 02-12-2026, 2/12/26) among its digit groups."""
    for m in _ISO_DATE.finditer(window):
        if _real_date(*(int(g) for g in m.groups())):
            return True
    for pattern in (_DMY_DATE, _DMY_DASHED_DATE):
        for m in pattern.finditer(window):
            d, mo, y = (int(g) for g in m.groups())
            if _real_date(y + 2000 if y < 100 else y, mo, d):
                return True
    return False


def _mask_dates(view: str) -> str:
    """``view`` with its dates blanked out, so no window of digit groups can reach into one.

    A date followed by four digits that make it a valid 12-digit personnummer (1981-12-18-9876)
    stays, for the personnummer check to find.
    """
    chars = list(view)
    for pattern in (_ISO_DATE, _DMY_DATE, _DMY_DASHED_DATE):
        for m in pattern.finditer(view):
            if not _is_date(m.group(0)):
                continue
            tail = re.match(rf"{_SEP}{{1,3}}(\d{{4}})(?!\d)", view[m.end() :])
            if tail and personnummer_valid("".join(_GROUP.findall(m.group(0))) + tail.group(1)):
                continue
            chars[m.start() : m.end()] = "x" * (m.end() - m.start())
    return "".join(chars)


def _phone_valid(window: str, digits: str) -> bool:
    """A phone shape, then phonenumbers' verdict for one of the markets' regions."""
    if _is_date(window) or not 7 <= len(digits) <= 15:
        return False
    text = window.replace("(0)", " ")
    if text.startswith("(") and not re.match(r"\(\d{1,5}\)", text):
        text = text[1:]  # an opening parenthesis of the sentence, not of an area code
    if text.startswith("+") or digits.startswith("00"):
        international = "+" + (digits if text.startswith("+") else digits[2:])
        try:
            number = phonenumbers.parse(international, None)
        except phonenumbers.NumberParseException:
            return False
        return len(digits) >= 8 and phonenumbers.is_possible_number(number)
    if _NANP.match(text.strip()):
        return phonenumbers.is_possible_number(phonenumbers.parse(digits, "US"))
    if digits.startswith("0"):
        candidates = [(digits, region) for region in ("SE", "DE", "GB")]
    elif _SE_MOBILE_NO_TRUNK.match(digits) and _SE_MOBILE_FIRST_GROUP.match(text):
        candidates = [("0" + digits, "SE")]
    else:
        return False
    if len(digits) < 8:
        return False
    for national, region in candidates:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(national, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def _classify(window: str, *, continues_a_number: bool) -> str | None:
    """The kind of personal data ``window`` is, if any.

    ``continues_a_number``: the window starts on a group that follows a short group after a single
    space or dot, like the ``020 000`` of the amount ``1 020 000.50``; such a window is no phone
    number unless written in international form.
    """
    digits = "".join(_GROUP.findall(window))
    if len(digits) in (10, 12) and personnummer_valid(digits):
        return "personnummer"
    if 13 <= len(digits) <= 19 and luhn_valid(digits) and not _is_date(window):
        return "card"
    if continues_a_number and not window.startswith("+"):
        return None
    if _phone_valid(window, digits):
        return "phone"
    return None


def _run_spans(view: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """Validated windows of whole digit groups in ``view[start:end]``, leftmost and longest first."""
    groups = [(start + m.start(), start + m.end()) for m in _GROUP.finditer(view[start:end])]
    glued_before = bool(groups) and groups[0][0] == start > 0 and view[start - 1].isalnum()
    if glued_before and _HEX_BEFORE.search(view[max(0, start - 64) : groups[0][1]]):
        groups = groups[1:]
    glued_after = bool(groups) and groups[-1][1] == end < len(view) and view[end].isalnum()
    if glued_after and _HEX_AFTER.match(view[groups[-1][0] : end + 64]):
        groups = groups[:-1]
    i = resumed = 0
    while i < len(groups):
        found = False
        total = 0
        last = i
        while last < len(groups) and total + groups[last][1] - groups[last][0] <= 19:
            total += groups[last][1] - groups[last][0]
            last += 1
        for j in range(last - 1, i - 1, -1):
            # A window begins at its first digit, or at the + or ( just before it.
            w_start = groups[i][0]
            while w_start > start and view[w_start - 1] in "+(" and (i == 0 or w_start - 1 >= groups[i - 1][1]):
                w_start -= 1
            w_end = groups[j][1]
            continues = (
                i > 0
                and i != resumed
                and groups[i - 1][1] - groups[i - 1][0] <= 3
                and view[groups[i - 1][1] : groups[i][0]] in (" ", ".")
            )
            kind = _classify(view[w_start:w_end], continues_a_number=continues)
            if kind is not None:
                yield kind, w_start, w_end
                i = resumed = j + 1
                found = True
                break
        if not found:
            i += 1


# --- e-mail and IBAN -----------------------------------------------------------------------------

_AT = r"(?:@| @ | ?[(\[{] ?at ?[)\]}] ?)"
_DOT = r"(?:\.| ?[(\[{] ?dot ?[)\]}] ?)"
_EMAIL = re.compile(
    rf"(?<![\w%+\-.])[\w%+\-]+(?:{_DOT}[\w%+\-]+)*{_AT}[\w\-]+(?:{_DOT}[\w\-]+)*{_DOT}[^\W\d_]{{2,}}\b", re.I
)
# Two letters, two check digits, then 11-30 letters/digits, optionally grouped by spaces, - . _ or /.
_IBAN = re.compile(r"(?<![^\W_])[A-Z]{2}\d{2}(?:[ \-._/]?[A-Z0-9]){11,30}", re.I)


def _iban_spans(view: str) -> Iterator[tuple[int, int]]:
    """The longest valid IBAN at the start of each candidate; the pattern may overrun into the next word."""
    for match in _IBAN.finditer(view):
        candidate = match.group(0)
        for end in range(len(candidate), 14, -1):
            if candidate[end - 1].isalnum() and iban_valid(candidate[:end]):
                yield match.start(), match.start() + end
                break


# --- putting it together -------------------------------------------------------------------------


@dataclass
class Redacted:
    """Redacted text and how many of each kind were replaced (counts only: never the values)."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)


def redact_spans(text: str) -> list[tuple[str, int, int]]:
    """``(kind, start, end)`` of each piece of personal data in ``text`` (original offsets), in order."""
    view, starts, ends = _view(text)
    taken = [False] * len(view)
    found: list[tuple[str, int, int]] = []

    def take(kind: str, a: int, b: int) -> None:
        if b > a and not any(taken[a:b]):
            taken[a:b] = [True] * (b - a)
            found.append((kind, a, b))

    # Order matters: e-mails first (they may contain digits), then IBANs (letters and digits),
    # then the digit runs outside them.
    for m in _EMAIL.finditer(view):
        take("email", m.start(), m.end())
    for a, b in _iban_spans(view):
        take("iban", a, b)
    masked = "".join("x" if t else ch for ch, t in zip(view, taken, strict=True))
    masked = _mask_dates(masked)
    for run in _RUN.finditer(masked):
        for kind, a, b in _run_spans(masked, run.start(), run.end()):
            take(kind, a, b)
    found.sort(key=lambda span: span[1])
    return [(kind, starts[a], ends[b - 1]) for kind, a, b in found]


def redact_details(text: str) -> Redacted:
    """Redact ``text`` and report what kinds of personal data were found."""
    counts: Counter[str] = Counter()
    pieces: list[str] = []
    position = 0
    for kind, start, end in redact_spans(text):
        pieces += [text[position:start], f"[{kind}]"]
        counts[kind] += 1
        position = end
    pieces.append(text[position:])
    return Redacted("".join(pieces), counts)


def redact(text: str) -> str:
    """``text`` with e-mails, phone numbers, card numbers, IBANs and personnummer replaced."""
    return redact_details(text).text

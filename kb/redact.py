"""Remove personal data from free text before it is stored.

Conversations, feedback comments and hand-offs are kept for analytics and for the people who pick
up a hand-off; card numbers, IBANs, e-mail addresses, phone numbers and Swedish personal identity
numbers have no place in those records. Each is replaced by a typed placeholder (``[card]``,
``[iban]``, ``[email]``, ``[phone]``, ``[personnummer]``) so the text still reads naturally.

Numbers are only treated as card numbers, IBANs or personnummer when their check digits are valid
(Luhn, ISO 7064 mod 97-10): an order number or an amount that merely looks long stays readable.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Two letters, two check digits, then 11-30 letters/digits, optionally grouped by spaces or dashes.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]){11,30}\b", re.I)
# 13-19 digits, optionally grouped by single spaces or dashes (4111 1111 1111 1111, 4111-1111-...).
_CARD = re.compile(r"(?<![\d\-])\d(?:[ \-]?\d){12,18}(?![\d\-])")
# YYMMDD-NNNN, YYMMDD+NNNN (over 100 years old), or YYYYMMDD[-]NNNN.
_PERSONNUMMER = re.compile(r"(?<![\d\-])(?:(?:19|20)\d{6}-?|\d{6}[-+])\d{4}(?![\d\-])")
# International (+46 70 123 45 67, +49 (0)30 1234567), national trunk-prefixed (070-123 45 67,
# 030 1234567), and North American (555) 123-4567 / 555-123-4567 forms.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ \-.]?\(?\d+\)?){2,6}"
    r"|0\d{1,4}(?:[ \-/.]?\d{2,4}){2,4}"
    r"|\(\d{3}\)[ \-.]?\d{3}[ \-.]\d{4}"
    r"|\d{3}[\-.]\d{3}[\-.]\d{4}"
    r")(?!\w)"
)


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
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    iban = re.sub(r"[ \-]", "", candidate).upper()
    if not (15 <= len(iban) <= 34) or not iban[:2].isalpha() or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _personnummer_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)[-10:]
    month, day = int(digits[2:4]), int(digits[4:6])
    day = day - 60 if day > 60 else day  # samordningsnummer add 60 to the day
    return 1 <= month <= 12 and 1 <= day <= 31 and luhn_valid(digits)


def _phone_plausible(candidate: str) -> bool:
    """E.164 allows 15 digits; a trunk-prefixed national number has at least 8 (08-123 456)."""
    digits = sum(ch.isdigit() for ch in candidate)
    return (7 if candidate.startswith("+") else 8) <= digits <= 15


def _redact_iban(candidate: str, counts: Counter[str]) -> str:
    """The longest valid IBAN at the start of ``candidate``; the pattern may overrun into the next word."""
    for end in range(len(candidate), 14, -1):
        if candidate[end - 1].isalnum() and iban_valid(candidate[:end]):
            counts["iban"] += 1
            return "[iban]" + candidate[end:]
    return candidate


@dataclass
class Redacted:
    """Redacted text and how many of each kind were replaced (counts only: never the values)."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)


def redact_details(text: str) -> Redacted:
    """Redact ``text`` and report what kinds of personal data were found."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], label: str, check: Callable[[str], bool] | None, value: str) -> str:
        def repl(match: re.Match[str]) -> str:
            if check is not None and not check(match.group(0)):
                return match.group(0)
            counts[label] += 1
            return f"[{label}]"

        return pattern.sub(repl, value)

    # Order matters: e-mails first (they may contain digits), then the check-digit validated
    # numbers, and phone numbers last, so a valid card number is never reported as a phone.
    text = sub(_EMAIL, "email", None, text)
    text = _IBAN.sub(lambda m: _redact_iban(m.group(0), counts), text)
    text = sub(_PERSONNUMMER, "personnummer", _personnummer_valid, text)
    text = sub(_CARD, "card", lambda s: luhn_valid(re.sub(r"\D", "", s)), text)
    text = sub(_PHONE, "phone", _phone_plausible, text)
    return Redacted(text, counts)


def redact(text: str) -> str:
    """``text`` with e-mails, phone numbers, card numbers, IBANs and personnummer replaced."""
    return redact_details(text).text

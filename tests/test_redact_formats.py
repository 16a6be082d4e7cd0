"""Redaction against the formats people actually type: no separator, odd separators, Unicode.

Example-based tests pin each format that once slipped through; property tests generate those
formats with random separators and surrounding text and check that none of the digits survive.
The suite's Hypothesis profile is deterministic (tests/conftest.py), so every run draws the same
examples.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kb.redact import luhn_valid, personnummer_valid, redact, redact_details


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Swedish personnummer without separator, with a space, or with the 100+ "+"
        ("pnr 198112189876 tack", "pnr [personnummer] tack"),
        ("pnr 8112189876 tack", "pnr [personnummer] tack"),
        ("pnr 811218 9876 tack", "pnr [personnummer] tack"),
        ("pnr 811218+9876", "pnr [personnummer]"),
        ("pnr 1981-12-18-9876", "pnr [personnummer]"),
        # e-mail with a fullwidth or spaced at sign, or spelled out
        ("mail anna＠example.se please", "mail [email] please"),
        ("mail anna﹫example.se please", "mail [email] please"),
        ("mail anna @ example.se please", "mail [email] please"),
        ("mail anna(at)example.se please", "mail [email] please"),
        ("mail anna (at) example (dot) se please", "mail [email] please"),
        ("mail anna[at]example.se please", "mail [email] please"),
        ("mail åsa.öberg@exempel.se", "mail [email]"),
        # phone numbers without a country code
        ("call 555 123 4567 now", "call [phone] now"),
        ("ring 070-123 45 67 now", "ring [phone] now"),
        ("ring 70 123 45 67 now", "ring [phone] now"),
        ("Anruf 030 12345678 bitte", "Anruf [phone] bitte"),
        ("Anruf 030/12345678 oder (030) 12345678", "Anruf [phone] oder [phone]"),
        ("ring ０７０－１２３ ４５ ６７", "ring [phone]"),
        ("ring 070\u2011123\u00a045\u00a067", "ring [phone]"),
        ("call 0046 70 123 45 67 or +46701234567", "call [phone] or [phone]"),
        # card numbers with dots, slashes or underscores, or glued to a prefix
        ("card 4111.1111.1111.1111 ok", "card [card] ok"),
        ("card 4111/1111/1111/1111 ok", "card [card] ok"),
        ("card 4111_1111_1111_1111 ok", "card [card] ok"),
        ("ref-4111111111111111 ok", "ref-[card] ok"),
        ("card:4111.1111.1111.1111 ok", "card:[card] ok"),
        ("card4111111111111111 ok", "card[card] ok"),
        ("card 4111 1111 1111 1111 12/28 123", "card [card] 12/28 123"),
        # split over lines and tabs, non-breaking, thin and zero-width spaces, fullwidth digits
        ("my card\n4111\n1111\n1111\n1111\nthanks", "my card\n[card]\nthanks"),
        ("card 4111\t1111 \n 1111\t\t1111.", "card [card]."),
        ("card 4111\u00a01111\u202f1111\u20091111", "card [card]"),
        ("card 41\u200b11111111111111", "card [card]"),
        ("card ４１１１ １１１１ １１１１ １１１１", "card [card]"),
        # IBAN grouped with dots, underscores or slashes
        ("IBAN SE45.5000.0000.0583.9825.7466", "IBAN [iban]"),
        ("IBAN SE45_5000_0000_0583_9825_7466", "IBAN [iban]"),
        ("IBAN de89/3704/0044/0532/0130/00.", "IBAN [iban]."),
        ("pnr 81 12 18 9876", "pnr [personnummer]"),
    ],
)
def test_attack_formats_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A purchase of 1,000 EUR or 50,000 SEK at 14.9% APR",
        "pay 1 000 000 SEK, 12 500,00 kr or € 1.234,56",
        "Your payment is due 2026-12-02; the offer runs from 2027-01-01 - 2027-03-31",
        "fällig am 02.12.2026, bis 31.12.2027 (oder 02-12-2026), not 2026/12/02",
        "Open 08:00-20:00 on weekdays, 10:00-16:00 on Saturdays (9-17 CET)",
        "order 1234567, case #7654321, reference 0012345",
        "Kundnummer 1234 5678, ticket 12345678",
        "Version 3.1.4, section 4.2.1, reminder fee 2.50 EUR, 30 days, 14 days",
        "IP 192.168.100.200, 2 x 199 SEK",
        "id 550e8400-e29b-41d4-a716-446655440000 and digest deadbeef4111111111111111",
        "addresses ending in @brightloop.example are ours",
    ],
)
def test_amounts_dates_times_and_short_references_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_only_the_matched_span_changes() -> None:
    text = "Müller’s card:\u00a04111\u200b1111 1111 1111 — ﬁne, ２ items"
    assert redact(text) == "Müller’s card:\u00a0[card] — ﬁne, ２ items"


def test_personnummer_check() -> None:
    assert personnummer_valid("8112189876") and personnummer_valid("198112189876")
    assert not personnummer_valid("8112189875"), "wrong check digit"
    assert not personnummer_valid("8113189876"), "month 13"
    assert personnummer_valid("8112789873"), "samordningsnummer: day 18 + 60"
    assert not personnummer_valid("299912189876"), "born in the future"


@pytest.mark.parametrize("text", ["7" * 20_000, "a" * 20_000, "1-" * 5_000, "SE45" * 5_000, "a @ " * 5_000])
def test_long_runs_are_scanned_in_reasonable_time(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 5, "no quadratic scan of a long word or digit run"


# --- property tests ------------------------------------------------------------------------------

SEPARATORS = [" ", "-", ".", "/", "_", "\n", "\t", "\r\n", " - ", "\u00a0", "\u2009", "\u202f", "\u3000"]
SEPARATORS += ["\u200b", "\u2013", "\u2011", "\n\t", " \n "]
separator = st.sampled_from(SEPARATORS)
WORDS = ["my", "card", "number", "is", "please", "refund", "tack", "bitte", "Kontonummer", "ring", "mig", "här"]
words = st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join)
before = st.sampled_from([" ", ": ", "\n", " (", " #", "-", ":\u00a0", " - "])
after = st.sampled_from([" ", ". ", ", ", "\n", ")", "!", ""])


def _luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def _grouped(digits: str, sizes: list[int], seps: list[str]) -> str:
    """``digits`` cut into groups of ``sizes`` (cycled; the remainder joins the last group)."""
    groups, i, k = [], 0, 0
    while i < len(digits):
        size = sizes[k % len(sizes)]
        if len(digits) - (i + size) < 3:
            size = len(digits) - i
        groups.append(digits[i : i + size])
        i, k = i + size, k + 1
    return "".join(g + (seps[n % len(seps)] if n < len(groups) - 1 else "") for n, g in enumerate(groups))


def _in_text(prefix: str, glue1: str, value: str, glue2: str, suffix: str) -> str:
    return f"{prefix}{glue1}{value}{glue2}{suffix}"


@given(
    st.text("0123456789", min_size=12, max_size=18),
    st.lists(st.sampled_from([4, 4, 4, 3, 5, 6]), min_size=1, max_size=4),
    st.lists(separator, min_size=1, max_size=4),
    words,
    before,
    after,
    words,
)
@example("411111111111111", [4], ["."], "card", ":", " ", "")
@example("411111111111111", [4], ["_"], "ref", "-", "", "")
def test_card_numbers_never_survive(
    body: str, sizes: list[int], seps: list[str], prefix: str, glue1: str, glue2: str, suffix: str
) -> None:
    card = _grouped(_luhn_complete(body), sizes, seps)
    out = redact_details(_in_text(prefix, glue1, card, glue2, suffix))
    assert not any(ch.isdigit() for ch in out.text), (card, out.text)
    assert out.counts.total() == 1, out


@given(
    st.dates(date(1900, 1, 1), date(2025, 12, 31)),
    st.text("0123456789", min_size=3, max_size=3),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["", "-", "+", " ", "\u00a0", "\u2010", "\u200b", "\n"]),
    words,
    before,
    after,
    words,
)
def test_personnummer_never_survive(
    born: date,
    serial: str,
    long_form: bool,
    coordination: bool,
    sep: str,
    prefix: str,
    glue1: str,
    glue2: str,
    suffix: str,
) -> None:
    day = born.day + 60 if coordination else born.day
    short = _luhn_complete(f"{born:%y%m}{day:02d}{serial}")
    number = (f"{born:%Y}"[:2] if long_form else "") + short[:6] + sep + short[6:]
    out = redact(_in_text(prefix, glue1, number, glue2, suffix))
    assert not any(ch.isdigit() for ch in out), (number, out)


def _phone(draw: st.DrawFn) -> str:
    digits = st.text("0123456789", min_size=1, max_size=1)
    n = lambda k: "".join(draw(digits) for _ in range(k))  # noqa: E731
    sep = lambda: draw(st.sampled_from([" ", "-", ".", "/", "\u00a0", "\u2009", "\u2011", "_", ""]))  # noqa: E731
    kind = draw(st.sampled_from(["se", "se-intl", "se-no-trunk", "de", "de-mobile", "de-intl", "us", "us-paren"]))
    mobile = "7" + draw(st.sampled_from("02369"))
    if kind == "se":
        return f"0{mobile}{sep()}{n(3)}{sep()}{n(2)}{sep()}{n(2)}"
    if kind == "se-intl":
        return f"{draw(st.sampled_from(['+46', '0046', '+46 (0)']))}{draw(st.sampled_from([' ', '']))}{mobile}{sep()}{n(7)}"
    if kind == "se-no-trunk":
        first = draw(st.sampled_from([" ", "-", ".", "\u00a0"]))
        return f"{mobile}{first}{n(3)}{sep()}{n(2)}{sep()}{n(2)}"
    if kind == "de":
        return f"030{sep()}{n(draw(st.integers(7, 8)))}"
    if kind == "de-mobile":
        prefix, length = draw(st.sampled_from([("151", 8), ("160", 7), ("170", 7), ("171", 7), ("176", 8)]))
        return f"0{prefix}{sep()}{n(length)}"
    if kind == "de-intl":
        return f"+49{draw(st.sampled_from([' ', ' (0)', '']))}30{sep()}{n(8)}"
    area, exchange = draw(st.sampled_from("23456789")) + n(2), draw(st.sampled_from("23456789")) + n(2)
    nanp_sep = lambda: draw(st.sampled_from([" ", "-", ".", "\u00a0", "\u2011"]))  # noqa: E731
    if kind == "us":
        return f"{area}{nanp_sep()}{exchange}{nanp_sep()}{n(4)}"
    return f"({area}){draw(st.sampled_from([' ', '']))}{exchange}{nanp_sep()}{n(4)}"


@given(st.data(), words, before, after, words)
def test_phone_numbers_never_survive(data: st.DataObject, prefix: str, glue1: str, glue2: str, suffix: str) -> None:
    phone = data.draw(st.composite(lambda draw: _phone(draw))())
    out = redact(_in_text(prefix, glue1, phone, glue2, suffix))
    assert not any(ch.isdigit() for ch in out), (phone, out)


local = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
AT_SIGNS = ["@", "＠", "﹫", " @ ", "(at)", " (at) ", "[at]", " [at] ", "{at}"]


@given(
    st.lists(local, min_size=1, max_size=3),
    st.sampled_from([".", "_", "+", "-"]),
    st.sampled_from(AT_SIGNS),
    st.lists(local, min_size=1, max_size=2),
    st.sampled_from(["se", "de", "com", "co.uk", "example"]),
    words,
    st.sampled_from([" ", ": ", "\n", " (", " <"]),
    st.sampled_from([" ", ". ", ", ", "\n", ")", ">"]),
    words,
)
def test_email_addresses_never_survive(
    parts: list[str],
    joiner: str,
    at: str,
    labels: list[str],
    tld: str,
    prefix: str,
    glue1: str,
    glue2: str,
    suffix: str,
) -> None:
    address = joiner.join(parts) + at + ".".join(labels) + "." + tld
    out = redact(_in_text(prefix, glue1, address, glue2, suffix))
    assert out == _in_text(prefix, glue1, "[email]", glue2, suffix), (address, out)


def _iban(country: str, bban: str) -> str:
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


@given(
    st.sampled_from([("SE", "", 20), ("DE", "", 18), ("GB", "WEST", 14)]),
    st.text("0123456789", min_size=20, max_size=20),
    st.sampled_from(["", " ", "-", ".", "\u00a0", "\u200b", "\n"]),
    st.booleans(),
    words,
    before,
    after,
    words,
)
def test_ibans_never_survive(
    country: tuple[str, str, int],
    digits: str,
    sep: str,
    lower: bool,
    prefix: str,
    glue1: str,
    glue2: str,
    suffix: str,
) -> None:
    code, bank, length = country
    iban = _iban(code, bank + digits[:length])
    grouped = sep.join(iban[i : i + 4] for i in range(0, len(iban), 4))
    out = redact(_in_text(prefix, glue1, grouped.lower() if lower else grouped, glue2, suffix))
    assert not any(ch.isdigit() for ch in out), (grouped, out)


@given(
    st.dates(date(2000, 1, 1), date(2035, 12, 31)),
    st.integers(0, 9_999_999),
    st.integers(0, 2359),
    st.integers(0, 9_999_999),
    st.integers(0, 999),
    st.sampled_from(["SEK", "EUR", "kr", "€"]),
)
@example(date(2000, 1, 1), 1_020_000, 0, 0, 0, "SEK")
def test_ordinary_numbers_are_never_redacted(
    day: date, amount: int, clock: int, reference: int, rate: int, currency: str
) -> None:
    hh, mm = divmod(clock, 100)
    text = (
        f"On {day.isoformat()} ({day:%d.%m.%Y}) we charged {amount:,} {currency} ({amount:,}".replace(",", " ")
        + f".50 {currency}) at {rate / 10:.1f}%, open {hh % 24:02d}:{mm % 60:02d}-20:00, "
        f"order {reference}, case #{reference:07d}."
    )
    assert redact(text) == text


@given(st.text(max_size=200))
@example("4111111111111111 1")
@example("a@b.se.4111111111111111")
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once

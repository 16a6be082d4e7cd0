"""Redaction: personal data never reaches storage, ordinary numbers stay readable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kb.redact import iban_valid, luhn_valid, redact, redact_details


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail anna.svensson+bnpl@example.co.uk now", "Mail [email] now"),
        ("Call me on +46 70 123 45 67.", "Call me on [phone]."),
        ("ring 070-123 45 67 efter 17", "ring [phone] efter 17"),
        ("Berlin office +49 (0)30 1234567", "Berlin office [phone]"),
        ("US line (555) 123-4567 or 555-123-4567", "US line [phone] or [phone]"),
        ("Card 4111 1111 1111 1111 was charged", "Card [card] was charged"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("amex 378282246310005", "amex [card]"),
        ("IBAN SE45 5000 0000 0583 9825 7466 please", "IBAN [iban] please"),
        ("iban de89370400440532013000.", "iban [iban]."),
        ("GB82WEST12345698765432 thanks", "[iban] thanks"),
        ("pnr 811218-9876 and 19811218-9876", "pnr [personnummer] and [personnummer]"),
    ],
)
def test_personal_data_is_replaced_by_its_kind(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Returns are accepted for 30 days; the payment is paused for 20 days.",
        "Reviewed 2027-03-31, version 3.1, reminder fee 2.50 EUR, 1 500 SEK",
        "Order 123456789012 arrived broken",
        "card 4111 1111 1111 1112 (fails Luhn, so it is not a card number)",
        "reference 0012345",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_iban_shape_with_wrong_check_digits_is_not_called_an_iban() -> None:
    assert "[iban]" not in redact("DE00 3704 0044 0532 0130 00")


def test_counts_kinds_without_keeping_values() -> None:
    result = redact_details("a@b.se, 4111111111111111 and b@c.se")
    assert result.counts == {"email": 2, "card": 1}
    assert "4111" not in result.text


def test_check_digit_helpers() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("SE45 5000 0000 0583 9825 7466") and not iban_valid("SE46 5000 0000 0583 9825 7466")


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


@given(st.text(alphabet="0123456789", min_size=15, max_size=15), st.sampled_from(["", " ", "-"]))
def test_any_valid_16_digit_card_is_redacted(body: str, separator: str) -> None:
    digits = _luhn_complete(body)
    grouped = separator.join(digits[i : i + 4] for i in range(0, 16, 4))
    out = redact(f"my card is {grouped} ok")
    assert not any(ch.isdigit() for ch in out), out


@given(st.text(max_size=200))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once

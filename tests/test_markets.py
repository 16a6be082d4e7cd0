"""Quoting only the asker's market: clauses, labelled items and table rows, from hand-made text."""

from __future__ import annotations

import pytest

from assist.markets import clause_for_market, markets_in, mentioned_market, only_market, row_text

PAIRS = [
    (
        "- If the purchases add up to more than 5,000 SEK (Sweden) or 500 EUR (Germany), we'll ask for a police report.",
        "- If the purchases add up to more than 5,000 SEK (Sweden), we'll ask for a police report.",
        "- If the purchases add up to more than 500 EUR (Germany), we'll ask for a police report.",
    ),
    (
        "We'll give you notice first: 30 days in Sweden and 2 months in Germany.",
        "We'll give you notice first: 30 days in Sweden.",
        "We'll give you notice first: 2 months in Germany.",
    ),
    (
        "Call our fraud line: 010-555 20 99 in Sweden or 030 5555 2099 in Germany.",
        "Call our fraud line: 010-555 20 99 in Sweden.",
        "Call our fraud line: 030 5555 2099 in Germany.",
    ),
    (
        "We hand the debt to our agency: Nordvik Inkasso AB in Sweden or Rheinfeld GmbH in Germany.",
        "We hand the debt to our agency: Nordvik Inkasso AB in Sweden.",
        "We hand the debt to our agency: Rheinfeld GmbH in Germany.",
    ),
    (
        "Financing is limited: 1,000-50,000 SEK per purchase in SE and 100-5,000 EUR per purchase in DE.",
        "Financing is limited: 1,000-50,000 SEK per purchase in SE.",
        "Financing is limited: 100-5,000 EUR per purchase in DE.",
    ),
    (
        "You may complain: in Sweden the authority IMY, in Germany the authority of your federal state.",
        "You may complain: in Sweden the authority IMY.",
        "You may complain: in Germany the authority of your federal state.",
    ),
]


@pytest.mark.parametrize(("text", "se", "de"), PAIRS)
def test_a_parallel_clause_is_cut_to_the_askers_market(text: str, se: str, de: str) -> None:
    assert clause_for_market(text, "SE") == se
    assert clause_for_market(text, "DE") == de
    assert clause_for_market(text, None) == text, "no market known: both stay, labelled as written"


def test_text_about_one_market_only_is_dropped_for_the_other() -> None:
    assert clause_for_market("- Germany: log in with a code we send by SMS.", "SE") is None
    assert clause_for_market("- Germany: log in with a code we send by SMS.", "DE") is not None
    assert clause_for_market("In Sweden you can also read this in Swedish.", "DE") is None


@pytest.mark.parametrize(
    "text",
    [
        "This article explains what happens if a payment is late, in Sweden and in Germany.",
        "Call 112 (the same in Sweden and Germany).",
        "Payment reminders are always free.",
    ],
)
def test_text_that_is_not_market_specific_is_left_alone(text: str) -> None:
    assert clause_for_market(text, "SE") == text
    assert clause_for_market(text, "DE") == text


def test_market_columns_become_one_line_for_the_market() -> None:
    row = "| What happens | Sweden | Germany |\n| First late fee | 60 SEK, 10 days late | 2.50 EUR, 7 days late |"
    assert row_text(row, "SE") == "First late fee: 60 SEK, 10 days late (Sweden)"
    assert row_text(row, "DE") == "First late fee: 2.50 EUR, 7 days late (Germany)"
    both = row_text(row, None)
    assert both == "First late fee — Sweden: 60 SEK, 10 days late; Germany: 2.50 EUR, 7 days late"
    assert "|" not in both
    # Asked from a market the table has no column for: nothing in it is that market's rule.
    assert row_text(row, "DK") is None


def test_a_row_for_another_market_is_dropped() -> None:
    row = "| Market | Initial pause | Maximum |\n| SE | 21 days | 42 days |"
    assert row_text(row, "DE") is None
    assert row_text(row, "SE") == "Sweden — Initial pause: 21 days; Maximum: 42 days"


def test_a_row_without_markets_reads_as_header_value_pairs() -> None:
    assert row_text("| Score | Grade |\n| 80-89 | Good |", "SE") == "Score: 80-89; Grade: Good"


def test_markets_named_in_questions_and_texts() -> None:
    assert mentioned_market("and what if I live in Germany?") == "DE"
    assert mentioned_market("jag bor i Sverige") == "SE"
    assert mentioned_market("how long do I have?") is None
    assert mentioned_market("SE") == "SE" and mentioned_market("de.") == "DE"
    assert mentioned_market("no") is None, "a bare 'no' is an answer, not Norway"
    assert only_market("Are you in Sweden or Germany?") is None and only_market("and in Germany?") == "DE"
    assert markets_in("60 SEK or 2.50 EUR") == {"SE", "DE"}

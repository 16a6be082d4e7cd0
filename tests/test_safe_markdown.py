"""What the customer chat may render: images never, HTML never, links only to allowed domains."""

from __future__ import annotations

import re

import pytest

from kb.settings import Settings
from webui.safe_markdown import link_allowed, parse_domains, safe_markdown

ALLOWED = ("example.com",)


def test_images_become_their_alt_text_and_nothing_is_fetched() -> None:
    text = "Before ![tracking pixel](https://evil.test/p.gif?id=1) after ![](https://example.com/logo.png)"
    assert safe_markdown(text, ALLOWED) == "Before tracking pixel after "
    assert "](" not in safe_markdown("![x][pix]\n\n[pix]: https://evil.test/p.gif\n", ALLOWED)
    assert safe_markdown('![a "b"](https://evil.test/p.gif "title")') == 'a "b"'


def test_links_render_only_to_allowed_domains_and_their_subdomains() -> None:
    assert safe_markdown("See [returns](https://help.example.com/returns).", ALLOWED) == (
        "See [returns](<https://help.example.com/returns>)."
    )
    assert safe_markdown("See [returns](https://example.com).", ALLOWED) == "See [returns](<https://example.com>)."
    for url in (
        "https://evil.test/returns",
        "https://example.com.evil.test/",
        "https://notexample.com/",
        "https://example.com@evil.test/",
        "javascript:alert(1)",
        "/relative/path",
        "ftp://example.com/file",
    ):
        assert safe_markdown(f"See [returns]({url}).", ALLOWED) == "See returns.", url


def test_without_allowed_domains_every_link_is_plain_text() -> None:
    assert safe_markdown("[help](https://example.com/help) and [ref][r]\n[r]: https://example.com\n") == (
        "help and ref\n"
    )
    assert Settings().customer_link_domains == ()


def test_reference_links_follow_the_same_rule() -> None:
    text = "Read [the policy][p] or [that][q].\n\n[p]: https://www.example.com/policy\n[q]: https://evil.test\n"
    assert safe_markdown(text, ALLOWED) == "Read [the policy](<https://www.example.com/policy>) or that.\n\n"


def test_bare_urls_and_addresses_outside_the_allowed_domains_are_not_links() -> None:
    text = "Go to https://evil.test/x, www.evil.test or mail bad@evil.test; https://example.com/ok is fine."
    assert safe_markdown(text, ALLOWED) == (
        "Go to `https://evil.test/x`, `www.evil.test` or mail `bad@evil.test`; https://example.com/ok is fine."
    )


def test_raw_html_is_escaped_and_shown_as_written() -> None:
    text = '<img src="https://evil.test/p.gif"> <script>alert(1)</script> Fish & chips'
    assert safe_markdown(text) == (
        '&lt;img src="`https://evil.test/p.gif`"> &lt;script>alert(1)&lt;/script> Fish &amp; chips'
    )
    assert safe_markdown("<https://evil.test>") == "&lt;`https://evil.test`>"


def test_dollar_amounts_do_not_start_maths() -> None:
    assert safe_markdown("It costs $5 or $10.") == "It costs \\$5 or \\$10."


def test_code_is_kept_as_written() -> None:
    text = "Use `<b>` here.\n```\n<html> ![x](https://evil.test/p.gif)\n```\nAfter <i>\n"
    assert safe_markdown(text) == "Use `<b>` here.\n```\n<html> ![x](https://evil.test/p.gif)\n```\nAfter &lt;i>\n"


def test_ordinary_answers_are_unchanged() -> None:
    text = "You can return an item within **30 days** of delivery. [1]\n\n1. Pack it\n2. Send it [2]"
    assert safe_markdown(text, ALLOWED) == text
    # Redaction placeholders and citations stay readable.
    assert safe_markdown("Mail me at [email] [1]") == "Mail me at [email] [1]"


def test_leftover_link_syntax_cannot_form_a_link() -> None:
    # A URL the parser does not take apart (spaces) is not left behind as a working link either.
    out = safe_markdown("[x](https://evil.test/a b)")
    assert re.search(r"(?<!\\)\]\(", out) is None and out.startswith("[x\\](")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ()), (" Example.com, help.example.org ,", ("example.com", "help.example.org")), ("a.se,a.se", ("a.se",))],
)
def test_domains_setting_is_comma_separated(value: str, expected: tuple[str, ...], monkeypatch) -> None:
    assert parse_domains(value) == expected
    monkeypatch.setenv("KBASSIST_CUSTOMER_LINK_DOMAINS", value)
    assert Settings().customer_link_domains == expected


def test_mailto_links_count_by_the_address_domain() -> None:
    assert link_allowed("mailto:support@example.com", ALLOWED)
    assert not link_allowed("mailto:support@evil.test", ALLOWED)
    assert link_allowed("support@help.example.com", ALLOWED)

"""The assistant's own words follow the asker's language; quoted text stays the document's."""

from __future__ import annotations

from pathlib import Path

import pytest

from assist.phrases import CUSTOMER_REFUSALS, customer_refusal, is_refusal, related_articles, source_language_note
from assist.service import Assistant
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore
from webui.customer_texts import TEXTS, chat_language, text

RETURNS_DE = """---
title: Rückgabe und Erstattung
audience: customer
market: DE
language: de
---
# Rückgabe und Erstattung

## So melden Sie eine Rücksendung

Öffnen Sie die Brightloop-App und tippen Sie auf „Retoure melden". Ihre Zahlung wird für 28 Tage
pausiert, während der Händler die Rücksendung bearbeitet.
"""
FEES_EN = """---
title: Late fees
audience: customer
market: ALL
language: en
---
# Late fees

## How much is the late fee?

The late fee is 60 SEK in Sweden, charged 10 days after the due date.
"""


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    root = tmp_path_factory.mktemp("languages")
    docs = root / "docs"
    docs.mkdir()
    (docs / "rueckgabe-de.md").write_text(RETURNS_DE, encoding="utf-8")
    (docs / "late-fees.md").write_text(FEES_EN, encoding="utf-8")
    store = KnowledgeStore(Settings(data_dir=root / "data"))
    assert ingest([docs], store).ok
    return Assistant(store)


def test_note_only_when_every_cited_article_is_in_another_language() -> None:
    assert source_language_note("de", ["en"]) == "Das stammt aus unserem englischen Hilfeartikel:"
    assert source_language_note("sv", ["en"]) == "Det här kommer från vår engelska hjälpartikel:"
    assert source_language_note("en", ["de"]) == "This is from our German help article:"
    assert source_language_note("en", ["de", "sv"]) == "This is from our help articles in German and Swedish:"
    assert source_language_note("de", ["de", "en"]) == ""  # one of them is in the asker's language
    assert source_language_note("en", ["en"]) == ""
    assert source_language_note("en", [""]) == ""  # a document of unknown language says nothing
    assert source_language_note("fi", ["en"]) == "This is from our English help article:"  # said in English


def test_refusals_vary_and_are_recognised_in_every_language() -> None:
    for language, texts in CUSTOMER_REFUSALS.items():
        said = [customer_refusal(language, n) for n in range(len(texts))]
        assert len(set(said)) == len(texts), language
        assert all(is_refusal(t) for t in said)
        assert is_refusal(related_articles(language, [("Late fees", "Late fees > How much", 1)]))
    assert customer_refusal("fi") == CUSTOMER_REFUSALS["en"][0]
    assert not is_refusal("The late fee is 60 SEK.")


def test_german_question_refused_in_german(assistant: Assistant) -> None:
    answer = assistant.ask("Kann ich mit Bitcoin bei einem Flohmarkt bezahlen?", role="customer", market="DE")
    assert answer.refused
    assert answer.text in CUSTOMER_REFUSALS["de"] or answer.text.startswith("Ich bin nicht sicher")
    assert answer.handoff is not None and answer.handoff.language == "de"


def test_answer_from_another_language_says_so_and_cites_its_language(demo_store: KnowledgeStore) -> None:
    answer = Assistant(demo_store).ask("What does Retoure melden mean in the Brightloop app?", role="customer", market="DE")
    assert not answer.refused, answer.text
    assert {c.language for c in answer.citations} == {"de"}
    assert answer.text.startswith("This is from our German help article:\n\n")
    assert "28 Tage" in answer.text  # quoted in the document's own words


def test_same_language_answer_has_no_note(assistant: Assistant) -> None:
    answer = assistant.ask("How much is the late fee in Sweden?", role="customer", market="SE")
    assert not answer.refused and "60 SEK" in answer.text
    assert answer.citations[0].language == "en"
    assert not answer.text.startswith("This is from")


def test_chat_speaks_the_latest_message_language_else_the_browser() -> None:
    assert chat_language([], "de-DE") == "de"
    assert chat_language([], "sv_SE") == "sv"
    assert chat_language([], None) == "en"
    assert chat_language([], "fi-FI") == "en"
    assert chat_language(["Hur mycket är påminnelseavgiften?"], "de-DE") == "sv"
    assert chat_language(["Wie hoch ist die Mahngebühr?", ""], "en-US") == "de"


def test_chat_texts_exist_in_every_language_and_configured_texts_win() -> None:
    for key, options in TEXTS.items():
        assert set(options) == {"en", "de", "sv"}, key
        assert len(set(options.values())) == 3, key  # really translated
    default = Settings().customer_greeting
    assert text("greeting", "de", default) == TEXTS["greeting"]["de"]
    assert text("greeting", "de", "Välkommen till Acme!") == "Välkommen till Acme!"


def test_fixed_texts_fit_the_settings_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert TEXTS["greeting"]["en"] == settings.customer_greeting
    assert TEXTS["handoff_next_steps"]["en"] == settings.handoff_next_steps

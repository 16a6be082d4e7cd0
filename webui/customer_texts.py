"""The customer chat's own words (buttons, prompts, greeting), in English, German and Swedish.

The chat speaks the customer's language: the language of their latest message, or before they
have written anything, their browser's. A text the operator configured (greeting, hand-off
promise) is theirs to word and is shown as configured; only the built-in defaults are translated.
"""

from __future__ import annotations

from assist.phrases import speaks
from assist.terms import detect_language
from kb.settings import Settings

TEXTS: dict[str, dict[str, str]] = {
    "greeting": {
        "en": Settings.model_fields["customer_greeting"].default,
        "de": "Hallo! Fragen Sie mich alles zu Ihren Einkäufen, Zahlungen, Rücksendungen oder Ihrem Konto.",
        "sv": "Hej! Fråga mig om dina köp, betalningar, returer eller ditt konto.",
    },
    "handoff_next_steps": {
        "en": Settings.model_fields["handoff_next_steps"].default,
        "de": "Eine Person aus unserem Support-Team meldet sich bei Ihnen. Sie sieht dieses Gespräch, "
        "Sie müssen also nichts wiederholen.",
        "sv": "Någon i vårt supportteam hör av sig till dig. De ser det här samtalet, "
        "så du behöver inte upprepa dig.",
    },
    "your_country": {"en": "Your country", "de": "Ihr Land", "sv": "Ditt land"},
    "choose_country": {"en": "Choose your country", "de": "Land auswählen", "sv": "Välj ditt land"},
    "ask_market": {
        "en": "Which country are you in? Our rules (return windows, fees, payment options) differ by country.",
        "de": "In welchem Land sind Sie? Unsere Regeln (Rückgabefristen, Gebühren, Zahlungsarten) "
        "unterscheiden sich je nach Land.",
        "sv": "Vilket land är du i? Våra regler (returtider, avgifter, betalsätt) skiljer sig mellan länder.",
    },
    "type_question": {"en": "Type your question", "de": "Ihre Frage", "sv": "Skriv din fråga"},
    "talk_to_person": {"en": "Talk to a person", "de": "Mit einer Person sprechen", "sv": "Prata med en person"},
    "yes_talk_to_person": {
        "en": "Yes, talk to a person",
        "de": "Ja, mit einer Person sprechen",
        "sv": "Ja, prata med en person",
    },
    "contact_ask": {
        "en": "Before I pass this on: how can our team reach you? This is optional.",
        "de": "Bevor ich das weitergebe: Wie kann unser Team Sie erreichen? Das ist freiwillig.",
        "sv": "Innan jag skickar det vidare: hur kan vårt team nå dig? Det är frivilligt.",
    },
    "consent": {
        "en": "You may contact me about this question. We'll use this only to answer this question.",
        "de": "Sie dürfen mich zu dieser Frage kontaktieren. Wir verwenden die Angabe nur, um diese Frage "
        "zu beantworten.",
        "sv": "Ni får kontakta mig om den här frågan. Vi använder uppgiften bara för att svara på den här frågan.",
    },
    "back_to_chat": {"en": "Back to the chat", "de": "Zurück zum Chat", "sv": "Tillbaka till chatten"},
    "pass_to_person": {"en": "Pass to a person", "de": "An eine Person weitergeben", "sv": "Skicka till en person"},
    "new_conversation": {
        "en": "Start a new conversation",
        "de": "Neues Gespräch beginnen",
        "sv": "Starta ett nytt samtal",
    },
}


def chat_language(messages: list[str], locale: str | None) -> str:
    """The language the chat speaks: of the customer's latest message, else of the browser."""
    for message in reversed(messages):
        if message.strip():
            return speaks(detect_language(message))
    return speaks((locale or "en").split("-")[0].split("_")[0].lower())


def text(key: str, language: str, configured: str | None = None) -> str:
    """The chat's ``key`` text in ``language``; a value the operator changed from the default as configured."""
    options = TEXTS[key]
    if configured is not None and configured != options["en"]:
        return configured
    return options.get(speaks(language), options["en"])

"""The fixed sentences the assistant says to a customer, in each language it speaks.

A customer who writes in German or Swedish should not be refused, or told where an answer comes
from, in English. Everything quoted from a document stays in the document's words; only these
fixed sentences are chosen by the asker's language (``en`` whenever the language has none).
"""

from __future__ import annotations

from collections.abc import Sequence

LANGUAGES = ("en", "de", "sv")

# Said in turn, so a customer refused twice does not read the same sentence twice.
CUSTOMER_REFUSALS: dict[str, tuple[str, ...]] = {
    "en": (
        "I'm sorry, I couldn't find an answer to that in our help articles, and I don't want to guess. "
        "Would you like to talk to a person? I can pass your question on to our support team.",
        "I still can't find that in our help articles, so I'd rather not guess. "
        "A person from our support team can look at it with you: shall I pass it on?",
        "That one isn't covered in our help articles either. The quickest way to an answer is a person "
        "from our support team; they will see this conversation.",
    ),
    "de": (
        "Das tut mir leid, dazu habe ich in unseren Hilfeartikeln keine Antwort gefunden, und ich möchte "
        "nicht raten. Möchten Sie mit einer Person sprechen? Ich kann Ihre Frage an unser Support-Team weitergeben.",
        "Auch dazu finde ich in unseren Hilfeartikeln nichts, deshalb rate ich lieber nicht. "
        "Eine Person aus unserem Support-Team kann sich das mit Ihnen ansehen: Soll ich die Frage weitergeben?",
        "Auch das steht nicht in unseren Hilfeartikeln. Am schnellsten hilft Ihnen eine Person aus unserem "
        "Support-Team; sie sieht dieses Gespräch.",
    ),
    "sv": (
        "Tyvärr hittade jag inget svar på det i våra hjälpartiklar, och jag vill inte gissa. "
        "Vill du prata med en person? Jag kan skicka din fråga vidare till vårt supportteam.",
        "Jag hittar inte heller det i våra hjälpartiklar, så jag gissar hellre inte. "
        "En person i vårt supportteam kan titta på det med dig: ska jag skicka det vidare?",
        "Det står inte heller i våra hjälpartiklar. Snabbast till ett svar är en person i vårt "
        "supportteam; de ser det här samtalet.",
    ),
}
RELATED_INTRO = {
    "en": "I'm not sure I found the exact answer, but these help articles look related:",
    "de": "Ich bin nicht sicher, ob ich genau die Antwort gefunden habe, aber diese Hilfeartikel scheinen passend:",
    "sv": "Jag är inte säker på att jag hittade exakt rätt svar, men de här hjälpartiklarna verkar höra ihop med det:",
}
RELATED_OUTRO = {
    "en": "Did one of them help? If not, I can pass your question to a person on our support team.",
    "de": "Hat einer davon geholfen? Wenn nicht, gebe ich Ihre Frage an eine Person aus unserem Support-Team weiter.",
    "sv": "Hjälpte någon av dem? Annars kan jag skicka din fråga vidare till en person i vårt supportteam.",
}
# One line before an answer quoted from a document in another language than the question's.
_LANGUAGE_NAMES = {
    "en": {"en": "English", "de": "German", "sv": "Swedish"},
    "de": {"en": "englischen", "de": "deutschen", "sv": "schwedischen"},
    "sv": {"en": "engelska", "de": "tyska", "sv": "svenska"},
}
_FROM_ARTICLE = {
    "en": "This is from our {language} help article:",
    "de": "Das stammt aus unserem {language} Hilfeartikel:",
    "sv": "Det här kommer från vår {language} hjälpartikel:",
}
_FROM_ARTICLES = {
    "en": "This is from our help articles in {language}:",
    "de": "Das stammt aus unseren Hilfeartikeln auf {language}:",
    "sv": "Det här kommer från våra hjälpartiklar på {language}:",
}
_LANGUAGES_AS_OBJECT = {  # "in English" / "auf Englisch" / "på engelska"
    "en": {"en": "English", "de": "German", "sv": "Swedish"},
    "de": {"en": "Englisch", "de": "Deutsch", "sv": "Schwedisch"},
    "sv": {"en": "engelska", "de": "tyska", "sv": "svenska"},
}
_AND = {"en": "and", "de": "und", "sv": "och"}


def speaks(language: str) -> str:
    """``language`` if the fixed sentences exist in it, else English."""
    return language if language in LANGUAGES else "en"


def customer_refusal(language: str, earlier_refusals: int = 0) -> str:
    """The refusal for a customer, varied by how many refusals the conversation already had."""
    texts = CUSTOMER_REFUSALS[speaks(language)]
    return texts[earlier_refusals % len(texts)]


def related_articles(language: str, articles: Sequence[tuple[str, str, int]]) -> str:
    """The "these articles look related" reply: one line per (title, section, citation number)."""
    lang = speaks(language)
    lines = [
        f"- {title}" + (f" — {section.rsplit('>', 1)[-1].strip()}" if section else "") + f" [{number}]"
        for title, section, number in articles
    ]
    return "\n".join([RELATED_INTRO[lang], *lines, RELATED_OUTRO[lang]])


def is_refusal(text: str) -> bool:
    """Whether an earlier assistant turn was one of the refusals, in any language."""
    openings = [t[:40] for texts in CUSTOMER_REFUSALS.values() for t in texts]
    openings += [t[:20] for t in RELATED_INTRO.values()]
    return text.startswith(tuple(openings))


def source_language_note(asked_in: str, document_languages: list[str]) -> str:
    """The line saying an answer is quoted from another language's article; empty when none is.

    Said only when every cited document is in another language than the question's: an answer
    that also quotes an article in the asker's own language needs no warning.
    """
    lang = speaks(asked_in)
    others = [d for d in dict.fromkeys(document_languages) if d]
    if not others or asked_in in others or any(d not in LANGUAGES for d in others):
        return ""
    if len(others) == 1:
        return _FROM_ARTICLE[lang].format(language=_LANGUAGE_NAMES[lang][others[0]])
    names = [_LANGUAGES_AS_OBJECT[lang][d] for d in others]
    joined = ", ".join(names[:-1]) + f" {_AND[lang]} " + names[-1]
    return _FROM_ARTICLES[lang].format(language=joined)

"""Reading messages: focus, parts, follow-ups and spelling, against a real index of hand-made chunks."""

from __future__ import annotations

import pytest

from assist.chunk_index import ChunkIndex
from assist.understanding import Turn, focus, is_question, sentences, split_questions, understand

CHUNKS = {
    "late:0": "Late fees\n\nThe first late fee is 60 SEK, charged 10 days after the due date.",
    "late:1": "Late fees\n\nIf the fee was our mistake, contact us in the app chat and we will remove it.",
    "returns:0": "Returns\n\nYou can return an item within 30 days. Report the return in the app to pause your payment.",
    "returns:1": "Return shipping\n\nBrightloop doesn't refund return shipping costs.",
    "card:0": "Card declined\n\nYour card can be declined when a purchase is above your spending limit or the card is frozen.",
    "verify:0": "Verify your identity\n\nIf you don't verify within 14 days, your account is blocked for new purchases.",
}


@pytest.fixture(scope="module")
def index() -> ChunkIndex:
    ids = list(CHUNKS)
    return ChunkIndex.build(ids, [CHUNKS[i] for i in ids], [{"doc_id": i.split(":")[0], "language": "en"} for i in ids])


def test_sentences_end_at_punctuation_runs_and_new_lines() -> None:
    assert sentences("THIS IS RIDICULOUS. I paid 3 days late?? I want it removed!!\nThanks") == [
        "THIS IS RIDICULOUS.",
        "I paid 3 days late??",
        "I want it removed!!",
        "Thanks",
    ]


@pytest.mark.parametrize(
    ("sentence", "asks"),
    [
        ("how long do I have", True),
        ("Is there a fee?", True),
        ("Tell me how to return it", True),
        ("I want it removed.", True),
        ("Wie lange habe ich Zeit", True),
        ("Hur länge har jag", True),
        ("My mum had a fall two weeks ago.", False),
        ("Love the app btw.", False),
    ],
)
def test_questions_and_requests_are_told_from_statements(sentence: str, asks: bool) -> None:
    language = "de" if sentence.startswith("Wie") else "sv" if sentence.startswith("Hur") else "en"
    assert is_question(sentence, language) is asks


def test_focus_drops_the_story_and_keeps_what_the_question_leans_on(index: ChunkIndex) -> None:
    message = (
        "Hiya!! Love the app btw, the colours are so cute. My card got declined at the supermarket. "
        "WHY does this happen??"
    )
    focused, asked, dropped = focus(message, "en", index)
    assert focused == "My card got declined at the supermarket. WHY does this happen??"
    assert asked == ["WHY does this happen??"]
    assert dropped == 2


def test_two_questions_in_one_sentence_become_two_parts(index: ChunkIndex) -> None:
    parts = split_questions(["how long do i have to return stuff and does brightloop refund return shipping?"], "en", index)
    assert parts == ["how long do i have to return stuff", "does brightloop refund return shipping?"]
    alone = split_questions(["how do I return it and what do I do then?"], "en", index)
    assert len(alone) == 1, "a half that names nothing stays with the question before it"


def test_spelling_is_corrected_only_for_words_neither_the_kb_nor_everyday_language_has(index: ChunkIndex) -> None:
    understood = understand("wat happen if i dont verfy my id when the app ask", [], index)
    assert understood.corrected.get("verfy") == "verify"
    shop = understand("I bought shoes in a shop and want to return them", [], index)
    assert "shoes" not in shop.corrected and "shop" not in shop.corrected


def test_support_shorthand_is_written_out_and_a_fix_must_look_like_what_was_typed(index: ChunkIndex) -> None:
    understood = understand("SE cust owes 2,400 SEK, can she get the late fee removed?", [], index)
    assert understood.corrected.get("cust") == "customer", "not the knowledge base's nearest word, 'cost'"
    assert "customer owes" in understood.query
    swedish = ChunkIndex.build(["chat:0"], ["Kontakt\n\nSkriv till oss i chatten i appen."], [{"doc_id": "chat", "language": "sv"}])
    assert "chatbot" not in understand("Don't fob me off with a chatbot", [], swedish).corrected


def test_a_bare_market_code_answers_which_country_and_the_question_itself_names_none(index: ChunkIndex) -> None:
    turns = [
        Turn("user", "what is the late fee?"),
        Turn("assistant", "That depends on where you live. Are you in Sweden or Germany?"),
    ]
    assert understand("SE", turns, index).market == "SE"
    assert understand("ok", turns, index).market is None, "the assistant's question names both markets"


def test_a_bare_reply_is_read_with_the_assistants_question(index: ChunkIndex) -> None:
    turns = [
        Turn("user", "how long do I have to return an item?"),
        Turn("assistant", "That depends on where you live. Are you in Sweden or Germany?"),
    ]
    understood = understand("sweden", turns, index)
    assert understood.follow_up and understood.market == "SE"
    assert understood.query.startswith("how long do I have to return an item?")
    assert "Are you in Sweden or Germany?" in understood.query


@pytest.mark.parametrize(
    "message",
    [
        "yes", "ok and how long does that take?", "and for germany", "the second one",
        "she had one waived in march already", "i bought them on monday and it's thursday now",
    ],
)
def test_short_messages_after_a_turn_are_follow_ups(index: ChunkIndex, message: str) -> None:
    turns = [Turn("user", "what is the late fee?"), Turn("assistant", "The first late fee is 60 SEK. [1]")]
    assert understand(message, turns, index).follow_up


def test_a_message_that_stands_alone_is_not_a_follow_up(index: ChunkIndex) -> None:
    turns = [Turn("user", "what is the late fee?"), Turn("assistant", "The first late fee is 60 SEK. [1]")]
    understood = understand("How many days do I have to return an item and pause my payment?", turns, index)
    assert not understood.follow_up
    assert understood.query.startswith("How many days do I have to return")
    assert not understand("what is the late fee?", [], index).follow_up, "no conversation, no follow-up"

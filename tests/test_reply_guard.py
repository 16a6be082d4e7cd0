"""The reply guard on hand-made model replies: what is shown, what is refused, what streams."""

from __future__ import annotations

import pytest

from assist.reply_guard import (
    FILLER,
    MAX_REWRITE_CHARS,
    ReplyKind,
    StreamGate,
    check_reply,
    check_rewrite,
    fallback_for,
    holds_refusal,
    is_substantive,
    validate_citations,
)
from tests.support.chat_server import FAILURE_REPLIES

QUESTION = "How many days do I have to return an item?"


@pytest.mark.parametrize(
    "reply",
    [
        "NO_ANSWER",
        "NO_ANSWER.",
        "[1] [2] [3] [4] [5] NO_ANSWER",
        "no_answer [2]",
        "No_Answer",
        "[NO_ANSWER]",
        "(NO_ANSWER)",
        "**NO\\_ANSWER**",
        "`NO_ANSWER`",
        "NO-ANSWER",
        "NOANSWER",
        "NO ANSWER",
        "You can return an item within 30 days [1]. NO_ANSWER",
        "NO_ANSWER\n\nYou can return an item within 30 days [1].",
    ],
)
def test_the_refusal_token_anywhere_is_a_refusal(reply: str) -> None:
    assert check_reply(reply, 3, QUESTION).kind is ReplyKind.REFUSAL


def test_no_answer_in_policy_prose_is_not_the_refusal_token() -> None:
    assert not holds_refusal("If the customer gives no answer within 14 days, close the case [1].")
    assert not holds_refusal("NO_ANSWERS_TABLE") and not holds_refusal("casino_answer")


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   \n ",
        "[1][2]",
        "[1] [2] [3].",
        "[1, 2]",
        "The passages say: [7]",
        "See [1].",
        "The answer is in passage [2].",
        "Sure! [1]",
        "Please refer to the provided passages [1] [3].",
        "Passages: <passage id=\"1\" title=\"Returns in Sweden\"> [1]",
        "‹passage id=\"1\" title=\"Returns\"› [1]",
        "Question: How many days do I have to return an item? [1]",
        "How many days do I have to return an item [1]",
        "... — ! [1]",
    ],
)
def test_replies_without_substance(reply: str) -> None:
    assert check_reply(reply, 3, QUESTION).kind is ReplyKind.NO_SUBSTANCE


@pytest.mark.parametrize(
    "reply",
    [
        "You can return an item within 90 days.",
        "I don't know.",
        "You can return an item within 30 days [9].",
    ],
)
def test_substantive_replies_that_cite_no_given_passage_are_uncited(reply: str) -> None:
    assert check_reply(reply, 3, QUESTION).kind is ReplyKind.UNCITED


def test_an_ok_reply_is_cleaned_and_renumbered() -> None:
    check = check_reply("You have 30 days [3]. The store must accept it first [9] [1].", 3, QUESTION)
    assert check.ok and check.reason == ""
    assert check.text == "You have 30 days [1]. The store must accept it first [2]."
    assert check.cited == [3, 1]
    assert check.flags == ["removed citation [9]: no such passage in the context"]


def test_short_real_answers_are_substantive() -> None:
    assert check_reply("30 days [1].", 1, QUESTION).ok
    assert check_reply("Yes [1].", 1, "Can I return an item?").ok
    assert check_reply("You can return it within 30 days [1, 2].", 2, QUESTION).cited == [1, 2]
    assert is_substantive("How many days? Thirty [1].", QUESTION), "more than an echo of the question"


def test_every_scripted_failure_reply_is_rejected() -> None:
    """The chat server's failure replies (used by the service tests) each fail the guard."""
    for name, reply in FAILURE_REPLIES.items():
        assert not check_reply(reply, 3, QUESTION).ok, name


def test_each_rejection_has_a_plain_reason_and_a_fallback_per_role() -> None:
    reasons = {kind: check_reply(reply, 3, QUESTION).reason for kind, reply in
               [(ReplyKind.REFUSAL, "NO_ANSWER"), (ReplyKind.NO_SUBSTANCE, "[1]"), (ReplyKind.UNCITED, "Ninety days.")]}
    assert reasons == {
        ReplyKind.REFUSAL: "model reply declined to answer (NO_ANSWER)",
        ReplyKind.NO_SUBSTANCE: "model reply had no substantive text",
        ReplyKind.UNCITED: "model reply cited no passage it was given",
    }
    assert fallback_for("customer") == "refuse"
    assert fallback_for("agent") == fallback_for("internal") == "extractive"


def test_validate_citations_only_removes_citations() -> None:
    text, cited, flags = validate_citations("A [2]. B [5]. C [1] [2].", 3)
    assert text == "A [2]. B. C [1] [2]." and cited == [2, 1]
    assert flags == ["removed citation [5]: no such passage in the context"]
    assert validate_citations("No citation here.", 3) == ("No citation here.", [], [])


def test_filler_words_are_lower_case_single_words() -> None:
    assert all(word == word.lower() and word.isalpha() for word in FILLER)


def stream(reply: str, *, hold_all: bool, pieces: int = 3) -> tuple[list[str], object]:
    shown: list[str] = []
    gate = StreamGate(shown.append, hold_all=hold_all, n_passages=3, question=QUESTION)
    for i in range(0, len(reply), pieces):
        gate.feed(reply[i : i + pieces])
    check = check_reply(reply, 3, QUESTION)
    gate.finish(check)
    return shown, check


def test_a_customer_stream_holds_everything_until_the_reply_is_checked() -> None:
    good = "You can return an item within 30 days [2]. The store must accept it first [2]."
    shown, check = stream(good, hold_all=True)
    assert shown == [check.text] == ["You can return an item within 30 days [1]. The store must accept it first [1]."]
    for reply in FAILURE_REPLIES.values():
        assert stream(reply, hold_all=True)[0] == [], reply


def test_an_agent_stream_passes_on_only_checked_sentences() -> None:
    good = "1. Verify the identity [1].\n2. Pause the invoice for 21 days [2].\n3. Open the case [9] [1]."
    shown, check = stream(good, hold_all=False)
    assert len(shown) >= 2 and "".join(shown) == check.text, "streamed in pieces, adding up to the answer"
    assert "[9]" not in "".join(shown)
    for reply in FAILURE_REPLIES.values():
        streamed = "".join(stream(reply, hold_all=False)[0])
        assert not holds_refusal(streamed) and "NO" not in streamed, reply
        assert streamed == "" or check_reply(streamed, 3, QUESTION).ok, reply


def test_an_agent_stream_stops_at_a_refusal_token_split_across_tokens() -> None:
    reply = "You can return an item within 30 days [1]. Then NO_ANSWER and more text [1]."
    for size in (1, 2, 3, 5, 8):
        streamed = "".join(stream(reply, hold_all=False, pieces=size)[0])
        assert streamed in ("", "You can return an item within 30 days [1]."), (size, streamed)


def test_no_callback_means_nothing_is_streamed() -> None:
    gate = StreamGate(None, hold_all=False, n_passages=1)
    gate.feed("Thirty days [1]. ")
    gate.finish(check_reply("Thirty days [1].", 1))  # nothing to call, nothing raised


@pytest.mark.parametrize(
    ("reply", "query"),
    [
        ("How many days do I have to return an item in Germany?", "How many days do I have to return an item in Germany?"),
        ('"return window Germany"', "return window Germany"),
        ("Query: return window in Germany", "return window in Germany"),
        ("Standalone search query: return window in Germany?", "return window in Germany?"),
        ("rewritten: and in Germany?", "rewritten: and in Germany?"),
    ],
)
def test_usable_rewrites(reply: str, query: str) -> None:
    history = "user: How many days do I have to return an item in Sweden?"
    assert check_rewrite(reply, "and in Germany?", history) == (query, "")


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("", "empty"),
        ('  ""  ', "empty"),
        ("NO_ANSWER", "holds the refusal token"),
        ("return window Germany [1] NO_ANSWER", "holds the refusal token"),
        ("Germany " * 60, f"{len(('Germany ' * 60).strip())} characters long"),
        ("Returns are accepted within 14 days [1]", "an answer, not a query"),
        ("Returns in Germany. The window is 14 days.", "an answer, not a query"),
        ("Return window in Germany?\nAlso Sweden?", "an answer, not a query"),
        ("Sure! Return window in Germany?", "an answer or chatter, not a query"),
        ("You can return it within 14 days in Germany", "an answer or chatter, not a query"),
        ("I'm sorry, I can't rewrite that.", "an answer or chatter, not a query"),
        ("What is the weather like on Mars?", "shares no word with the conversation"),
    ],
)
def test_unusable_rewrites_say_why(reply: str, why: str) -> None:
    history = "user: How many days do I have to return an item in Sweden?"
    assert check_rewrite(reply, "and in Germany?", history) == (None, why)
    assert len(reply.strip()) <= MAX_REWRITE_CHARS or why.endswith("characters long")

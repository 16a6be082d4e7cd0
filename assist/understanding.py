"""What a message asks: its question sentences, its parts, and what it means after earlier turns.

Real messages bury the question ("My mum had a fall… so I forgot my invoice. What happens now?"),
carry anger and chatter ("THIS IS RIDICULOUS"), misspell ("hw long is paus"), ask two things at
once, or only make sense after the assistant's last turn ("yes", "sweden", "and how long does
that take?"). Searching with the raw text lets the noise outvote the question. This module turns
a message into :class:`Understood`:

- ``focus``: the sentences that ask something, with the context they lean on; chatter and
  sentences with nothing the knowledge base speaks about are dropped;
- ``parts``: one query per distinct question when the message asks several;
- follow-ups resolved from the last user *and assistant* turns: a short or topic-less message
  is read together with what was asked before and with the assistant's clarifying question,
  whatever words it starts with;
- spelling: words the knowledge base never uses, and that are not everyday words of the
  message's language either, are matched to the words the knowledge base does use.

Everything is decided against the vocabulary of the index the asker may read (``Vocabulary``),
so "what counts as on topic" follows the knowledge base, not a word list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from assist.markets import mentioned_market, only_market
from assist.terms import detect_language, is_common_word, term_pairs

# Sentence ends in a chat message: punctuation runs ("?!!"), new lines, or an emoji before a capital.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")
_QUESTION_OPENERS = {
    "en": "how what when where which who whom whose why can could do does did is are was were will would should "
    "shall may might must am have has any anything".split(),
    "de": "wie was wann wo wohin woher warum weshalb wieso welche welcher welches wer kann können darf dürfen muss "
    "müssen soll sollte ist sind gibt habe hat wird werden".split(),
    "sv": "hur vad när var vart varför vilken vilket vilka vem kan får måste ska skulle är har finns blir".split(),
}
# Requests phrased as statements: "tell me", "I want to know", "I need to close my account".
_REQUEST = re.compile(
    r"\b(tell me|let me know|i (?:want|need|would like|'d like) to (?:know|understand|close|delete|cancel|change|pay|make|open|"
    r"report|return|get|extend|stop|remove|complain|dispute|verify)|explain|help me|i want (?:it|this|that|them|my)|"
    r"give me|send me|show me|please (?:\w+)|ich möchte|ich will|sag mir|jag vill|berätta)\b",
    re.I,
)
# Shorthand of support chats and agents' notes, written out before spelling is corrected.
SHORTHAND = {
    "cust": "customer", "custs": "customers", "acct": "account", "accts": "accounts", "amt": "amount",
    "pmt": "payment", "pmts": "payments", "txn": "transaction", "txns": "transactions", "msg": "message",
    "msgs": "messages", "pls": "please", "plz": "please", "thx": "thanks", "approx": "approximately",
}
# Words by which a question leans on the sentence before it.
_POINTS_BACK = re.compile(r"\b(it|that|this|they|them|those|these|he|she|his|her|det|den|dem|das|es|dies)\b", re.I)
_LEANING = re.compile(r"\b(it|that|this|they|them|those|these|there|one|det|den|dem|das|es|dies|dann|då)\b", re.I)
_SPLIT_AND = re.compile(
    r",?\s+(?:and|also|plus|und|och|sowie)\s+(?=(?:" + "|".join(_QUESTION_OPENERS["en"] + _QUESTION_OPENERS["de"] + _QUESTION_OPENERS["sv"]) + r")\b)",
    re.I,
)
# In a conversation, a message of up to this many words is read with it, whatever it names.
STANDALONE_WORDS = 12
# A focus with fewer known terms than this borrows the context sentence before it.
MIN_FOCUS_TERMS = 2


class Vocabulary(Protocol):
    """What understanding needs of the index the asker may read."""

    def knows(self, term: str) -> bool: ...

    def correct(self, term: str) -> str | None: ...

    def surface(self, term: str) -> str: ...


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str


def as_turns(conversation: Sequence[Turn | dict[str, str]] | None) -> list[Turn]:
    return [t if isinstance(t, Turn) else Turn(t["role"], t["content"]) for t in conversation or []]


@dataclass
class Understood:
    """A message made searchable: the query for the whole, and one per question it asks."""

    text: str  # the message as asked
    corrected_text: str  # the message with its spelling corrected
    query: str  # what to search for the whole message (focused, follow-up resolved, spelling corrected)
    parts: list[str]  # one query per distinct question (a single element when it asks one thing)
    language: str
    market: str | None = None  # a market the message (or the turn it replies to) names
    follow_up: bool = False
    context: str = ""  # what the conversation before it was about (empty without one)
    corrected: dict[str, str] = field(default_factory=dict)  # misspelt word -> knowledge-base word
    known_terms: int = 0  # content terms of the focus the knowledge base uses
    unknown_terms: int = 0  # content terms of the focus no chunk uses, even after correction
    dropped: int = 0  # sentences left out as chatter


def sentences(text: str) -> list[str]:
    """A chat message cut into sentences (punctuation runs and new lines end one)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def is_question(sentence: str, language: str) -> bool:
    """The sentence asks or requests something (a "?", a question opener, or a request phrase)."""
    if "?" in sentence:
        return True
    first = re.match(r"\W*(\w+)", sentence.lower())
    opener = first.group(1) if first else ""
    return opener in _QUESTION_OPENERS.get(language, _QUESTION_OPENERS["en"]) or bool(_REQUEST.search(sentence))


def _content(text: str, language: str, vocabulary: Vocabulary) -> tuple[list[str], list[str]]:
    """(known, unknown) content terms of ``text`` in the asker's index."""
    known, unknown = [], []
    for stem, _word in term_pairs(text, language):
        (known if vocabulary.knows(stem) else unknown).append(stem)
    return known, unknown


def correct_spelling(text: str, language: str, vocabulary: Vocabulary) -> tuple[str, dict[str, str]]:
    """The text with words the knowledge base never uses replaced by the ones it most likely means.

    Support shorthand is written out first ("SE cust owes…": the nearest knowledge-base word to
    "cust" is "cost"). A correction is kept only when the word it puts in the text is itself close
    to what was typed: stems can be near while the words are not (German "finanziere" and English
    "financial", "chatbot" and Swedish "chatten").
    """
    fixes: dict[str, str] = {}
    for stem, word in term_pairs(text, language):
        if word in fixes:
            continue
        if word in SHORTHAND:
            fixes[word] = SHORTHAND[word]
            continue
        if vocabulary.knows(stem) or is_common_word(word, language):
            continue
        better = vocabulary.correct(stem)
        if better and _plausible_fix(word, vocabulary.surface(better) or better):
            fixes[word] = vocabulary.surface(better) or better
    if not fixes:
        return text, {}
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(fixes, key=len, reverse=True)) + r")\b", re.I)
    return pattern.sub(lambda m: fixes[m.group(0).lower()], text), fixes


def _plausible_fix(typed: str, fix: str) -> bool:
    from rapidfuzz.distance import Levenshtein

    # As near as the stems may be, plus a suffix the fix adds ("paymnt" -> "payments").
    limit = (1 if len(typed) < 7 else 2) + (len(fix) > len(typed))
    return Levenshtein.distance(typed, fix.lower()) <= limit


def focus(text: str, language: str, vocabulary: Vocabulary) -> tuple[str, list[str], int]:
    """(focus text, question sentences, sentences dropped) of a message.

    The focus is every question sentence that names something the knowledge base speaks
    about; a question that says too little on its own or points back ("Is another one
    coming?", "WHY does this happen??") also keeps the on-topic sentence before it that names
    most ("I already got your 2.50 fee", "My card got declined at the supermarket"). Without any question
    sentence, it is every on-topic sentence.
    """
    said = sentences(text)
    if len(said) <= 1:
        return text, said, 0
    on_topic = [bool(_content(s, language, vocabulary)[0]) for s in said]
    # A question counts when it names something the knowledge base speaks about, or points back
    # at a sentence that does ("WHY does this happen??" after "My card got declined").
    asks = [
        i
        for i, s in enumerate(said)
        if is_question(s, language) and (on_topic[i] or (_POINTS_BACK.search(s) and any(on_topic[:i])))
    ]
    if not asks:
        kept = {i for i in range(len(said)) if on_topic[i]} or set(range(len(said)))
    else:
        kept = set(asks)
        for i in asks:
            known = len(set(_content(said[i], language, vocabulary)[0]))
            if known < MIN_FOCUS_TERMS + 1 or _POINTS_BACK.search(said[i]):
                before = [j for j in range(i) if on_topic[j] and j not in kept]
                if before:
                    # The statement that says most of what the knowledge base speaks about, not
                    # merely the nearest: "My card got declined at the supermarket", not "I have money!".
                    kept.add(max(before, key=lambda j: (len(set(_content(said[j], language, vocabulary)[0])), j)))
    return " ".join(said[i] for i in sorted(kept)), [said[i] for i in asks], len(said) - len(kept)


def split_questions(questions: list[str], language: str, vocabulary: Vocabulary) -> list[str]:
    """Distinct questions of a message: its question sentences, and "X and does Y?" halves.

    A half counts as a question of its own only if it names something the knowledge base
    speaks about; "…and what do I do?" stays with the question before it.
    """
    parts: list[str] = []
    for question in questions:
        halves = [h.strip(" ,") for h in _SPLIT_AND.split(question) if h.strip(" ,")]
        for half in halves:
            if parts and len(_content(half, language, vocabulary)[0]) < MIN_FOCUS_TERMS:
                parts[-1] = f"{parts[-1]} {half}"
            else:
                parts.append(half)
    return parts


def _is_follow_up(text: str, turns: Sequence[Turn], known: int) -> bool:
    """Whether the message leans on the conversation: read from its shape, not a list of openers.

    In a conversation, a message is read with what came before unless it clearly stands on its
    own: long enough to be a question of its own, naming enough topics, and pointing back at
    nothing. Real follow-ups are rarely bare openers: "she had one waived in march already",
    "i bought them on monday and it's thursday now", "done. how long until i find out?" name
    topics of their own but mean nothing without the turn before.
    """
    if not turns:
        return False
    words = len(text.split())
    stands_alone = words > STANDALONE_WORDS and known >= MIN_FOCUS_TERMS + 2 and not _LEANING.search(text)
    return not stands_alone


def _context_query(turns: Sequence[Turn]) -> str:
    """What the conversation was about: the last user question, and the assistant's question if it asked one."""
    users = [t.content for t in turns if t.role == "user"]
    last_user = users[-1] if users else ""
    last = turns[-1] if turns else None
    asked = last.content if last is not None and last.role == "assistant" and "?" in last.content[-80:] else ""
    if asked:
        # Only the assistant's question, not its whole answer: "Are you in Sweden or Germany?"
        asked = next((s for s in reversed(sentences(asked)) if "?" in s), asked)
    return " ".join(part for part in (last_user, asked) if part)


def understand(
    text: str, conversation: Sequence[Turn] | None, vocabulary: Vocabulary, language: str | None = None
) -> Understood:
    """Read one message, with the turns before it, against the asker's vocabulary."""
    turns = list(conversation or [])
    language = language or detect_language(text)
    corrected_text, fixes = correct_spelling(text, language, vocabulary)
    focused, questions, dropped = focus(corrected_text, language, vocabulary)
    known, unknown = _content(focused, language, vocabulary)
    market = mentioned_market(text)
    follow_up = _is_follow_up(corrected_text, turns, len(set(known)))
    context = _context_query(turns)
    if follow_up:
        market = market or only_market(context)
        query = f"{context} {focused}".strip()
        parts = [query]
    else:
        query = focused
        parts = split_questions(questions, language, vocabulary) if len(questions) > 1 or questions else [focused]
        if len(parts) <= 1:
            parts = [focused]
    return Understood(
        text=text,
        corrected_text=corrected_text,
        query=query,
        parts=parts,
        language=language,
        market=market,
        follow_up=follow_up,
        context=context,
        corrected=fixes,
        known_terms=len(set(known)),
        unknown_terms=len(set(unknown)),
        dropped=dropped,
    )

"""What a language model wrote, judged before anyone sees it: the one place that decides.

Why this exists: the model is told to cite every claim and to reply exactly ``NO_ANSWER`` when
the passages do not answer, but small local models (a 135M instruct model behind llama.cpp's
server is where it was seen) mix the two and worse: "[1] [2] [3] NO_ANSWER", "no_answer [2]",
"NO_ANSWER.", a row of citation markers, "The passages say: [7]", fluent text citing nothing,
or nothing at all. Shown as it came, each of these is a wrong answer with a source attached.

:func:`check_reply` sorts a raw reply into one of four kinds, in this order:

- ``refusal``: the refusal token anywhere, in any case, with or without brackets, punctuation
  or citations around it ("[NO_ANSWER]", "No-Answer", "NO\\_ANSWER" as Markdown escapes it).
- ``no-substance``: nothing left once citation markers, tags, punctuation, a few filler words
  ("the passages say", "see", "answer") and an echo of the question or of the prompt's own
  "Passages:"/"Question:" headers are taken away.
- ``uncited``: substantive, but citing no passage the model was given.
- ``ok``: shown, with citations to passages it was not given removed (and flagged) and the rest
  renumbered 1..n in order of first use.

What happens to a reply that is not ``ok`` depends on who asked (:func:`fallback_for`):

- a **customer** gets the refusal and a hand-off. Weak models write "I don't know" as an empty
  reply, a row of citations or uncited prose as often as they write ``NO_ANSWER``, so each of
  these is most likely the model finding no answer; a customer is never shown a guess.
- an **agent** or **internal** reader gets the offline extractive answer instead, flagged
  "model reply …; answered extractively", so they still see the cited policy and can judge.

Streaming: :class:`StreamGate` stands between the model's tokens and the page. For a customer
it holds everything back until the whole reply has passed the check and then passes on the
final text once, so a customer can never see streamed text that is then rejected. For agents
it passes on the reply a sentence at a time, only while what has arrived so far is itself an
``ok`` reply; the final answer replaces whatever was streamed.

:func:`check_rewrite` does the same for a follow-up rewritten into a standalone search query: a
reply that is empty, holds the refusal token, is absurdly long, or is an answer or chatter
rather than a query is not used, and the offline rewrite is used instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from assist.generation import TokenCallback

NO_ANSWER = "NO_ANSWER"

_CITATION = re.compile(r"\[(\d{1,3})\]")
_SPACED_CITATION = re.compile(r"[ \t]*\[(\d{1,3})\]")  # removing one takes the space before it along
# "[1, 2]" and "[1,2,3]": written by models that were shown "[1]"; read as "[1] [2]".
_CITATION_LIST = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})+)\]")
# NO_ANSWER in any case, joined by "_" (also Markdown-escaped "\_"), "-" or nothing; "NO ANSWER"
# with a space only in capitals, because "no answer" is ordinary policy prose ("if the customer
# gives no answer within 14 days").
_REFUSAL = re.compile(r"(?<![A-Za-z0-9])(?:(?i:no\s*\\?[_-]\s*answer)|(?i:noanswer)|NO\s+ANSWER)(?![A-Za-z0-9])")
_TAG = re.compile(r"<[^<>]*>|‹[^‹›]*›")
_WORD = re.compile(r"\w+")
# Words that carry nothing on their own: a reply made only of these (and citations) says nothing.
FILLER = frozenset(
    """
    a an the this that these those it its is are was be as of in on to for from and or by with
    passage passages text texts context document documents source sources reference references
    answer answers question questions reply response information info content excerpt excerpts
    say says said state states stated mention mentions mentioned according based see refer
    please read check here there above below provided given follows following note
    sure ok okay certainly
    """.split()
)

MAX_REWRITE_CHARS = 300
_REWRITE_LABEL = re.compile(r"^(?:standalone |rewritten |search |the )*(?:search )?query\s*:\s*", re.I)
_CHATTER = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|i\b|i'm|as an ai|sorry|"
    r"yes\b|no\b|you (?:can|have|must|will|need|should|may)\b|the answer)",
    re.I,
)
_SENTENCE_BREAK = re.compile(r"[.!?]\s+\S")


class ReplyKind(StrEnum):
    OK = "ok"
    REFUSAL = "refusal"
    NO_SUBSTANCE = "no-substance"
    UNCITED = "uncited"


REASONS = {
    ReplyKind.REFUSAL: "model reply declined to answer (NO_ANSWER)",
    ReplyKind.NO_SUBSTANCE: "model reply had no substantive text",
    ReplyKind.UNCITED: "model reply cited no passage it was given",
}


@dataclass(frozen=True)
class ReplyCheck:
    """A model reply judged: its kind, and for an ``ok`` reply the text to show.

    ``text`` has its citations renumbered 1..n in order of first use; ``cited[n - 1]`` is the
    passage number (1-based, as the model saw it) that ``[n]`` now refers to. ``flags`` name
    citations removed because no such passage was in the context.
    """

    kind: ReplyKind
    text: str = ""
    cited: list[int] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.kind is ReplyKind.OK

    @property
    def reason(self) -> str:
        """Why the reply is not shown, in plain words ("" for an ``ok`` reply)."""
        return REASONS.get(self.kind, "")


def holds_refusal(text: str) -> bool:
    """True when the refusal token appears anywhere in ``text``, in any of its spellings."""
    return bool(_REFUSAL.search(text))


def validate_citations(text: str, n_passages: int) -> tuple[str, list[int], list[str]]:
    """Remove citations to passages that were not in the context. Returns (text, cited, flags).

    ``cited`` lists the valid passage numbers in order of first use.
    """
    flags: list[str] = []
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if 1 <= number <= n_passages:
            if number not in cited:
                cited.append(number)
            return match.group(0)
        flags.append(f"removed citation [{number}]: no such passage in the context")
        return ""

    text = _CITATION_LIST.sub(lambda m: " ".join(f"[{n.strip()}]" for n in m.group(1).split(",")), text)
    cleaned = re.sub(r"[ \t]+([.,;:])", r"\1", _SPACED_CITATION.sub(keep, text)).strip()
    return cleaned, cited, flags


def _content_words(text: str) -> list[str]:
    """Lower-cased words that are not filler (single letters other than digits count as filler)."""
    return [w for w in _WORD.findall(text.lower()) if w not in FILLER and (len(w) > 1 or w.isdigit())]


def is_substantive(text: str, question: str = "") -> bool:
    """Whether ``text`` says anything beyond citations, punctuation, filler and an echo of the prompt.

    An echo is a reply whose words (filler aside) are exactly the question's, with or without
    the prompt's "Question:" label. One real word is enough: "Yes [1]." answers a yes/no question.
    """
    words = _content_words(_CITATION.sub(" ", _TAG.sub(" ", text)))
    if not words:
        return False
    return not (question and words == _content_words(question))


def check_reply(raw: str, n_passages: int, question: str = "") -> ReplyCheck:
    """Sort a model's raw reply into ok / refusal / no-substance / uncited (see the module docstring)."""
    if holds_refusal(raw):
        return ReplyCheck(ReplyKind.REFUSAL)
    text, cited, flags = validate_citations(raw, n_passages)
    if not is_substantive(text, question):
        return ReplyCheck(ReplyKind.NO_SUBSTANCE, flags=flags)
    if not cited:
        return ReplyCheck(ReplyKind.UNCITED, flags=flags)
    order = {old: new for new, old in enumerate(cited, start=1)}
    text = _CITATION.sub(lambda m: f"[{order[int(m.group(1))]}]", text)
    return ReplyCheck(ReplyKind.OK, text=text, cited=cited, flags=flags)


def fallback_for(role: str) -> str:
    """What replaces a rejected reply: ``"refuse"`` (hand-off) for customers, ``"extractive"`` otherwise."""
    return "refuse" if role == "customer" else "extractive"


# A place where a streamed reply may be cut: whitespace after the end of a sentence, a citation
# marker, or a line.
_BOUNDARY = re.compile(r"(?<=[.!?\]])\s|\n")


class StreamGate:
    """Passes a model's streamed tokens on to ``on_token`` only when they cannot turn out rejected.

    ``hold_all`` (customers): nothing until :meth:`finish` is given an ``ok`` check, then its
    final text in one piece. Otherwise (agents): text up to the last sentence boundary, each
    time that prefix is itself an ``ok`` reply, rendered as the final answer renders it; once
    the refusal token appears, nothing more. Either way the caller's final answer is what counts
    and replaces what was streamed.
    """

    def __init__(self, on_token: TokenCallback | None, *, hold_all: bool, n_passages: int, question: str = ""):
        self.on_token = on_token
        self.hold_all = hold_all
        self.n_passages = n_passages
        self.question = question
        self.parts: list[str] = []
        self.shown = ""
        self.closed = on_token is None

    def feed(self, token: str) -> None:
        self.parts.append(token)
        if self.hold_all or self.closed:
            return
        text = "".join(self.parts)
        if holds_refusal(text):
            self.closed = True
            return
        cuts = [m.start() for m in _BOUNDARY.finditer(text)]
        if cuts:
            self._show(check_reply(text[: cuts[-1]], self.n_passages, self.question))

    def finish(self, check: ReplyCheck) -> None:
        """The whole reply has arrived and been checked: pass on the rest of it, if it is shown."""
        if self.on_token is None or not check.ok:
            return
        if self.hold_all:
            self.on_token(check.text)
        elif not self.closed:
            self._show(check)

    def _show(self, check: ReplyCheck) -> None:
        if not check.ok or len(check.text) <= len(self.shown):
            return
        if not check.text.startswith(self.shown):
            self.closed = True  # the rendering changed under what was shown; the final answer replaces it
            return
        assert self.on_token is not None
        self.on_token(check.text[len(self.shown) :])
        self.shown = check.text


def check_rewrite(reply: str, question: str, history: str) -> tuple[str | None, str]:
    """A model's standalone rewrite of a follow-up, or ``None`` and why it is not usable.

    Usable: one line of at most :data:`MAX_REWRITE_CHARS` characters, one sentence, no citation
    or refusal token, not chatter or an answer ("Sure, …", "You can …"), sharing at least one
    word with the conversation. A surrounding pair of quotes and a "Query:" label are dropped.
    """
    text = reply.strip().strip("`\"'“”").strip()
    text = _REWRITE_LABEL.sub("", text).strip().strip("`\"'“”").strip()
    if not text:
        return None, "empty"
    if holds_refusal(text):
        return None, "holds the refusal token"
    if len(text) > MAX_REWRITE_CHARS:
        return None, f"{len(text)} characters long"
    if _CHATTER.match(text):
        return None, "an answer or chatter, not a query"
    if "\n" in text or _SENTENCE_BREAK.search(text) or _CITATION.search(text) or _TAG.search(text):
        return None, "an answer, not a query"
    said = {w for w in _content_words(f"{history} {question}") if len(w) > 2}  # "in", "do" say nothing
    if not said & {w for w in _content_words(text) if len(w) > 2}:
        return None, "shares no word with the conversation"
    return text, ""

"""The assistant service: one call from question to cited answer, or to refusal and hand-off.

Transports (the CLI, the Streamlit app, evaluation) call :meth:`Assistant.ask` and render what
comes back; none of them decides anything about answering.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Sequence

from assist.access import Filters, audiences_for
from assist.answer import (
    HANDOFF_CUSTOMER_ASKED,
    HANDOFF_LOW_CONFIDENCE,
    HANDOFF_RESTRICTED_TOPIC,
    Answer,
    Citation,
    Handoff,
)
from assist.conversation import Turn, as_turns, condense, is_follow_up, mentioned_market
from assist.extractive import ExtractiveGenerator
from assist.generation import CoverageFn, Generator, TokenCallback
from assist.lexical import LexicalIndex, detect_language, terms
from assist.retrieval import HybridRetriever, Passage, Retrieval
from kb.settings import Settings
from kb.store import KnowledgeStore

log = logging.getLogger(__name__)

CUSTOMER_REFUSAL = (
    "I'm sorry, I couldn't find an answer to that in our help articles, and I don't want to guess. "
    "Would you like to talk to a person? I can pass your question on to our support team."
)
AGENT_REFUSAL = "No policy in the knowledge base covers this question."
ESCALATION_QUERY = "no policy covers the case what to do escalate to team lead escalation path"
REPLY_OPENING = "Thanks for getting in touch."


# A run of characters without a space this long is a paste accident (a token, a blob, a
# minified URL), not a word: it would only dilute the search and answer nothing.
MAX_WORD_CHARS = 256
# Scripts written without spaces between words: a long run in them is an ordinary sentence.
_UNSPACED_SCRIPTS = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(f"[^\\s{_UNSPACED_SCRIPTS}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Control characters other than whitespace (tabs, newlines and the like are collapsed instead).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


class QuestionError(ValueError):
    """The question cannot be processed as given (empty, too long, malformed)."""


def validate_question(question: object, max_chars: int) -> str:
    """The question with its whitespace collapsed, or :class:`QuestionError` saying what is wrong.

    Checked here, before any search, because malformed text fails deep inside the embedder or
    the store (a lone surrogate is not encodable) or, worse, is answered silently. Messages
    never repeat the question: they end up on consoles and in error reports.
    """
    if not isinstance(question, str):
        raise QuestionError("the question must be text")
    if _SURROGATE.search(question):
        raise QuestionError(
            "the question is not valid Unicode text (it holds an unpaired surrogate, usually from "
            "wrongly decoded bytes); type or paste it again"
        )
    control = _CONTROL.search(question)
    if control:
        raise QuestionError(f"the question contains a control character (U+{ord(control.group()):04X}); remove it")
    question = " ".join(question.split())
    if len(question) > max_chars:
        raise QuestionError(f"the question is {len(question)} characters long; the limit is {max_chars}")
    if not any(unicodedata.category(ch)[0] not in "CZ" for ch in question):  # nothing visible, e.g. only U+200B
        raise QuestionError("the question is empty")
    longest = max((len(w) for w in _WORD.findall(question)), default=0)
    if longest > MAX_WORD_CHARS:
        raise QuestionError(
            f"the question contains a {longest}-character word; words are limited to {MAX_WORD_CHARS} characters"
        )
    return question


class Assistant:
    """Answers questions from one knowledge base for customers, agents and internal readers."""

    def __init__(self, store: KnowledgeStore, settings: Settings | None = None, generator: Generator | None = None):
        self.settings = settings or store.settings
        self.retriever = HybridRetriever(store, self.settings)
        if generator is None and self.settings.llm_base_url:
            from assist.llm import LLMGenerator

            generator = LLMGenerator(self.settings)
        self._extractive = ExtractiveGenerator()
        self.generator: Generator = generator or self._extractive

    def _validate(self, question: str, role: str) -> str:
        audiences_for(role)
        return validate_question(question, self.settings.max_question_chars)

    def search_query(self, question: str, conversation: Sequence[Turn]) -> str:
        if conversation and is_follow_up(question) and hasattr(self.generator, "rewrite_query"):
            history = "\n".join(f"{t.role}: {t.content}" for t in conversation[-6:])
            try:
                return self.generator.rewrite_query(question, history)  # type: ignore[attr-defined]
            except Exception:  # the endpoint failing must not stop the answer
                log.warning("query rewrite failed; using the offline heuristic")
        return condense(question, conversation)

    def ask(
        self,
        question: str,
        role: str = "customer",
        market: str | None = None,
        conversation: Sequence[Turn | dict[str, str]] | None = None,
        filters: Filters | None = None,
        on_token: TokenCallback | None = None,
    ) -> Answer:
        started = time.perf_counter()
        question = self._validate(question, role)
        turns = as_turns(conversation)
        query = self.search_query(question, turns)
        base = filters or Filters()
        chosen_market = mentioned_market(query) or market or base.market
        filters = Filters(chosen_market, base.language, base.product, base.doc_id)
        retrieval = self.retriever.retrieve(query, role, filters)

        generated = None
        used = self.generator.name
        if retrieval.passages and retrieval.confidence >= self.settings.confidence_threshold:
            coverage = self._coverage(role, query, retrieval.index)
            try:
                generated = self.generator.generate(query, retrieval.passages, role, coverage, on_token)
            except Exception as exc:  # an unreachable or failing endpoint must not leave the user without an answer
                if self.generator is self._extractive:
                    raise
                log.warning("generator %s failed (%s); answering extractively", self.generator.name, type(exc).__name__)
                generated = self._extractive.generate(query, retrieval.passages, role, coverage, on_token)
                used = self._extractive.name
                generated.flags.append(
                    f"{self.generator.name} generator unavailable ({type(exc).__name__}); answered extractively"
                )
        if generated is None or generated.no_answer:
            answer = self._refuse(question, query, role, chosen_market, turns, retrieval)
        else:
            citations = [Citation.from_passage(n, retrieval.passages[i]) for n, i in enumerate(generated.cited, 1)]
            answer = Answer(
                question=question,
                search_query=query,
                role=role,
                text=generated.text,
                citations=citations,
                confidence=retrieval.confidence,
                refused=False,
                latency_ms=0.0,
                steps=generated.steps,
                generator=used,
                flags=generated.flags,
                usage=generated.usage,
            )
            if role != "customer":
                answer.suggested_reply = self._customer_reply(query, retrieval)
        answer.latency_ms = (time.perf_counter() - started) * 1000
        log.info(
            "answered role=%s refused=%s confidence=%.2f citations=%d latency_ms=%.0f",
            role,
            answer.refused,
            answer.confidence,
            len(answer.citations),
            answer.latency_ms,
        )
        return answer

    def _coverage(self, role: str, query: str, index: LexicalIndex | None = None) -> CoverageFn:
        """How much of the query's idf mass a text covers, with the role's index statistics."""
        index = index or self.retriever.lexical.for_role(role)
        language = detect_language(query)
        words = terms(query, language)
        return lambda text: index.coverage(words, text, language)

    def _customer_reply(self, query: str, retrieval: Retrieval) -> str | None:
        """A reply the agent can send: quoted only from customer-facing passages."""
        public = [p for p in retrieval.passages if p.metadata.get("audience") == "customer"]
        if not public:
            return None
        draft = self._extractive.select(query, public, self._coverage("customer", query))
        if draft.empty:
            return None
        lines = [REPLY_OPENING] + [text for text, _ in draft.parts] + [text for text, _ in draft.steps]
        return "\n".join(lines)

    def _refuse(
        self, question: str, query: str, role: str, market: str | None, turns: list[Turn], retrieval: Retrieval
    ) -> Answer:
        searched = {
            "query": query,
            "role": role,
            "filters": {k: v for k, v in vars(retrieval.filters).items() if v},
            "documents": sorted({p.doc_id for p in retrieval.passages}),
            "confidence": round(retrieval.confidence, 3),
        }
        answer = Answer(
            question=question,
            search_query=query,
            role=role,
            text=CUSTOMER_REFUSAL if role == "customer" else AGENT_REFUSAL,
            citations=[],
            confidence=retrieval.confidence,
            refused=True,
            latency_ms=0.0,
            generator=self.generator.name,
        )
        if role == "customer":
            earlier = [t.content for t in turns if t.role == "user"][-3:]
            summary = f"Customer asked: {question}"
            if earlier:
                summary += " | Earlier: " + " / ".join(earlier)
            reason = HANDOFF_RESTRICTED_TOPIC if self._staff_would_answer(query, retrieval) else HANDOFF_LOW_CONFIDENCE
            answer.handoff = Handoff(
                question, role, market, summary, searched, reason=reason, language=detect_language(question)
            )
        else:
            answer.escalation = self._escalation_path(role)
            if answer.escalation:
                answer.text += (
                    f" Follow the escalation path: {answer.escalation.title} — {answer.escalation.section} [1]"
                )
                answer.citations = [answer.escalation]
        return answer

    def _staff_would_answer(self, query: str, retrieval: Retrieval) -> bool:
        """Whether documents customers may not read answer the question: the person taking the hand-off
        should know it is a staff topic. Only the verdict leaves here, never what those documents say."""
        staff = self.retriever.retrieve(query, "internal", retrieval.filters)
        return (
            bool(staff.passages)
            and staff.confidence >= self.settings.confidence_threshold
            and staff.passages[0].metadata.get("audience") != "customer"
        )

    def _escalation_path(self, role: str) -> Citation | None:
        """The knowledge base's own guidance for uncovered cases, if it has any."""
        found = self.retriever.retrieve(ESCALATION_QUERY, role, Filters(), k=1)
        best: Passage | None = found.passages[0] if found.passages else None
        if best is None or best.coverage < 0.3:
            return None
        return Citation.from_passage(1, best)


def requested_handoff(answers: Sequence[Answer], market: str | None, about: int | None = None) -> Handoff:
    """The hand-off record for a customer who asks for a person, refused or not.

    ``about`` is the index in ``answers`` of the answer the request is about, as the page knows
    it: the refusal whose "Yes, talk to a person" was pressed, or an answer's own button. A
    request about a refusal is the record the refusal already made (its reason says why the
    assistant could not answer). Without ``about`` the request is a general one (before asking
    anything, or about something else): no question is recorded as its trigger, and what was
    searched last is kept as context for the person taking over.
    """
    target = answers[about] if about is not None else None
    if target is not None and target.handoff is not None:
        return target.handoff
    last = answers[-1] if answers else None
    context = target or last
    asked = [a.question for a in answers]
    summary = "Customer asked for a person" + (": " + " / ".join(asked[-3:]) if asked else " before asking anything")
    searched = (
        {
            "query": context.search_query,
            "role": context.role,
            "documents": sorted({c.doc_id for c in context.citations}),
            "confidence": round(context.confidence, 3),
        }
        if context
        else {}
    )
    question = target.question if target else ""
    language = detect_language(question) if question else None
    return Handoff(question, "customer", market, summary, searched, reason=HANDOFF_CUSTOMER_ASKED, language=language)

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
from dataclasses import replace

import numpy as np

from assist.access import Filters, audiences_for
from assist.answer import (
    HANDOFF_CUSTOMER_ASKED,
    HANDOFF_LOW_CONFIDENCE,
    HANDOFF_RESTRICTED_TOPIC,
    Answer,
    Citation,
    Handoff,
)
from assist.answerability import Gate
from assist.answerability import features as answerability_features
from assist.chunk_index import ChunkIndex
from assist.compose import customer_reply
from assist.extractive import ExtractiveGenerator
from assist.generation import CoverageFn, Generated, Generator, Plan, TokenCallback
from assist.markets import MARKET_NAMES
from assist.models import load_model
from assist.phrases import (
    CUSTOMER_REFUSALS,
    customer_refusal,
    is_refusal,
    related_articles,
    source_language_note,
)
from assist.retrieval import HybridRetriever, Passage, Retrieval, fuse
from assist.selection import MAX_BLOCK_ITEMS, Selection, Selector, Unit, render
from assist.terms import detect_language, terms
from assist.understanding import Turn, Understood, as_turns, understand
from kb.segments import chunk_segments
from kb.settings import Settings
from kb.store import KnowledgeStore

log = logging.getLogger(__name__)

CUSTOMER_REFUSAL = CUSTOMER_REFUSALS["en"][0]
AGENT_REFUSAL = "No policy in the knowledge base covers this question."
ESCALATION_QUERY = "no policy covers the case what to do escalate to team lead escalation path"
_HOW_QUANTITY = re.compile(
    r"\b(how|wie|hur)\s+(?:long|much|many|often|soon|far|quickly|lange|viel|viele|oft|schnell|länge|mycket|många|ofta|snabbt)\b",
    re.I,
)
_ESCALATION_TOPIC = re.compile(r"escalat|no policy|not covered|eskal|uncovered", re.I)


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
    """Answers questions from one knowledge base for customers, agents and internal readers.

    One ask, top to bottom: the message is understood against the asker's vocabulary
    (:mod:`assist.understanding`), searched (:mod:`assist.retrieval`), its answer chosen
    segment by segment (:mod:`assist.selection`), gated by the calibrated answerability model
    (:mod:`assist.answerability`), then written (:mod:`assist.extractive` or a language model)
    with numbered citations, or refused and handed off.
    """

    def __init__(self, store: KnowledgeStore, settings: Settings | None = None, generator: Generator | None = None):
        self.settings = settings or store.settings
        self.store = store
        self.retriever = HybridRetriever(store, self.settings)
        if generator is None and self.settings.llm_base_url:
            from assist.llm import LLMGenerator

            generator = LLMGenerator(self.settings)
        self._extractive = ExtractiveGenerator()
        self.generator: Generator = generator or self._extractive
        self.selector = Selector(load_model("segments", _own_model(self.settings, "segments")))
        self.gate = Gate(
            load_model("answerability", _own_model(self.settings, "answerability")),
            answer_at=self.settings.confidence_threshold,
        )

    def _validate(self, question: str, role: str) -> str:
        audiences_for(role)
        return validate_question(question, self.settings.max_question_chars)

    def understand(self, question: str, role: str, conversation: Sequence[Turn | dict[str, str]] | None = None) -> Understood:
        """The message as the answer layer reads it, against the vocabulary ``role`` may read."""
        return understand(question, as_turns(conversation), self.retriever.lexical.for_role(role))

    def _rewritten(self, understood: Understood, conversation: Sequence[Turn]) -> str:
        """A follow-up rewritten by the language model when one is configured and it can."""
        if not (understood.follow_up and hasattr(self.generator, "rewrite_query")):
            return understood.query
        history = "\n".join(f"{t.role}: {t.content}" for t in conversation[-6:])
        try:
            return self.generator.rewrite_query(understood.text, history) or understood.query  # type: ignore[attr-defined]
        except Exception:  # the endpoint failing must not stop the answer
            log.warning("query rewrite failed; using the offline reading of the conversation")
            return understood.query

    def plan(self, understood: Understood, query: str, role: str, filters: Filters) -> tuple[Plan, Retrieval]:
        """Search, choose what to quote and decide whether to answer, for an understood message.

        A message asking several things is also searched once per question, so each part gets
        its own passage and its own citation; the gate reads the search for the whole message.
        """
        parts = understood.parts if len(understood.parts) > 1 else []
        # Also searched, at half weight: the whole message when its focus dropped sentences, and
        # what the conversation was about when the message stands alone (a conversation mostly
        # stays with one article, so its passages should not lose to a near miss elsewhere).
        extra = [
            text
            for text in (
                understood.corrected_text if understood.dropped and not understood.follow_up else "",
                understood.context if not understood.follow_up else "",
            )
            if text
        ]
        vectors = self.retriever.embed_queries([query, *parts, *extra])
        retrieval = self.retriever.retrieve(query, role, filters, vector=vectors[0])
        for text, vector in zip(extra, vectors[len(vectors) - len(extra) :], strict=True):
            retrieval = fuse(retrieval, self.retriever.retrieve(text, role, filters, vector=vector))
        vectors = vectors[: len(vectors) - len(extra)]
        passages = list(retrieval.passages)
        coverage = self._coverage(role, query, retrieval.index)
        selection = self._select(query, passages, vectors[0], coverage, filters.market)
        units = selection.units
        if parts:
            units = self._select_parts(parts, vectors[1:], role, filters, passages, retrieval) or units
        units = self._finish_procedures(units, passages, retrieval, filters.market)
        # Under its heading: an answer quoted from "Return window" does answer "what is the return window".
        answer_coverage = coverage(" ".join(_heading(passages[u.passage]) + " " + " ".join(u.texts) for u in units))
        values = answerability_features(understood, retrieval.passages, selection, answer_coverage)
        decision = self.gate.decide(values, bool(units))
        plan = Plan(understood, query, passages, units, decision, filters.market, selection, coverage)
        return plan, retrieval

    def _finish_procedures(
        self, units: list[Unit], passages: list[Passage], retrieval: Retrieval, market: str | None
    ) -> list[Unit]:
        """Procedures and lists that run on past their chunk, completed from the chunks after it.

        An agent told steps 1-4 of a seven-step procedure stops at step 4. A unit that ends on
        its passage's last segment continues while the next chunk of the same section opens
        with more of the same block (the chunker's overlap repeats a step or two: skipped).
        """
        if retrieval.index is None:
            return units
        out: list[Unit] = []
        for unit in units:
            out.append(unit)
            if unit.kind not in ("steps", "list"):
                continue
            passage = passages[unit.passage]
            kind, last = unit.segments[-1].kind, unit.segments[-1].position
            seen = set(unit.texts)
            count = len(unit.segments)
            for _ in range(4):  # a procedure spanning more than five chunks is cut there
                segs = chunk_segments(passage.text, str(passage.metadata.get("section", "")))
                if not segs or segs[-1].position != last or segs[-1].kind != kind or count >= 2 * MAX_BLOCK_ITEMS:
                    break
                following = self.retriever.following(passage, retrieval.index, retrieval.role)
                if following is None or following.metadata.get("section") != passage.metadata.get("section"):
                    break
                nxt = chunk_segments(following.text, str(following.metadata.get("section", "")))
                first_block = nxt[0].block if nxt and nxt[0].kind == kind else None
                if first_block is None:
                    break
                rendered = [
                    (s, t) for s in nxt if s.kind == kind and s.block == first_block and (t := render(s, market)) and t not in seen
                ]
                if not rendered:
                    break
                index = next((i for i, p in enumerate(passages) if p.chunk_id == following.chunk_id), None)
                if index is None:
                    passages.append(following)
                    index = len(passages) - 1
                out.append(Unit(index, [s for s, _ in rendered], [t for _, t in rendered], unit.kind, unit.probability, True))
                seen.update(t for _, t in rendered)
                count += len(rendered)
                passage, last = following, rendered[-1][0].position
        return out

    def _select(
        self, query: str, passages: list[Passage], vector: np.ndarray, coverage: CoverageFn, market: str | None, units: int = 3
    ) -> Selection:
        top = passages[: self.selector.top_passages]
        return self.selector.select(
            query, top, self.retriever.segment_vectors(top), vector, coverage, market, max_units=units
        )

    def _select_parts(
        self,
        parts: list[str],
        vectors: np.ndarray,
        role: str,
        filters: Filters,
        passages: list[Passage],
        whole: Retrieval,
    ) -> list[Unit]:
        """The best unit or two for each question of a message, citing into one passage list."""
        chosen: list[Unit] = []
        seen: set[tuple[str, tuple[int, ...]]] = set()
        for part, vector in zip(parts, vectors, strict=True):
            found = self.retriever.retrieve(part, role, filters, vector=vector)
            if not found.passages:
                continue
            coverage = self._coverage(role, part, found.index or whole.index)
            for unit in self._select(part, found.passages, vector, coverage, filters.market, units=2).units:
                passage = found.passages[unit.passage]
                key = (passage.chunk_id, tuple(s.position for s in unit.segments))
                if key in seen:
                    continue
                seen.add(key)
                index = next((i for i, p in enumerate(passages) if p.chunk_id == passage.chunk_id), None)
                if index is None:
                    passages.append(passage)
                    index = len(passages) - 1
                unit.passage = index
                chosen.append(unit)
        return chosen

    def prepare(
        self,
        question: str,
        role: str = "customer",
        market: str | None = None,
        conversation: Sequence[Turn | dict[str, str]] | None = None,
        filters: Filters | None = None,
    ) -> tuple[Plan, Retrieval]:
        """Everything :meth:`ask` decides before writing: the plan, and the search for the whole message.

        Evaluation and model fitting read it directly; nothing here is shown to anyone.
        """
        question = self._validate(question, role)
        turns = as_turns(conversation)
        understood = understand(question, turns, self.retriever.lexical.for_role(role))
        query = self._rewritten(understood, turns)
        base = filters or Filters()
        chosen_market = understood.market or market or base.market
        return self.plan(understood, query, role, Filters(chosen_market, base.language, base.product, base.doc_id))

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
        turns = as_turns(conversation)
        plan, retrieval = self.prepare(question, role, market, turns, filters)
        question = plan.understood.text  # as validated
        query, chosen_market, decision = plan.query, plan.market, plan.decision

        generated = None
        used = self.generator.name
        if decision.verdict == "answer":
            coverage = plan.coverage
            try:
                generated = self.generator.generate(query, plan.passages, role, coverage, on_token, plan=plan)
            except Exception as exc:  # an unreachable or failing endpoint must not leave the user without an answer
                if self.generator is self._extractive:
                    raise
                log.warning("generator %s failed (%s); answering extractively", self.generator.name, type(exc).__name__)
                unavailable = f"{self.generator.name} generator unavailable ({type(exc).__name__})"
                generated = Generated(text="", cited=[], no_answer=True, fallback=True, flags=[unavailable])
            if generated.fallback:
                generated = self._answer_extractively(generated, query, plan, role, coverage, on_token)
                used = self._extractive.name
        if generated is None or generated.no_answer:
            answer = self._refuse(question, query, role, chosen_market, turns, retrieval, plan)
            if generated is not None and generated.flags:  # why a written reply became a refusal
                answer.flags = list(generated.flags)
        else:
            citations = [Citation.from_passage(n, plan.passages[i]) for n, i in enumerate(generated.cited, 1)]
            note = source_language_note(plan.understood.language, [c.language for c in citations])
            answer = Answer(
                question=question,
                search_query=query,
                role=role,
                text=f"{note}\n\n{generated.text}" if note else generated.text,
                citations=citations,
                confidence=decision.probability,
                refused=False,
                latency_ms=0.0,
                steps=generated.steps,
                generator=used,
                flags=generated.flags,
                usage=generated.usage,
            )
            if role != "customer":
                audiences = [str(p.metadata.get("audience", "")) for p in plan.passages]
                answer.suggested_reply = customer_reply(plan.units, audiences, self.settings.reply_opening)
        answer.market = chosen_market
        answer.latency_ms = (time.perf_counter() - started) * 1000
        log.info(
            "answered role=%s refused=%s verdict=%s confidence=%.2f citations=%d latency_ms=%.0f",
            role,
            answer.refused,
            decision.verdict,
            answer.confidence,
            len(answer.citations),
            answer.latency_ms,
        )
        return answer

    def _answer_extractively(
        self,
        instead_of: Generated,
        query: str,
        plan: Plan,
        role: str,
        coverage: CoverageFn,
        on_token: TokenCallback | None,
    ) -> Generated:
        """The offline answer in place of a writer that failed or whose reply was rejected.

        ``instead_of.flags`` say why (the endpoint failed, or :mod:`assist.reply_guard` rejected
        the model's reply); each is completed with what happened instead.
        """
        generated = self._extractive.generate(query, plan.passages, role, coverage, on_token, plan=plan)
        outcome = "no extractive answer either" if generated.no_answer else "answered extractively"
        generated.flags = [f"{flag}; {outcome}" for flag in instead_of.flags] + generated.flags
        generated.usage = generated.usage or instead_of.usage
        return generated

    def _coverage(self, role: str, query: str, index: ChunkIndex | None = None) -> CoverageFn:
        """How much of the query's idf mass a text covers, with the role's index statistics."""
        index = index or self.retriever.lexical.for_role(role)
        language = detect_language(query)
        # A country named in the question ("…in Sweden?") selects the market's documents; it is
        # not a topic the answer has to repeat, and its high idf would otherwise dominate. Nor is
        # the person asked about: agents say "the customer" in nearly every question.
        # "How long" asks for a duration: "long" is no topic an answer ("within 30 days") repeats.
        asked = _HOW_QUANTITY.sub(lambda m: m.group(1), query)
        words = [w for w in terms(asked, language) if w not in _NOT_TOPICS.get(language, frozenset())]
        return lambda text: index.coverage(words, text, language)

    def _refuse(
        self,
        question: str,
        query: str,
        role: str,
        market: str | None,
        turns: list[Turn],
        retrieval: Retrieval,
        plan: Plan,
    ) -> Answer:
        searched = {
            "query": query,
            "role": role,
            "filters": {k: v for k, v in vars(retrieval.filters).items() if v},
            "documents": sorted({p.doc_id for p in retrieval.passages}),
            "confidence": round(plan.decision.probability, 3),
        }
        refusals = sum(1 for t in turns if t.role == "assistant" and is_refusal(t.content))
        language = plan.understood.language
        answer = Answer(
            question=question,
            search_query=query,
            role=role,
            text="",
            citations=[],
            confidence=plan.decision.probability,
            refused=True,
            latency_ms=0.0,
            generator=self.generator.name,
        )
        related = plan.passages[:3] if plan.decision.verdict == "related" else []
        if role == "customer":
            answer.text = customer_refusal(language, refusals)
            if related:
                answer.citations = _distinct_articles(related)
                answer.text = related_articles(language, [(c.title, c.section, c.number) for c in answer.citations])
            earlier = [t.content for t in turns if t.role == "user"][-3:]
            summary = f"Customer asked: {question}"
            if earlier:
                summary += " | Earlier: " + " / ".join(earlier)
            reason = HANDOFF_RESTRICTED_TOPIC if self._staff_only(query, market) else HANDOFF_LOW_CONFIDENCE
            answer.handoff = Handoff(
                question, role, market, summary, searched, reason=reason, language=language
            )
        else:
            answer.text = AGENT_REFUSAL
            if related:
                answer.citations = _distinct_articles(related)
                answer.text += " Closest policies, none certain to apply: " + ", ".join(
                    f"{c.title} [{c.number}]" for c in answer.citations
                ) + "."
            escalation = self._escalation_path(role)
            if escalation:
                escalation = replace(escalation, number=len(answer.citations) + 1)
                answer.escalation = escalation
                answer.text += f" Follow the escalation path: {escalation.title} — {escalation.section} [{escalation.number}]"
                answer.citations = [*answer.citations, escalation]
        return answer

    def _staff_only(self, query: str, market: str | None) -> bool:
        """Whether staff documents would answer what a customer was refused (for the hand-off's reason only).

        Nothing of what is found reaches the customer: the hand-off records a reason code.
        """
        try:
            understood = understand(query, [], self.retriever.lexical.for_role("internal"))
            plan, _ = self.plan(understood, query, "internal", Filters(market))
        except Exception:  # a best-effort label must never turn a refusal into an error
            log.warning("could not check whether a refused question is for staff only")
            return False
        return plan.decision.verdict == "answer" and any(
            plan.passages[u.passage].metadata.get("audience") != "customer" for u in plan.units
        )

    def _escalation_path(self, role: str) -> Citation | None:
        """The knowledge base's own guidance for cases no policy covers, if it has some.

        Only a passage from a document or section that is about escalating or about uncovered
        cases counts: the best match for an escalation query in a knowledge base without such
        guidance is some unrelated section, and citing it as the way to escalate misleads.
        """
        found = self.retriever.retrieve(ESCALATION_QUERY, role, Filters(), k=3)
        for passage in found.passages:
            where = f"{passage.metadata.get('title', '')} {passage.metadata.get('section', '')}"
            if _ESCALATION_TOPIC.search(where) and passage.coverage >= 0.3:
                return Citation.from_passage(1, passage)
        return None


def _heading(passage: Passage) -> str:
    return str(passage.metadata.get("section", ""))


def _market_terms(language: str) -> frozenset[str]:
    return frozenset(t for names in MARKET_NAMES.values() for name in names for t in terms(name, language))


_PERSON_WORDS = {"en": "customer customers client clients", "de": "Kunde Kunden Kundin", "sv": "kund kunden kunder"}
_NOT_TOPICS = {
    language: _market_terms(language) | frozenset(terms(_PERSON_WORDS[language], language)) for language in ("en", "de", "sv")
}


def _own_model(settings: Settings, name: str) -> str | None:
    """A model fitted for this knowledge base (``models_dir``), when there is one."""
    if settings.models_dir is None:
        return None
    path = settings.models_dir / f"{name}.json"
    return str(path) if path.is_file() else None


def _distinct_articles(passages: Sequence[Passage]) -> list[Citation]:
    """One citation per document, numbered from 1, for "these articles look related"."""
    out: list[Citation] = []
    for passage in passages:
        if all(c.doc_id != passage.doc_id for c in out):
            out.append(Citation.from_passage(len(out) + 1, passage))
    return out


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

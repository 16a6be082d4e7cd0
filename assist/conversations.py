"""Ask and record: one service for every shell (web pages, the CLI) that asks on someone's behalf.

The assistant decides whether to answer or refuse; this service gives it the conversation so
far as context, stores the question, answer and turns (redacted by the state store), and turns
a request for a person into a stored hand-off with the right reason and triggering question.
It also restores a conversation by id, so a page can rebuild the chat after a reload and a
customer can come back to it.

``state=None`` records nothing (``kbassist ask --no-record``): answers are the same, nothing
is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

from assist.access import Filters
from assist.answer import Answer, Citation, Handoff
from assist.generation import TokenCallback
from assist.service import Assistant, requested_handoff

if TYPE_CHECKING:
    from kb.state.conversations import ConversationRecord, RatingValue
    from kb.state.handoffs import Contact, HandoffRecord, Handoffs, HandoffStatus
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

CONTEXT_TURNS = 8  # earlier messages (user and assistant) given to the assistant as context
Delivery = Literal["background", "inline", "off"]


@dataclass
class Exchange:
    """One question and its answer as shown on a page, with the ids it was recorded under."""

    question_id: int | None  # None when nothing is recorded
    answer: Answer
    ratings: list[str] = field(default_factory=list)
    conversation_id: str | None = None
    handoff: HandoffRecord | None = None  # set when the refusal was handed to a person at once


def _citations(answer: Answer) -> list[dict[str, object]]:
    return [asdict(c) for c in answer.citations]


def _citation(stored: dict[str, object]) -> Citation:
    """A stored citation back as the object pages render (fields missing from old rows left empty)."""
    names = Citation.__dataclass_fields__
    values = {name: stored.get(name, "") for name in names}
    values["number"] = int(stored.get("number", 0) or 0)  # type: ignore[call-overload]
    return Citation(**values)  # type: ignore[arg-type]


class ConversationService:
    """Asks through ``assistant`` and records in ``state`` (None: record nothing).

    ``deliver`` says how a new hand-off's webhook goes out: ``background`` (a thread, for a web
    server), ``inline`` (before returning, for a command that exits next) or ``off``.
    """

    def __init__(self, assistant: Assistant, state: StateStore | None, *, deliver: Delivery = "background") -> None:
        self.assistant = assistant
        self.state = state
        self.deliver = deliver

    @property
    def recording(self) -> bool:
        return self.state is not None

    def start(self, role: str, market: str | None = None, *, channel: Literal["web", "cli"] = "web") -> str | None:
        """A new conversation id (unguessable), or None when nothing is recorded."""
        if self.state is None:
            return None
        return self.state.conversations.start(role, market, channel=channel)

    def ask(
        self,
        question: str,
        *,
        role: str,
        market: str | None = None,
        conversation_id: str | None = None,
        history: Sequence[Exchange] | None = None,
        filters: Filters | None = None,
        on_token: TokenCallback | None = None,
        channel: Literal["web", "cli"] = "web",
        hand_off_on_refusal: bool = False,
    ) -> Exchange:
        """Ask with the conversation so far as context and record what happened.

        ``history`` is what the page holds; without it the stored turns of ``conversation_id`` are
        used (a customer who came back). A new conversation is started when none is given.
        ``hand_off_on_refusal`` stores the refusal's hand-off at once: for shells that cannot offer
        "talk to a person" (the CLI). Raises :class:`assist.service.QuestionError` for a question
        that cannot be asked, before anything is stored.
        """
        context = self._context(conversation_id, history)
        answer = self.assistant.ask(
            question, role=role, market=market, conversation=context, filters=filters, on_token=on_token
        )
        if self.state is None:
            return Exchange(None, answer)
        if conversation_id is None or not self.state.conversations.exists(conversation_id):
            conversation_id = self.state.conversations.start(role, market, channel=channel)
        question_id = self.state.conversations.log_question(
            conversation_id,
            role=role,
            market=market,
            question=answer.question,
            search_query=answer.search_query,
            answer=answer.text,
            refused=answer.refused,
            confidence=answer.confidence,
            doc_ids=[c.doc_id for c in answer.citations],
            citations=_citations(answer),
            latency_ms=answer.latency_ms,
            generator=answer.generator,
            language=answer.handoff.language if answer.handoff else None,
        )
        exchange = Exchange(question_id, answer, conversation_id=conversation_id)
        if hand_off_on_refusal and answer.handoff is not None:
            exchange.handoff = self._store_handoff(conversation_id, answer.handoff, question_id, market)
        return exchange

    def hand_off(
        self,
        conversation_id: str | None,
        exchanges: Sequence[Exchange],
        *,
        market: str | None,
        about: int | None = None,
        contact: Contact | None = None,
        customer_ref: str | None = None,
        role: str = "customer",
    ) -> HandoffRecord:
        """Store a customer's request for a person; ``about`` indexes the exchange it is about (None: general).

        The reason is what actually happened: ``low_confidence`` or ``restricted_topic`` when the
        request is about a refusal, ``customer_asked`` otherwise.
        """
        if self.state is None:
            raise RuntimeError("hand-offs need the state store; this service records nothing")
        if conversation_id is None or not self.state.conversations.exists(conversation_id):
            conversation_id = self.state.conversations.start(role, market)
        handoff = requested_handoff([e.answer for e in exchanges], market, about=about)
        question_id = exchanges[about].question_id if about is not None else None
        return self._store_handoff(conversation_id, handoff, question_id, market, contact, customer_ref)

    def _store_handoff(
        self,
        conversation_id: str,
        handoff: Handoff,
        question_id: int | None,
        market: str | None,
        contact: Contact | None = None,
        customer_ref: str | None = None,
    ) -> HandoffRecord:
        from kb.state.outbox import kick

        assert self.state is not None
        record = self.state.handoffs.create(
            conversation_id,
            question=handoff.question,
            summary=handoff.summary,
            searched=handoff.searched,
            reason=handoff.reason,
            market=market or handoff.market,
            language=handoff.language,
            question_id=question_id,
            contact=contact,
            customer_ref=customer_ref,
        )
        if self.deliver == "background":
            kick(self.state)
        elif self.deliver == "inline" and self.state.settings.handoff_webhook_url:
            report = self.state.outbox.deliver_due()
            log.info("webhook deliveries after hand-off id=%d: %s", record.id, report.summary())
        return record

    def load(self, conversation_id: str) -> ConversationRecord | None:
        """The stored conversation (turns, answers, ratings, hand-off status), or None for an unknown id."""
        return self.state.conversations.load(conversation_id) if self.state is not None else None

    def restore(self, conversation_id: str, *, rater: str | None = None) -> tuple[list[Exchange], HandoffRecord | None]:
        """A stored conversation as a page shows it: its exchanges (with ``rater``'s ratings) and latest hand-off.

        Unknown or malformed ids give no exchanges and no hand-off. The hand-off carries no contact details.
        """
        record = self.load(conversation_id)
        if record is None:
            return [], None
        exchanges = []
        for stored in record.exchanges:
            answer = Answer(
                question=stored.question,
                search_query=stored.search_query,
                role=record.role,
                text=stored.answer,
                citations=[_citation(c) for c in stored.citations],
                confidence=stored.confidence,
                refused=stored.refused,
                latency_ms=0.0,
                market=record.market,
            )
            given = [stored.ratings[rater]] if rater and rater in stored.ratings else []
            exchanges.append(Exchange(stored.question_id, answer, ratings=given, conversation_id=record.id))
        return exchanges, record.handoff

    def latest_handoff(self, conversation_id: str | None) -> HandoffRecord | None:
        """The conversation's latest hand-off as its customer may see it (status, reference; no contact)."""
        if self.state is None or not conversation_id:
            return None
        return self.state.handoffs.for_conversation(conversation_id)

    # -- the hand-off queue (staff) ---------------------------------------------------------------

    def handoff_queue(self, status: HandoffStatus | None = "open", limit: int = 200) -> list[HandoffRecord]:
        """Hand-offs newest first, with the customer's contact (for staff pages only)."""
        return self._queue().list(status, limit, include_contact=True)

    def read_handoff(self, handoff_id: int, *, actor: str) -> HandoffRecord:
        """One hand-off in full for ``actor`` (``account:<name>``); the reading is audited."""
        return self._queue().open_for_reading(handoff_id, actor=actor)

    def claim_handoff(self, handoff_id: int, agent: str, *, actor: str) -> HandoffRecord:
        return self._queue().claim(handoff_id, agent, actor=actor)

    def release_handoff(self, handoff_id: int, agent: str, *, actor: str) -> HandoffRecord:
        return self._queue().release(handoff_id, agent, actor=actor)

    def note_handoff(self, handoff_id: int, agent: str, text: str, *, actor: str) -> HandoffRecord:
        return self._queue().add_note(handoff_id, agent, text, actor=actor)

    def resolve_handoff(self, handoff_id: int, agent: str, note: str = "", *, actor: str) -> HandoffRecord:
        return self._queue().resolve(handoff_id, agent, note, actor=actor)

    def _queue(self) -> Handoffs:
        if self.state is None:
            raise RuntimeError("the hand-off queue needs the state store; this service records nothing")
        return self.state.handoffs

    def rate(self, question_id: int, rating: RatingValue, *, rater: str, comment: str = "") -> None:
        """One rating per answer per rater: rating again replaces the earlier one."""
        if self.state is not None:
            self.state.conversations.rate(question_id, rating, rater=rater, comment=comment)

    def _context(self, conversation_id: str | None, history: Sequence[Exchange] | None) -> list[dict[str, str]]:
        if history is not None:
            turns: list[dict[str, str]] = []
            for exchange in history[-(CONTEXT_TURNS // 2) :]:
                turns.append({"role": "user", "content": exchange.answer.question})
                turns.append({"role": "assistant", "content": exchange.answer.text})
            return turns
        if conversation_id and self.state is not None:
            messages = self.state.conversations.transcript(conversation_id)
            return [m for m in messages if m["role"] in ("user", "assistant")][-CONTEXT_TURNS:]
        return []

"""What the assistant returns: the answer text, its numbered citations, and the decision taken."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from assist.retrieval import Passage


@dataclass(frozen=True)
class Citation:
    """``[number]`` in the answer text maps to this passage."""

    number: int
    chunk_id: str
    doc_id: str
    title: str
    section: str
    version: str
    review_by: str
    passage: str
    language: str = ""  # the document's, so a reader sees an answer quoted from another language

    @classmethod
    def from_passage(cls, number: int, passage: Passage) -> Citation:
        meta = passage.metadata
        return cls(
            number=number,
            chunk_id=passage.chunk_id,
            doc_id=passage.doc_id,
            title=str(meta.get("title", "")),
            section=str(meta.get("section", "")),
            version=str(meta.get("version", "")),
            review_by=str(meta.get("review_by", "")),
            passage=passage.body,
            language=str(meta.get("language", "")),
        )


# Why a conversation goes to a person: the customer asked for one; nothing the customer may read
# answered with enough confidence; or only staff documents cover the question.
HANDOFF_CUSTOMER_ASKED = "customer_asked"
HANDOFF_LOW_CONFIDENCE = "low_confidence"
HANDOFF_RESTRICTED_TOPIC = "restricted_topic"


@dataclass
class Handoff:
    """Record created when the assistant cannot answer, for a human to pick up.

    ``question`` is the question that triggered it; empty when the customer asked for a person
    about nothing the assistant said (before asking anything, or about something else).
    """

    question: str
    role: str
    market: str | None
    summary: str
    searched: dict[str, Any]
    reason: str
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    language: str | None = None


@dataclass
class Answer:
    question: str
    search_query: str
    role: str
    text: str
    citations: list[Citation]
    confidence: float
    refused: bool
    latency_ms: float
    steps: list[str] = field(default_factory=list)
    suggested_reply: str | None = None
    handoff: Handoff | None = None
    escalation: Citation | None = None
    generator: str = "extractive"
    flags: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    market: str | None = None  # the market the answer was given for (asked, named or from the conversation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

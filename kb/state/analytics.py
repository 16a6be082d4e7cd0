"""What the knowledge-base owner reads: helpful rate, top unanswered questions, deflection over time.

Ratings count as they stand now (one per answer per rater, the last one given). A customer
question is *deflected* when it was answered and the customer did not need a person after it;
it is a *false deflection* when it was answered but then rated not helpful, or handed to a
person: a hand-off about that answer, or a general request for a person later in the same
conversation (the customer evidently still needed one).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from kb.state.models import Conversation, Handoff, Question, Rating

if TYPE_CHECKING:
    from kb.state.store import StateStore


def _normalise(question: str) -> str:
    """Grouping key for "the same question": case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^\w\s\[\]]", " ", question.lower()).split())


@dataclass(frozen=True)
class UnansweredQuestion:
    question: str
    count: int
    last_asked: str


@dataclass(frozen=True)
class DeflectionDay:
    """Customer questions of one day (UTC): asked, answered, deflected, falsely deflected, rated helpful."""

    day: str
    questions: int
    answered: int
    deflected: int
    false_deflections: int
    confirmed: int = 0  # answered and rated helpful: the customer said it resolved the question

    @property
    def deflection_rate(self) -> float:
        return self.deflected / self.questions if self.questions else 0.0

    @property
    def false_deflection_rate(self) -> float:
        return self.false_deflections / self.answered if self.answered else 0.0


@dataclass
class FeedbackSummary:
    counts: dict[str, int] = field(default_factory=dict)
    comments: list[tuple[str, str, str]] = field(default_factory=list)  # (rating, comment, question)

    @property
    def rated(self) -> int:
        return sum(self.counts.values())

    @property
    def helpful_rate(self) -> float | None:
        """Share of current ratings that are helpful or used in a reply; None before any rating."""
        positive = self.counts.get("helpful", 0) + self.counts.get("used", 0)
        return positive / self.rated if self.rated else None


class Analytics:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def feedback_summary(self, comments: int = 20, since: datetime | None = None) -> FeedbackSummary:
        counted = select(Rating.rating, func.count()).group_by(Rating.rating)
        latest = (
            select(Rating.rating, Rating.comment, Question.question)
            .join(Question, Question.id == Rating.question_id)
            .where(Rating.comment != "")
            .order_by(Rating.updated_at.desc(), Rating.id.desc())
            .limit(comments)
        )
        if since is not None:
            counted = counted.where(Rating.updated_at >= since)
            latest = latest.where(Rating.updated_at >= since)
        with self.store.read() as session:
            counts = {rating: n for rating, n in session.execute(counted).all()}
            rows = session.execute(latest).all()
        return FeedbackSummary(counts, [(r, c, q) for r, c, q in rows])

    def top_unanswered(self, limit: int = 10, role: str | None = None) -> list[UnansweredQuestion]:
        """Refused questions grouped by normalised text, most frequent first."""
        query = select(Question.question, Question.asked_at).where(Question.refused.is_(True))
        if role:
            query = query.where(Question.role == role)
        with self.store.read() as session:
            rows = session.execute(query).all()
        groups: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        for question, asked_at in rows:
            groups[_normalise(question)].append((question, asked_at))
        ranked = sorted(groups.values(), key=lambda g: (-len(g), -max(a for _, a in g).timestamp()))
        result = []
        for group in ranked[:limit]:
            wording = Counter(q for q, _ in group).most_common(1)[0][0]
            last = max(a for _, a in group).isoformat(timespec="seconds")
            result.append(UnansweredQuestion(wording, len(group), last))
        return result

    def deflection_by_day(self, since: datetime | None = None) -> list[DeflectionDay]:
        """Deflection and false deflection of customer questions, per UTC day, oldest first."""
        questions_q = (
            select(Question.id, Question.conversation_id, Question.asked_at, Question.refused)
            .where(Question.role == "customer")
            .order_by(Question.id)
        )
        if since is not None:
            questions_q = questions_q.where(Question.asked_at >= since)
        with self.store.read() as session:
            questions = session.execute(questions_q).all()
            handoffs = session.execute(select(Handoff.question_id, Handoff.conversation_id, Handoff.created_at)).all()
            ratings = session.execute(select(Rating.question_id, Rating.rating)).all()
        about = {qid for qid, _, _ in handoffs if qid is not None}
        general: dict[str, list[datetime]] = defaultdict(list)
        for qid, conversation_id, created_at in handoffs:
            if qid is None:
                general[conversation_id].append(created_at)
        unhelpful = {qid for qid, rating in ratings if rating == "not_helpful"}
        helpful = {qid for qid, rating in ratings if rating == "helpful"}

        days: dict[str, list[int]] = {}
        for qid, conversation_id, asked_at, refused in questions:
            counts = days.setdefault(asked_at.date().isoformat(), [0, 0, 0, 0, 0])
            counts[0] += 1
            if refused:
                continue
            counts[1] += 1
            handed = qid in about or any(at >= asked_at for at in general.get(conversation_id, ()))
            if not handed:
                counts[2] += 1
            if handed or qid in unhelpful:
                counts[3] += 1
            if qid in helpful and not handed:
                counts[4] += 1
        return [DeflectionDay(day, *counts) for day, counts in sorted(days.items())]

    def counts(self) -> dict[str, int]:
        """Row counts for a quick overview."""
        with self.store.read() as session:
            return {
                name: session.scalar(select(func.count()).select_from(model)) or 0
                for name, model in (
                    ("conversations", Conversation),
                    ("questions", Question),
                    ("feedback", Rating),
                    ("handoffs", Handoff),
                )
            }

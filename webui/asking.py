"""Asking the assistant from a page: streaming into a placeholder, then logging what happened.

The assistant decides whether to answer or refuse; this module only carries the question in,
shows tokens as they arrive, and records the outcome (redacted) in the interaction log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from assist.access import Filters
from assist.answer import Answer
from webui.services import Services


@dataclass
class Exchange:
    """One question and its answer as shown on a page, with the id it was logged under."""

    question_id: int
    answer: Answer
    ratings: list[str]


def ask_and_log(
    services: Services,
    conversation_id: str,
    question: str,
    *,
    role: str,
    market: str | None,
    history: Sequence[Exchange],
    filters: Filters | None = None,
    stream_into: st.delta_generator.DeltaGenerator | None = None,
) -> Exchange:
    """Ask with the earlier exchanges as context; stream tokens into ``stream_into`` when an LLM writes them.

    Raises :class:`assist.service.QuestionError` for a question that cannot be asked.
    """
    conversation = []
    for exchange in history[-4:]:
        conversation.append({"role": "user", "content": exchange.answer.question})
        conversation.append({"role": "assistant", "content": exchange.answer.text})
    on_token = None
    if stream_into is not None and services.llm_enabled:
        streamed: list[str] = []

        def on_token(token: str) -> None:
            streamed.append(token)
            stream_into.markdown("".join(streamed) + " ▌")

    answer = services.assistant.ask(
        question, role=role, market=market, conversation=conversation, filters=filters, on_token=on_token
    )
    question_id = services.interactions.log_question(
        conversation_id,
        role=role,
        market=market,
        question=answer.question,
        search_query=answer.search_query,
        answer=answer.text,
        refused=answer.refused,
        confidence=answer.confidence,
        doc_ids=[c.doc_id for c in answer.citations],
        latency_ms=answer.latency_ms,
        generator=answer.generator,
    )
    return Exchange(question_id, answer, [])

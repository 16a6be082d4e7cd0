"""Asking the assistant from a page: streaming into a placeholder; recording is the service's job.

The assistant decides whether to answer or refuse, and :class:`assist.conversations.ConversationService`
records the outcome (redacted); this module only carries the question in and shows tokens as
they arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from assist.access import Filters
from assist.conversations import Exchange
from webui.services import Services

__all__ = ["Exchange", "ask_and_log"]


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
    shown: Callable[[str], str] = str,
) -> Exchange:
    """Ask with the earlier exchanges as context; stream tokens into ``stream_into`` when an LLM writes them.

    ``shown`` turns the text so far into what the page may render (the customer chat's sanitiser).

    Raises :class:`assist.service.QuestionError` for a question that cannot be asked.
    """
    on_token = None
    if stream_into is not None and services.llm_enabled:
        streamed: list[str] = []

        def on_token(token: str) -> None:
            streamed.append(token)
            stream_into.markdown(shown("".join(streamed)) + " ▌")

    return services.conversations.ask(
        question,
        role=role,
        market=market,
        conversation_id=conversation_id,
        history=history,
        filters=filters,
        on_token=on_token,
    )

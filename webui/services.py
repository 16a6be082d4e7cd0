"""Long-lived objects the web app shares between reruns and sessions, built once per process.

Loading the embedding model and opening the store takes seconds; Streamlit reruns the script on
every click, so everything here sits behind ``st.cache_resource``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from assist.conversations import ConversationService
from assist.service import Assistant
from kb.settings import Settings, load_settings
from kb.state import SchemaTooNew, StateUnavailable
from kb.state.store import StateStore, open_state
from kb.store import KnowledgeStore, StoreUnavailable

log = logging.getLogger(__name__)

# The staff app's workspaces and who may open them; the customer chat is app_customer.py's alone.
WORKSPACES = {"agent": "Agent assist", "owner": "Knowledge base"}
ROLE_WORKSPACES = {"agent": ("agent",), "owner": ("agent", "owner")}


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: KnowledgeStore
    assistant: Assistant
    state: StateStore
    conversations: ConversationService

    @property
    def llm_enabled(self) -> bool:
        return bool(self.settings.llm_base_url)


@st.cache_resource(show_spinner="Loading the knowledge base…")
def get_services() -> Services:
    """Settings, store, assistant and state store: built on first use, shared afterwards."""
    settings = load_settings()
    store = KnowledgeStore(settings)
    assistant = Assistant(store, settings)
    state = open_state(settings)
    services = Services(settings, store, assistant, state, ConversationService(assistant, state))
    log.info("web app services ready: documents=%d", len(store.documents()))
    return services


def services_or_stop(message: Callable[[Exception], str]) -> Services:
    """The shared services, or ``message(exc)`` on the page and the end of this run."""
    try:
        return get_services()
    except (StoreUnavailable, StateUnavailable, SchemaTooNew, ValueError) as exc:
        log.error("web app services unavailable: %s", exc)
        st.error(message(exc), icon=":material/error:")
        st.stop()
        raise  # unreachable: st.stop() ends the run

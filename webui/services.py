"""Long-lived objects the web app shares between reruns and sessions, built once per process.

Loading the embedding model and opening the store takes seconds; Streamlit reruns the script on
every click, so everything here sits behind ``st.cache_resource``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import streamlit as st

from assist.conversations import ConversationService
from assist.service import Assistant
from kb.settings import Settings, load_settings
from kb.state.store import StateStore, open_state
from kb.store import KnowledgeStore

log = logging.getLogger(__name__)

WORKSPACES = {"agent": "Agent assist", "customer": "Customer chat", "owner": "Knowledge base"}


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: KnowledgeStore
    assistant: Assistant
    state: StateStore
    conversations: ConversationService

    @property
    def workspaces(self) -> list[str]:
        """Workspaces this deployment exposes, in a stable order (unknown names are ignored)."""
        wanted = {w.strip().lower() for w in self.settings.app_workspaces.split(",")}
        return [w for w in WORKSPACES if w in wanted] or ["customer"]

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

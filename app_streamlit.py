"""kbassist web app: agent assist, customer chat and the knowledge-base owner's workspace.

Run with ``streamlit run app_streamlit.py``. This file only lays out the page and routes to a
workspace; every decision (answer or refuse, what a role may read) is made in ``assist`` and
everything stored goes through the state store (``kb.state``). ``?workspace=customer`` opens a workspace
directly; ``KBASSIST_APP_WORKSPACES`` limits which ones a deployment shows.
"""

from __future__ import annotations

import logging

import streamlit as st

from kb.state import SchemaTooNew, StateUnavailable
from kb.store import StoreUnavailable
from webui import agent, customer, owner
from webui.services import WORKSPACES, Services, get_services

PAGES = {"agent": agent.render, "customer": customer.render, "owner": owner.render}

log = logging.getLogger(__name__)


def _services() -> Services:
    try:
        return get_services()
    except (StoreUnavailable, StateUnavailable, SchemaTooNew, ValueError) as exc:
        st.error(f"The knowledge base cannot be opened: {exc}")
        st.stop()
        raise  # unreachable: st.stop() ends the run


def main() -> None:
    st.set_page_config(page_title="kbassist", page_icon=":material/menu_book:", layout="wide")
    services = _services()
    available = services.workspaces
    requested = st.query_params.get("workspace")
    if "workspace" not in st.session_state:
        st.session_state["workspace"] = requested if requested in available else available[0]
    if len(available) > 1:
        with st.sidebar:
            st.radio("Workspace", available, format_func=WORKSPACES.__getitem__, key="workspace")
    if services.settings.is_demo:
        st.sidebar.caption("Demo knowledge base (KBASSIST_KB=demo); your own is the default one.")
    workspace = st.session_state["workspace"] if st.session_state["workspace"] in available else available[0]
    if st.query_params.get("workspace") != workspace:
        st.query_params["workspace"] = workspace
    _render(workspace, services)


def _render(workspace: str, services: Services) -> None:
    """Show a workspace; a store that fails mid-page (server gone, disk full) becomes one message.

    Whatever was stored before the failure is intact, and the next rerun after the store is
    back works without a restart. Customers are told to try again, without server names or
    paths; staff see what is wrong.
    """
    try:
        PAGES[workspace](services)
    except (StoreUnavailable, StateUnavailable) as exc:
        log.error("workspace=%s failed: %s", workspace, exc)
        if workspace == "customer":
            st.error(customer.UNAVAILABLE, icon=":material/error:")
        else:
            st.error(f"The knowledge base can't be used right now: {exc}", icon=":material/error:")


if __name__ == "__main__":
    main()

"""kbassist staff app: agent assist and the knowledge-base owner's workspace, behind staff sign-in.

Run with ``streamlit run app_streamlit.py`` on a private address; customers use ``app_customer.py``,
which serves the chat alone. This file only lays out the page and routes to a workspace; every
decision (answer or refuse, what a role may read) is made in ``assist`` and everything stored goes
through the state store (``kb.state``). Nothing of a workspace is drawn before a valid session:
agents see agent assist, owners agent assist and the knowledge base. ``?workspace=owner`` opens a
workspace directly when the signed-in account may open it, and is ignored otherwise.
"""

from __future__ import annotations

import logging

import streamlit as st

from kb.state import StateUnavailable
from kb.state.accounts import StaffIdentity
from kb.store import StoreUnavailable
from webui import agent, owner, signin
from webui.common import page_style
from webui.services import ROLE_WORKSPACES, WORKSPACES, Services, services_or_stop

log = logging.getLogger(__name__)


def main() -> None:
    st.set_page_config(page_title="kbassist staff", page_icon=":material/menu_book:", layout="wide")
    page_style()
    services = services_or_stop(lambda exc: f"The knowledge base cannot be opened: {exc}")
    identity = signin.require_staff(services)  # the sign-in page and st.stop() without a valid session
    available = list(ROLE_WORKSPACES.get(identity.role, ()))
    if not available:  # a role this page does not know opens nothing
        st.error("This account has no workspace.")
        signin.render_signed_in(services, identity)
        return
    requested = st.query_params.get("workspace")
    if st.session_state.get("workspace") not in available:
        st.session_state["workspace"] = requested if requested in available else available[0]
    if len(available) > 1:
        with st.sidebar:
            st.radio("Workspace", available, format_func=WORKSPACES.__getitem__, key="workspace")
    signin.render_signed_in(services, identity)
    if services.settings.is_demo:
        st.sidebar.caption("Demo knowledge base (KBASSIST_KB=demo); your own is the default one.")
    workspace = st.session_state["workspace"]
    if st.query_params.get("workspace") != workspace:
        st.query_params["workspace"] = workspace
    _render(workspace, services, identity)


def _render(workspace: str, services: Services, identity: StaffIdentity) -> None:
    """Show a workspace; a store that fails mid-page (server gone, disk full) becomes one message.

    Whatever was stored before the failure is intact, and the next rerun after the store is
    back works without a restart.
    """
    try:
        if workspace == "owner" and identity.is_owner:
            owner.render(services, identity)
        else:
            agent.render(services, identity)
    except (StoreUnavailable, StateUnavailable) as exc:
        log.error("workspace=%s failed: %s", workspace, exc)
        st.error(f"The knowledge base can't be used right now: {exc}", icon=":material/error:")


if __name__ == "__main__":
    main()

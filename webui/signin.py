"""Staff sign-in for the agent and owner workspaces.

The session token lives in ``st.session_state`` (one browser tab; a reload signs in again) and
is checked against the state store on every rerun, so expiry, sign-out, a password reset and a
removed account all take effect on the next click. Nothing of a workspace is drawn before
:func:`require_staff` returns an identity. Sign-ins are audited by ``kb.state.accounts`` itself
(success and failure, with the reason for owners); the page shows one message for an unknown
name and a wrong password.
"""

from __future__ import annotations

import streamlit as st

from kb.state.accounts import StaffIdentity, authenticate, has_accounts, sign_out, validate_session
from webui.services import Services

TOKEN_KEY = "staff_token"
SIGNED_OUT_KEY = "staff_signed_out"
NO_ACCOUNTS = (
    "No staff account exists yet. On the server, create the first owner account with "
    "`kbassist users add NAME --role owner` (the password is asked for twice), then reload this page. "
    "There are no default credentials."
)


def actor(identity: StaffIdentity) -> str:
    """How the audit log names a signed-in member of staff (the same as their sign-in entries)."""
    return f"account:{identity.username}"


def current_identity(services: Services) -> StaffIdentity | None:
    """The signed-in member of staff, checked against the store now; a dead token is forgotten."""
    token = st.session_state.get(TOKEN_KEY)
    if not token:
        return None
    identity = validate_session(services.state, token)
    if identity is None:
        _forget_session()
    return identity


def require_staff(services: Services) -> StaffIdentity:
    """The signed-in member of staff, or the sign-in page and the end of this run."""
    identity = current_identity(services)
    if identity is not None:
        return identity
    _signin_page(services)
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the run")


def render_signed_in(services: Services, identity: StaffIdentity) -> None:
    """Who is signed in, and the way out (in the sidebar)."""
    with st.sidebar:
        st.caption(f"Signed in as **{identity.username}** ({identity.role})")
        st.button("Sign out", key="staff_signout", icon=":material/logout:", on_click=_sign_out, args=(services,))


def _signin_page(services: Services) -> None:
    st.title("Sign in")
    if st.session_state.pop(SIGNED_OUT_KEY, False):
        st.success("You are signed out.", icon=":material/logout:")
    if not has_accounts(services.state):
        st.info(NO_ACCOUNTS, icon=":material/person_add:")
        return
    st.caption("Agent assist and the knowledge-base workspace are for staff accounts.")
    with st.form("staff_signin", clear_on_submit=True):
        username = st.text_input("User name", key="signin_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="signin_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    if not username.strip() or not password:
        st.error("Enter your user name and password.", icon=":material/error:")
        return
    result = authenticate(services.state, username, password, client_key=_client_key())
    if not result.ok or result.token is None:
        st.error(result.message, icon=":material/lock:")
        return
    st.session_state[TOKEN_KEY] = result.token
    st.rerun()


def _client_key() -> str:
    """What the page knows of the client for throttling: its address (behind a proxy, the proxy's)."""
    try:
        address = st.context.ip_address
    except (AttributeError, RuntimeError):
        address = None
    return f"ip:{address}" if address else ""


def _sign_out(services: Services) -> None:
    """Button callback: end the session in the store and drop everything this tab held."""
    sign_out(services.state, st.session_state.get(TOKEN_KEY))
    _forget_session()
    st.session_state[SIGNED_OUT_KEY] = True


def _forget_session() -> None:
    """Clear the tab's state (token, workspace, conversations, drafts), so the next person starts clean."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]

"""kbassist customer app: the self-service help-centre chat and nothing else.

Run with ``streamlit run app_customer.py``; this is the one to put behind a public reverse proxy.
It imports no staff workspace and offers no navigation; the one query parameter it reads is the
customer's own conversation id (``?c=``), so no URL leads from here to agent assist or the
knowledge-base tools (those are ``app_streamlit.py``, behind staff sign-in, on a private address). Customers never see server names or paths: failures are
logged for the operators and shown as one polite message.
"""

from __future__ import annotations

import logging

import streamlit as st

from kb.state import StateUnavailable
from kb.store import StoreUnavailable
from webui import customer
from webui.services import services_or_stop

log = logging.getLogger(__name__)
NO_MENU = {"Get help": None, "Report a bug": None, "About": None}


def main() -> None:
    # No Streamlit menu for customers: no "About", "Report a bug" or "Get help" entries (with the
    # toolbar in "minimal" mode, .streamlit/config.toml, nothing else is added to it either).
    page = {"page_icon": ":material/support_agent:", "layout": "centered", "menu_items": NO_MENU}
    st.set_page_config(page_title="Help centre", **page)
    services = services_or_stop(lambda exc: customer.UNAVAILABLE)
    st.set_page_config(page_title=services.settings.page_title, **page)
    try:
        customer.render(services)
    except (StoreUnavailable, StateUnavailable) as exc:
        log.error("customer chat failed: %s", exc)
        st.error(customer.UNAVAILABLE, icon=":material/error:")


if __name__ == "__main__":
    main()

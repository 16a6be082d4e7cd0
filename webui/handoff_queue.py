"""The hand-off queue in the agent workspace: conversations passed to a person, from open to resolved.

Agents see the queue newest first (why it was handed off, market, language, the triggering
question, the customer's contact if they left one), open one to read the stored (redacted)
transcript, claim it, write notes and resolve it. Everything goes through
:class:`assist.conversations.ConversationService`; every action, reading included, is audited
as the signed-in account (``account:<name>``).
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from kb.state.accounts import StaffIdentity
from kb.state.handoffs import HandoffConflict, HandoffNotFound, HandoffRecord
from webui import signin
from webui.safe_markdown import safe_markdown
from webui.services import Services

REASONS = {
    "customer_asked": "Customer asked for a person",
    "low_confidence": "Low confidence",
    "restricted_topic": "Restricted topic",
}
STATUSES = {"open": "Open", "claimed": "Being handled", "resolved": "Resolved"}
VIEWS = {"active": "Open and being handled", "open": "Open", "claimed": "Being handled", "resolved": "Resolved"}


TAB = "Hand-off queue"  # one fixed name: a tab whose name changes is a new tab, and the page would jump away


def _counts_line(services: Services) -> str:
    counts = services.state.handoffs.counts()
    return f"{counts.get('open', 0)} open · {counts.get('claimed', 0)} being handled"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _contact(record: HandoffRecord) -> str:
    if record.contact is None:
        return ""
    return f"{'E-mail' if record.contact.kind == 'email' else 'Phone'}: {record.contact.value}"


def _status(record: HandoffRecord) -> str:
    if record.status == "claimed":
        return f"Being handled by {record.claimed_by}"
    if record.status == "resolved":
        return f"Resolved by {record.resolved_by}"
    return "Open"


def render(services: Services, identity: StaffIdentity) -> None:
    st.caption(_counts_line(services))
    view = st.selectbox("Show", list(VIEWS), format_func=VIEWS.__getitem__, key="agent_queue_view")
    status = None if view == "active" else view
    records = services.conversations.handoff_queue(status)  # type: ignore[arg-type]
    if view == "active":
        records = [r for r in records if r.status != "resolved"]
    if not records:
        st.info("No hand-offs here. Conversations customers pass to a person appear in this queue.")
        return
    st.dataframe(
        [
            {
                "Reference": r.reference,
                "Created": _when(r.created_at),
                "Reason": REASONS.get(r.reason, r.reason),
                "Market": r.market or "",
                "Language": r.language or "",
                "Question": r.question or "(none: asked for a person)",
                "Contact": _contact(r),
                "Status": _status(r),
            }
            for r in records
        ],
        hide_index=True,
        width="stretch",
    )
    by_reference = {r.reference: r for r in records}
    chosen = st.selectbox(
        "Open a hand-off",
        list(by_reference),
        index=None,
        placeholder="Choose a reference",
        format_func=lambda ref: f"{ref} · {REASONS.get(by_reference[ref].reason, '')} · "
        f"{(by_reference[ref].question or 'asked for a person')[:60]}",
        key="agent_handoff_pick",
    )
    if chosen is not None:
        _detail(services, identity, by_reference[chosen].id)


def _detail(services: Services, identity: StaffIdentity, handoff_id: int) -> None:
    actor = signin.actor(identity)
    viewed: set[int] = st.session_state.setdefault("agent_handoffs_viewed", set())
    try:
        if handoff_id in viewed:  # read once per session is audited once
            record = services.state.handoffs.get(handoff_id, include_contact=True)
            if record is None:
                raise HandoffNotFound(f"no hand-off H-{handoff_id}")
        else:
            record = services.conversations.read_handoff(handoff_id, actor=actor)
            viewed.add(handoff_id)
    except HandoffNotFound as exc:
        st.error(str(exc))
        return

    st.header(f"{record.reference} — {REASONS.get(record.reason, record.reason)}")  # h2 under the page title
    st.markdown(f"**Status:** {_status(record)}")
    facts = [
        f"created {_when(record.created_at)}",
        f"market {record.market or '—'}",
        f"language {record.language or '—'}",
    ]
    if record.claimed_at:
        facts.append(f"claimed {_when(record.claimed_at)} by {record.claimed_by}")
    if record.resolved_at:
        facts.append(f"resolved {_when(record.resolved_at)} by {record.resolved_by}")
    st.caption(" · ".join(facts))
    if record.question:
        st.markdown("**Question that triggered it**")
        st.text(record.question)
    if record.contact is not None:
        st.markdown(f"**Customer contact** — {_contact(record)}")
        st.caption(f"Given with consent to: “{record.contact.consent_text}”")
    else:
        st.caption("The customer left no contact details.")

    st.markdown("**Transcript** (as stored, redacted)")
    if not record.transcript:
        st.caption("No messages: the customer asked for a person before asking anything.")
    for turn in record.transcript:
        with st.chat_message("user" if turn.get("role") == "user" else "assistant"):
            st.markdown(safe_markdown(turn.get("content", "")))
    if record.searched:
        documents = ", ".join(record.searched.get("documents", [])) or "none"
        st.caption(f"Searched: “{record.searched.get('query', '')}” · documents: {documents}")

    if record.notes:
        st.markdown("**Notes**")
        for note in record.notes:
            st.caption(f"{note.author} · {_when(note.created_at)}")
            st.text(note.text)

    _actions(services, identity, record)


def _actions(services: Services, identity: StaffIdentity, record: HandoffRecord) -> None:
    actor, me, ref = signin.actor(identity), identity.username, record.reference
    if record.status == "resolved":
        return
    mine = record.status == "claimed" and record.claimed_by == me
    try:
        if record.status == "open":
            if st.button("Claim", type="primary", icon=":material/front_hand:", key=f"agent_handoff_claim_{record.id}"):
                services.conversations.claim_handoff(record.id, me, actor=actor)
                st.rerun()
        elif mine:
            if st.button("Put back in the queue", key=f"agent_handoff_release_{record.id}"):
                services.conversations.release_handoff(record.id, me, actor=actor)
                st.rerun()
        else:
            st.caption(f"{record.claimed_by} is handling {ref}; only they can resolve it.")

        with st.form(f"agent_handoff_note_{record.id}", clear_on_submit=True):
            note = st.text_area("Note", key=f"agent_handoff_note_text_{record.id}", placeholder="What you did or found")
            add = st.form_submit_button("Add note", key=f"agent_handoff_note_add_{record.id}")
        if add:
            if note.strip():
                services.conversations.note_handoff(record.id, me, note, actor=actor)
                st.rerun()
            st.warning("Write something first.")

        if record.status == "open" or mine:
            with st.form(f"agent_handoff_resolve_{record.id}", clear_on_submit=True):
                outcome = st.text_input("How was it resolved? (optional)", key=f"agent_handoff_outcome_{record.id}")
                done = st.form_submit_button(
                    "Resolve", icon=":material/task_alt:", key=f"agent_handoff_resolve_go_{record.id}"
                )
            if done:
                services.conversations.resolve_handoff(record.id, me, outcome, actor=actor)
                st.rerun()
    except (HandoffConflict, HandoffNotFound) as exc:
        st.error(str(exc))

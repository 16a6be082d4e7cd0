"""The hand-off queue and its way out to the help desk, on SQLite and PostgreSQL.

Claims race for real: threads, and separate processes, each with their own connections, released
together by a barrier; exactly one may win. Webhooks go to a real local HTTP server that checks
the signature the way a receiver would, fails the first attempts, then accepts.
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from kb.settings import Settings
from kb.state.handoffs import Contact, HandoffConflict, HandoffNotFound
from kb.state.outbox import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from kb.state.store import StateStore
from kb.state.types import utcnow

SECRET = "test-webhook-secret"
AGENTS = ("alice", "bob", "carol", "dave", "erin", "frank")
PASSWORD = "correct horse battery"


def _store(url: str, **settings: Any) -> StateStore:
    return StateStore(url, Settings(**settings))


def _handoff(store: StateStore, contact: Contact | None = None) -> int:
    conversation = store.conversations.start("customer", "SE")
    store.conversations.log_question(
        conversation, role="customer", market="SE", question="Can I pay with gold bars? a@b.se",
        search_query="gold bars", answer="I'm sorry", refused=True, confidence=0.1, doc_ids=[], latency_ms=1.0,
        generator="extractive",
    )  # fmt: skip
    return store.handoffs.create(
        conversation, question="Can I pay with gold bars? a@b.se", summary="Customer asked: gold bars",
        searched={"query": "gold bars", "documents": []}, reason="low_confidence", market="SE", language="en",
        contact=contact,
    ).id  # fmt: skip


def _staff(store: StateStore, names: tuple[str, ...] = AGENTS) -> None:
    for name in names:
        store.accounts.add(name, PASSWORD, "agent", actor="cli:test")


# -- lifecycle ------------------------------------------------------------------------------------------


def test_open_claimed_resolved_with_notes_and_a_truthful_customer_status(state_url: str) -> None:
    store = _store(state_url)
    _staff(store, ("alice", "bob"))
    hid = _handoff(store)
    assert store.handoffs.get(hid).customer_status == "waiting for a person"
    assert [h.id for h in store.handoffs.list("open")] == [hid]

    claimed = store.handoffs.claim(hid, "alice")
    assert claimed.status == "claimed" and claimed.claimed_by == "alice"
    assert claimed.customer_status == "a person is looking at it"
    with pytest.raises(HandoffConflict, match="already claimed by alice"):
        store.handoffs.claim(hid, "bob")
    with pytest.raises(HandoffConflict, match="claimed by alice, not bob"):
        store.handoffs.resolve(hid, "bob")
    store.handoffs.release(hid, "alice")
    store.handoffs.claim(hid, "bob")
    store.handoffs.add_note(hid, "bob", "Called the customer on +46 70 123 45 67")
    resolved = store.handoffs.resolve(hid, "bob", note="Explained that we take cards and invoices")
    assert resolved.status == "resolved" and resolved.customer_status == "resolved"
    assert [(n.author, n.text) for n in resolved.notes] == [
        ("bob", "Called the customer on [phone]"),
        ("bob", "Explained that we take cards and invoices"),
    ]
    with pytest.raises(HandoffConflict, match="already resolved"):
        store.handoffs.claim(hid, "alice")
    with pytest.raises(HandoffNotFound):
        store.handoffs.claim(hid + 100, "alice")
    with pytest.raises(HandoffConflict, match="no staff account"):
        store.handoffs.claim(_handoff(store), "mallory")
    actions = [e.action for e in store.audit_log.entries(action="handoff.*")]
    assert actions == ["handoff.resolve", "handoff.note", "handoff.claim", "handoff.release", "handoff.claim"]
    assert store.handoffs.counts() == {"open": 1, "claimed": 0, "resolved": 1}


def test_contact_details_need_consent_and_a_plausible_value() -> None:
    with pytest.raises(ValueError, match="consent"):
        Contact("email", "jo@example.com", consent=False, consent_text="You may e-mail me.")
    with pytest.raises(ValueError, match="consent"):
        Contact("email", "jo@example.com", consent=True, consent_text=" ")
    with pytest.raises(ValueError, match="e-mail address"):
        Contact("email", "not an address", consent=True, consent_text="You may e-mail me.")
    with pytest.raises(ValueError, match="phone number"):
        Contact("phone", "12", consent=True, consent_text="You may call me.")
    assert Contact("phone", "+46 70-123 45 67", consent=True, consent_text="You may call me.").kind == "phone"


def test_a_reason_must_be_one_the_queue_knows(state_url: str) -> None:
    store = _store(state_url)
    conversation = store.conversations.start("customer")
    with pytest.raises(ValueError, match="reason"):
        store.handoffs.create(conversation, question="q", summary="s", searched={}, reason="low retrieval confidence",
                              market=None)  # type: ignore[arg-type]  # fmt: skip


# -- racing claims -----------------------------------------------------------------------------------------


def _claim_at_barrier(store: StateStore, hid: int, agent: str, barrier: Any) -> str:
    barrier.wait()
    try:
        return store.handoffs.claim(hid, agent).claimed_by or ""
    except HandoffConflict:
        return ""


def test_two_agents_claiming_at_once_exactly_one_wins_threads(state_url: str) -> None:
    store = _store(state_url)
    _staff(store)
    for _ in range(5):  # a few rounds: the race must be decided the same way every time
        hid = _handoff(store)
        barrier = threading.Barrier(len(AGENTS))
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda a=a, h=hid, b=barrier, r=results: r.append(_claim_at_barrier(store, h, a, b)))
            for a in AGENTS
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        winners = [r for r in results if r]
        assert len(results) == len(AGENTS) and len(winners) == 1
        assert store.handoffs.get(hid).claimed_by == winners[0]


def _claim_in_process(url: str, hid: int, agent: str, barrier: Any, out: Any) -> None:
    store = StateStore(url, Settings())
    out.put((agent, _claim_at_barrier(store, hid, agent, barrier)))
    store.dispose()


def test_two_agents_claiming_at_once_exactly_one_wins_processes(state_url: str) -> None:
    store = _store(state_url)
    agents = AGENTS[:4]
    _staff(store, agents)
    hid = _handoff(store)
    store.dispose()
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(agents)), ctx.Queue()
    processes = [ctx.Process(target=_claim_in_process, args=(state_url, hid, a, barrier, out)) for a in agents]
    for p in processes:
        p.start()
    results = dict(out.get(timeout=120) for _ in agents)
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    winners = [agent for agent, won in results.items() if won]
    assert len(winners) == 1
    assert _store(state_url).handoffs.get(hid).claimed_by == winners[0]


# -- webhooks ----------------------------------------------------------------------------------------------


class HelpDesk:
    """A receiver on 127.0.0.1 that verifies each request like a real one, failing the first ``fail`` times."""

    def __init__(self, fail: int = 0, secret: str = SECRET) -> None:
        self.fail = fail
        self.secret = secret.encode()
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.lock = threading.Lock()
        desk = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(desk.secret, body, self.headers[TIMESTAMP_HEADER], self.headers[SIGNATURE_HEADER],
                            now=int(self.headers[TIMESTAMP_HEADER]))  # fmt: skip
                with desk.lock:
                    if not ok:
                        desk.rejected.append(self.headers[DELIVERY_HEADER])
                        status = 401
                    else:
                        desk.requests.append({"headers": dict(self.headers), "body": json.loads(body)})
                        status = 500 if len(desk.requests) <= desk.fail else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/kbassist"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HelpDesk:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def desk() -> Iterator[HelpDesk]:
    with HelpDesk(fail=2) as server:
        yield server


def _webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"handoff_webhook_url": url, "handoff_webhook_secret": SECRET, "handoff_webhook_backoff_s": 30.0,
            "handoff_webhook_max_attempts": 4, **extra}  # fmt: skip


def test_signature_is_hmac_sha256_over_timestamp_and_raw_body() -> None:
    body = b'{"event": "handoff.created"}'
    signature = sign(b"s3cret", 1_700_000_000, body)
    assert signature == "v1=" + __import__("hmac").new(b"s3cret", b"1700000000." + body, "sha256").hexdigest()
    assert verify(b"s3cret", body, "1700000000", signature, now=1_700_000_100)
    assert not verify(b"s3cret", body + b" ", "1700000000", signature, now=1_700_000_100)  # body changed
    assert not verify(b"other", body, "1700000000", signature, now=1_700_000_100)  # wrong secret
    assert not verify(b"s3cret", body, "1700000000", signature, now=1_700_000_000 + 301)  # replayed too late
    assert not verify(b"s3cret", body, "soon", signature)


def test_a_handoff_reaches_the_help_desk_after_retries_with_back_off(state_url: str, desk: HelpDesk) -> None:
    store = _store(state_url, **_webhook(desk.url))
    contact = Contact("email", "jo@example.com", consent=True, consent_text="You may e-mail me about this.")
    hid = _handoff(store, contact)
    outbox = store.outbox
    t0 = utcnow()

    first = outbox.deliver_due(now=t0)
    assert (first.delivered, first.retrying) == (0, 1)
    (pending,) = outbox.deliveries()
    assert pending.status == "pending" and pending.attempts == 1 and pending.last_error.startswith("HTTP 500")
    assert pending.next_attempt_at == t0 + timedelta(seconds=30)
    assert outbox.deliver_due(now=t0 + timedelta(seconds=29)).retrying == 0, "not due before its back-off"
    assert outbox.deliver_due(now=t0 + timedelta(seconds=30)).retrying == 1
    assert outbox.deliveries()[0].next_attempt_at == t0 + timedelta(seconds=30 + 60), "the wait doubles"
    done = outbox.deliver_due(now=t0 + timedelta(seconds=90))
    assert done.delivered == 1 and outbox.deliver_due(now=t0 + timedelta(days=1)).delivered == 0

    (delivered,) = outbox.deliveries()
    assert delivered.status == "delivered" and delivered.attempts == 3 and delivered.last_error is None
    assert not desk.rejected and len(desk.requests) == 3
    ids = {r["headers"][DELIVERY_HEADER] for r in desk.requests}
    assert ids == {delivered.event_id}, "the same event id on every retry: the receiver's idempotency key"
    body = desk.requests[-1]["body"]
    assert body["event"] == "handoff.created" and body["handoff"]["reference"] == f"H-{hid}"
    assert body["handoff"]["reason"] == "low_confidence" and body["handoff"]["question"].endswith("[email]")
    assert body["handoff"]["contact"] == {"kind": "email", "value": "jo@example.com",
                                          "consent_text": "You may e-mail me about this."}  # fmt: skip
    assert "conversation_id" not in body["handoff"], "the customer's way back into the chat stays with them"


def test_a_delivery_that_keeps_failing_is_kept_with_its_error_and_can_be_retried(state_url: str) -> None:
    with HelpDesk(fail=100) as desk:
        store = _store(state_url, **_webhook(desk.url, handoff_webhook_max_attempts=2, handoff_webhook_backoff_s=0))
        _handoff(store)
        now = utcnow()
        assert store.outbox.deliver_due(now=now).retrying == 1
        assert store.outbox.deliver_due(now=now).failed == 1
        (failed,) = store.outbox.deliveries(status="failed")
        assert failed.attempts == 2 and failed.last_error.startswith("HTTP 500") and failed.last_status == 500
        assert store.outbox.deliver_due(now=now).failed == 0, "given up: not sent again on its own"
        assert store.outbox.retry_failed(now=now) == 1
        assert store.outbox.deliveries()[0].status == "pending"


def test_nothing_is_sent_unsigned_or_to_a_wrong_secret(state_url: str, desk: HelpDesk) -> None:
    store = _store(state_url, handoff_webhook_url=desk.url)
    _handoff(store)
    report = store.outbox.deliver_due()
    assert report.problem and "SECRET" in report.problem and not desk.requests
    wrong = _store(state_url, **_webhook(desk.url, handoff_webhook_secret="not-the-secret"))
    assert wrong.outbox.deliver_due().retrying == 1
    assert len(desk.rejected) == 1 and not desk.requests, "the receiver refuses a bad signature"


def test_resolve_events_follow_their_created_event_and_workers_never_send_twice(state_url: str) -> None:
    with HelpDesk() as desk:
        store = _store(state_url, **_webhook(desk.url, handoff_webhook_on_resolve=True))
        _staff(store, ("alice",))
        ids = [_handoff(store) for _ in range(3)]
        store.handoffs.resolve(ids[0], "alice")
        now = utcnow()
        barrier = threading.Barrier(3)

        def worker() -> None:
            barrier.wait()
            store.outbox.deliver_due(now=now)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        store.outbox.deliver_due(now=now)  # whatever a worker left for later (an earlier event was in flight)
    sent = [r["headers"][DELIVERY_HEADER] for r in desk.requests]
    assert len(sent) == len(set(sent)) == 4, "every event once"
    events = [(r["body"]["handoff"]["id"], r["body"]["event"]) for r in desk.requests]
    assert events.index((ids[0], "handoff.created")) < events.index((ids[0], "handoff.resolved"))


def test_the_cli_worker_delivers_and_lists_failures(state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbassist_cli import app

    with HelpDesk(fail=1) as desk:
        for name, value in _webhook(desk.url, handoff_webhook_backoff_s=0).items():
            monkeypatch.setenv(f"KBASSIST_{name.upper()}", str(value))
        monkeypatch.setenv("KBASSIST_STATE_URL", state_url)
        from kb.state import open_state

        _handoff(open_state(Settings()))
        first = CliRunner().invoke(app, ["handoffs", "deliver"])
        assert first.exit_code == 0 and "0 delivered, 1 to retry" in first.output
        listed = CliRunner().invoke(app, ["handoffs", "deliveries"])
        assert "pending" in listed.output and "HTTP 500" in listed.output
        second = CliRunner().invoke(app, ["handoffs", "deliver"])
        assert second.exit_code == 0 and "1 delivered" in second.output
    shown = CliRunner().invoke(app, ["handoffs", "list", "--json"])
    assert json.loads(shown.output)[0]["reason"] == "low_confidence"

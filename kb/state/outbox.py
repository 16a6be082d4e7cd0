"""Out to the help desk: hand-off events as signed webhooks, through an outbox with retries.

An event is written to ``webhook_deliveries`` in the same transaction as the hand-off it is
about, then sent by :meth:`Outbox.deliver_due`: in-process right after a hand-off (a background
thread, :func:`kick`), and by ``kbassist handoffs deliver [--watch]`` for retries and for
deployments that send from one worker. A failed attempt waits ``handoff_webhook_backoff_s``,
doubling each time up to ``handoff_webhook_max_backoff_s``; after
``handoff_webhook_max_attempts`` the delivery is kept as ``failed`` with its last error and
attempt count, for the owners to see and retry. Several workers never send the same delivery
at once: each takes a lease with a conditional UPDATE first. Events of one hand-off go out in
order. Receivers should treat ``X-Kbassist-Delivery`` as an idempotency key: delivery is at least
once.

The request: ``POST`` of a JSON body with headers

- ``X-Kbassist-Event``: ``handoff.created`` or ``handoff.resolved``
- ``X-Kbassist-Delivery``: the event id (a UUID), the same on every retry
- ``X-Kbassist-Timestamp``: Unix seconds when this attempt was signed
- ``X-Kbassist-Signature``: ``v1=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + raw_body``
  with the shared secret (``KBASSIST_HANDOFF_WEBHOOK_SECRET``)

A receiver recomputes the HMAC over the raw bytes it received (before any JSON parsing),
compares in constant time, and rejects timestamps more than five minutes old (:func:`verify`).
The body holds the hand-off (reference, status, reason, question, summary, redacted transcript,
what was searched, market, language) and, when the customer left them with consent, their
contact details: those are read from the hand-off when sent, never copied into the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from kb.state.models import Handoff, WebhookDelivery
from kb.state.types import utcnow

if TYPE_CHECKING:
    from kb.settings import Settings
    from kb.state.store import StateStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kbassist-Signature"
TIMESTAMP_HEADER = "X-Kbassist-Timestamp"
EVENT_HEADER = "X-Kbassist-Event"
DELIVERY_HEADER = "X-Kbassist-Delivery"
SIGNATURE_TOLERANCE_S = 300
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Response:
    status: int | None  # None when no HTTP answer came back at all
    error: str | None  # None on success


Sender = Callable[[str, bytes, dict[str, str], float], Response]


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    event_id: str
    event: str
    handoff_id: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status: int | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    waiting: int = 0  # pending, not due yet (or leased by another worker)
    problem: str | None = None  # a configuration problem that stopped every delivery

    def summary(self) -> str:
        if self.problem:
            return f"not sent: {self.problem}"
        return f"{self.delivered} delivered, {self.retrying} to retry, {self.failed} failed, {self.waiting} waiting"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Kbassist-Signature`` value for ``body`` sent at ``timestamp``."""
    return "v1=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver checks: a fresh timestamp and a matching signature (constant-time comparison)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature or "")


def enqueue(session: Session, settings: Settings, event: str, handoff: Handoff) -> None:
    """Queue ``event`` for ``handoff`` inside the caller's transaction (nothing when no webhook is set)."""
    if not settings.handoff_webhook_url:
        return
    now = utcnow()
    session.add(
        WebhookDelivery(
            event_id=str(uuid.uuid4()),
            event=event,
            handoff_id=handoff.id,
            payload=_payload(handoff),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def _payload(row: Handoff) -> dict[str, Any]:
    from kb.state.handoffs import CUSTOMER_STATUS

    return {
        "reference": f"H-{row.id}",
        "id": row.id,
        "status": row.status,
        "customer_status": CUSTOMER_STATUS[row.status],
        "reason": row.reason,
        "question": row.question,
        "summary": row.summary,
        "transcript": row.transcript,
        "searched": row.searched,
        "market": row.market,
        "language": row.language,
        "customer_ref": row.customer_ref,
        "created_at": row.created_at.isoformat(),
        "resolved_by": row.resolved_by,
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
    }


def http_send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
    """POST with the standard library; any 2xx is success."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, None)
    except urllib.error.HTTPError as exc:
        return Response(exc.code, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Response(None, f"{type(exc).__name__}: {reason}")


class Outbox:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.settings = store.settings

    def backoff(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt."""
        seconds = self.settings.handoff_webhook_backoff_s * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.settings.handoff_webhook_max_backoff_s))

    def deliver_due(
        self, *, now: datetime | None = None, limit: int = 50, send: Sender | None = None
    ) -> DeliveryReport:
        """Send every delivery that is due (at most ``limit``); returns what happened."""
        report = DeliveryReport()
        settings = self.settings
        url = settings.handoff_webhook_url
        if not url:
            report.problem = "no webhook URL is set (KBASSIST_HANDOFF_WEBHOOK_URL)"
            return report
        if settings.handoff_webhook_secret is None or not settings.handoff_webhook_secret.get_secret_value():
            report.problem = "no webhook secret is set (KBASSIST_HANDOFF_WEBHOOK_SECRET); nothing is sent unsigned"
            return report
        secret = settings.handoff_webhook_secret.get_secret_value().encode()
        send = send or http_send
        now = now or utcnow()
        lease = timedelta(seconds=settings.handoff_webhook_timeout_s * 2 + 30)
        for delivery_id in self._due(now, limit):
            leased = self._lease(delivery_id, now, lease)
            if leased is None:  # another worker took it
                continue
            event_id, event, body = leased
            stamp = int(now.timestamp())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "kbassist-webhook/1",
                EVENT_HEADER: event,
                DELIVERY_HEADER: event_id,
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign(secret, stamp, body),
            }
            response = send(url, body, headers, settings.handoff_webhook_timeout_s)
            outcome = self._record(delivery_id, response, now)
            setattr(report, outcome, getattr(report, outcome) + 1)
        report.waiting = max(self._pending_count() - report.retrying, 0)  # not due yet, or leased elsewhere
        return report

    def _due(self, now: datetime, limit: int) -> list[int]:
        earlier = aliased(WebhookDelivery)
        query = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
                ~exists().where(
                    and_(
                        earlier.handoff_id == WebhookDelivery.handoff_id,
                        earlier.id < WebhookDelivery.id,
                        earlier.status == "pending",
                    )
                ),
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
        )
        with self.store.read() as session:
            return list(session.scalars(query).all())

    def _lease(self, delivery_id: int, now: datetime, lease: timedelta) -> tuple[str, str, bytes] | None:
        """Take the delivery for this worker, or None if another took it first; returns what to send."""
        with self.store.write() as session:
            taken = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == "pending",
                    or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
                )
                .values(lease_until=now + lease)
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken != 1:
                return None
            row = session.get(WebhookDelivery, delivery_id)
            handoff = session.get(Handoff, row.handoff_id) if row else None
            if row is None or handoff is None:
                return None
            payload = dict(row.payload)
            payload["contact"] = (
                {"kind": handoff.contact_kind, "value": handoff.contact_value, "consent_text": handoff.consent_text}
                if handoff.contact_value and handoff.contact_consent
                else None
            )
            body = {
                "event": row.event,
                "event_id": row.event_id,
                "occurred_at": row.created_at.isoformat(),
                "handoff": payload,
            }
            return row.event_id, row.event, json.dumps(body, ensure_ascii=False, sort_keys=True).encode()

    def _record(self, delivery_id: int, response: Response, now: datetime) -> str:
        with self.store.write() as session:
            row = session.get(WebhookDelivery, delivery_id)
            assert row is not None
            row.attempts += 1
            row.lease_until = None
            row.last_status = response.status
            if response.error is None and response.status is not None and 200 <= response.status < 300:
                row.status, row.delivered_at, row.last_error = "delivered", now, None
                outcome = "delivered"
            else:
                row.last_error = (response.error or f"HTTP {response.status}")[:MAX_ERROR_CHARS]
                if row.attempts >= self.settings.handoff_webhook_max_attempts:
                    row.status = "failed"
                    outcome = "failed"
                else:
                    row.next_attempt_at = now + self.backoff(row.attempts)
                    outcome = "retrying"
            attempts = row.attempts
        log.info(
            "webhook delivery id=%d attempt=%d outcome=%s status=%s", delivery_id, attempts, outcome, response.status
        )
        return outcome

    def _pending_count(self) -> int:
        from sqlalchemy import func

        with self.store.read() as session:
            return (
                session.scalar(
                    select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
                )
                or 0
            )

    def next_due(self) -> datetime | None:
        """When the next pending delivery is due, or None when nothing is pending."""
        from sqlalchemy import func

        with self.store.read() as session:
            return session.scalar(
                select(func.min(WebhookDelivery.next_attempt_at)).where(WebhookDelivery.status == "pending")
            )

    def deliveries(self, status: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        """Newest first; ``status="failed"`` is what an owner needs to look at."""
        query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
        if status:
            query = query.where(WebhookDelivery.status == status)
        with self.store.read() as session:
            rows = session.scalars(query).all()
            return [
                DeliveryRecord(
                    r.id,
                    r.event_id,
                    r.event,
                    r.handoff_id,
                    r.status,
                    r.attempts,
                    r.next_attempt_at,
                    r.last_error,
                    r.last_status,
                    r.created_at,
                    r.delivered_at,
                )
                for r in rows
            ]

    def retry_failed(self, now: datetime | None = None) -> int:
        """Put every failed delivery back in the queue with a fresh set of attempts; returns how many."""
        with self.store.write() as session:
            return session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.status == "failed")
                .values(status="pending", attempts=0, next_attempt_at=now or utcnow(), lease_until=None)
                .execution_options(synchronize_session=False)
            ).rowcount


class _Kicker:
    """One background sender per store: started after a hand-off, runs while deliveries are pending."""

    MAX_NAP_S = 60.0

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.running = False
        self.again = False

    def kick(self) -> None:
        with self.lock:
            if self.running:
                self.again = True
                return
            self.running = True
        threading.Thread(target=self._run, name="kbassist-webhook", daemon=True).start()

    def _run(self) -> None:
        while True:
            nap = None
            try:
                outbox = self.store.outbox
                report = outbox.deliver_due()
                due = None if report.problem else outbox.next_due()
                if due is not None:
                    nap = min(max((due - utcnow()).total_seconds(), 0.0), self.MAX_NAP_S)
            except Exception as exc:  # a sender thread must never take the app down
                log.warning("webhook delivery pass failed: %s", type(exc).__name__)
            with self.lock:
                if nap is None and not self.again:
                    self.running = False
                    return
                self.again = False
            if nap:
                time.sleep(nap)


_kickers: dict[int, _Kicker] = {}
_kickers_lock = threading.Lock()


def kick(store: StateStore) -> None:
    """Deliver what is due now in a background thread (no-op without a webhook URL)."""
    if not store.settings.handoff_webhook_url:
        return
    with _kickers_lock:
        kicker = _kickers.setdefault(id(store), _Kicker(store))
    kicker.kick()

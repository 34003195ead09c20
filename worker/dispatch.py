"""The dispatcher: events of the outbox (``core/outbox.py``) pushed to plant systems.

A thread in every worker (the ``Dispatch`` bootstep; ``WORKER_DISPATCH=0`` leaves
it out) or a process of its own (``python -m worker.dispatch``) loops about once a
second:

1. **fan out**: each event not yet fanned out becomes one ``deliveries`` row per
   active webhook subscribed to its kind, plus one for MQTT when MQTT_URL is set,
   and is marked fanned out, in one transaction. The events are picked with
   ``SELECT ... FOR UPDATE SKIP LOCKED`` and marked by ``UPDATE ... WHERE NOT
   fanned_out RETURNING``, so two dispatchers never take the same event (SQLite has
   no row locks but one writer at a time: its UPDATE returns only what is unmarked).
2. **deliver** the due deliveries (``pending``, ``next_attempt_at`` passed), one
   at a time: a delivery is claimed by moving its ``next_attempt_at`` ahead (a
   lease) in a short transaction, sent with no transaction open, and its outcome
   recorded only if the lease is still the one set, so two dispatchers never send
   it at the same moment. A dispatcher that dies while sending leaves the lease to
   run out; another sends it again (delivery is at least once: receivers dedupe by
   the delivery id).

A failed try waits 2 s, 4 s, 8 s ... at most 10 min (``core.push.retry_delay_s``)
until DELIVERY_MAX_ATTEMPTS, then the delivery is ``failed``; the admin site's
delivery log shows each and can retry it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import bootsteps
from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.db import get_sessionmaker
from core.logs import use_json_format
from core.push import (
    body_bytes,
    error_text,
    mqtt_topic,
    retry_delay_s,
    subscribed,
    webhook_headers,
)
from core.settings import Settings, get_settings
from core.tables import Delivery, Event, Webhook, utcnow
from worker import metrics
from worker.webhook_sender import Attempt, post_webhook

log = logging.getLogger(__name__)

#: seconds between rounds when there is nothing to do
POLL_S = 1.0
#: events fanned out per transaction
FAN_OUT_BATCH = 200
#: deliveries sent per round before fanning out again
DELIVERIES_PER_ROUND = 50


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for sending, with what sending it needs."""

    id: int
    target: str  # "webhook" | "mqtt"
    kind: str
    camera: str | None
    payload: dict[str, Any]
    attempts: int
    lease: datetime
    webhook_id: int | None = None
    webhook_name: str | None = None
    webhook_url: str | None = None
    webhook_active: bool = False
    webhook_secret: str = field(default="", repr=False)  # never in a log line


def fan_out(session: Session, mqtt: bool, limit: int = FAN_OUT_BATCH) -> int:
    """Make the deliveries of up to ``limit`` events not fanned out yet; how many events."""
    if not session.scalar(select(exists().where(Event.fanned_out.is_(False)))):
        return 0  # the common case, without a write (SQLite's one writer stays free)
    # Two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT ... SKIP LOCKED):
    # PostgreSQL may run such a subquery again for each row, and take more than asked.
    waiting = session.scalars(
        select(Event.id)
        .where(Event.fanned_out.is_(False))
        .order_by(Event.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not waiting:
        return 0
    # still not fanned out: on SQLite (no row locks) another dispatcher may have been first
    taken = session.execute(
        update(Event)
        .where(Event.id.in_(waiting), Event.fanned_out.is_(False))
        .values(fanned_out=True)
        .returning(Event.id, Event.kind)
        .execution_options(synchronize_session=False)
    ).all()
    if not taken:
        return 0
    webhooks = session.scalars(select(Webhook).where(Webhook.active.is_(True))).all()
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for event_id, kind in taken:
        targets: list[tuple[str, int | None]] = [
            ("webhook", hook.id) for hook in webhooks if subscribed(hook, kind)
        ]
        if mqtt:
            targets.append(("mqtt", None))
        rows += [
            {
                "event_id": event_id,
                "target": target,
                "webhook_id": webhook_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
            }
            for target, webhook_id in targets
        ]
    if rows:
        session.execute(insert(Delivery), rows)
    return len(taken)


def claim_due(session: Session, now: datetime, lease_s: float) -> Claimed | None:
    """Claim the delivery due longest, leasing it for ``lease_s``; None when none is due."""
    candidate = session.scalar(
        select(Delivery.id)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if candidate is None:
        return None
    lease = now + timedelta(seconds=lease_s)
    # still due: on SQLite (no row locks) another dispatcher may have leased it first
    delivery_id = session.execute(
        update(Delivery)
        .where(
            Delivery.id == candidate,
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=lease)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if delivery_id is None:
        return None
    delivery, event = session.execute(
        select(Delivery, Event)
        .join(Event, Delivery.event_id == Event.id)
        .where(Delivery.id == delivery_id)
    ).one()
    hook = session.get(Webhook, delivery.webhook_id) if delivery.webhook_id is not None else None
    return Claimed(
        id=delivery.id,
        target=delivery.target,
        kind=event.kind,
        camera=event.camera,
        payload=dict(event.payload),
        attempts=delivery.attempts,
        lease=lease,
        webhook_id=delivery.webhook_id,
        webhook_name=hook.name if hook else None,
        webhook_url=hook.url if hook else None,
        webhook_active=bool(hook and hook.active),
        webhook_secret=hook.secret if hook else "",
    )


def record(
    session: Session, claimed: Claimed, attempt: Attempt, max_attempts: int, now: datetime
) -> str | None:
    """Store what came of a try: ``delivered``, ``retry`` or ``failed``; None when the
    delivery was changed meanwhile (its lease ran out and another dispatcher took it,
    or an admin asked to retry it): then the newer claim's outcome counts."""
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "response_status": attempt.status,
        "last_error": error_text(attempt.error) if attempt.error else None,
    }
    if attempt.delivered:
        outcome = "delivered"
        values.update(status="delivered", delivered_at=now, last_error=None)
    elif attempts >= max_attempts:
        outcome = "failed"
        values.update(status="failed")
    else:
        outcome = "retry"
        values.update(next_attempt_at=now + timedelta(seconds=retry_delay_s(attempts)))
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == claimed.id,
            Delivery.status == "pending",
            Delivery.next_attempt_at == claimed.lease,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return outcome if result.rowcount else None  # type: ignore[attr-defined]


def next_due_in(session: Session, now: datetime) -> float | None:
    """Seconds until the next pending delivery is due (0 when one is); None: none pending."""
    soonest = session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(Delivery.status == "pending")
    )
    if soonest is None:
        return None
    if soonest.tzinfo is None:  # SQLite's min() skips the column's type: a naive UTC string
        soonest = datetime.fromisoformat(str(soonest)).replace(tzinfo=now.tzinfo)
    return max(0.0, (soonest - now).total_seconds())


class Dispatcher(threading.Thread):
    """Fans out and delivers until stopped; owns the MQTT connection when MQTT_URL is set."""

    def __init__(self, settings: Settings, poll_s: float = POLL_S) -> None:
        super().__init__(name="dispatcher", daemon=True)
        self.settings = settings
        self.poll_s = poll_s
        self.stopping = threading.Event()
        self.sessions: sessionmaker[Session] = get_sessionmaker(settings.database_url)
        # a lease outlives the longest try: connecting plus answering (or the broker's ack)
        self.lease_s = 2 * settings.webhook_timeout_s + 30
        self.publisher: Any = None
        self.failing = False

    def run(self) -> None:
        if self.settings.mqtt_url:
            from worker.mqtt_publisher import MqttPublisher

            try:
                self.publisher = MqttPublisher(
                    self.settings.mqtt_url, self.settings.webhook_timeout_s
                )
            except Exception as exc:  # e.g. no CA certificates for mqtts: webhooks go on
                log.error("MQTT is off in this dispatcher: %s: %s", type(exc).__name__, exc)
        try:
            while not self.stopping.is_set():
                wait = self.poll_s
                try:
                    wait = self.round()
                    if self.failing:
                        log.info("the dispatcher reaches the database again")
                    self.failing = False
                except SQLAlchemyError as exc:  # the database down: the next round will do
                    if not self.failing:
                        log.warning("the dispatcher cannot reach the database: %s", exc)
                    self.failing = True
                except Exception:  # a bug here must not end the thread
                    log.exception("the dispatcher failed a round")
                self.stopping.wait(wait)
        finally:
            if self.publisher is not None:
                self.publisher.close()

    def round(self) -> float:
        """Fan out, deliver what is due; returns how long to wait before the next round."""
        with self.sessions.begin() as session:
            fanned = fan_out(session, mqtt=bool(self.settings.mqtt_url))
        sent = 0
        while sent < DELIVERIES_PER_ROUND and not self.stopping.is_set():
            if not self.deliver_one():
                break
            sent += 1
        if fanned or sent >= DELIVERIES_PER_ROUND:
            return 0.0
        with self.sessions() as session:
            due_in = next_due_in(session, utcnow())
        return self.poll_s if due_in is None else min(self.poll_s, max(0.05, due_in))

    def deliver_one(self) -> bool:
        """Claim one due delivery, send it, record the outcome; False when none was due."""
        with self.sessions.begin() as session:
            claimed = claim_due(session, utcnow(), self.lease_s)
        if claimed is None:
            return False
        attempt = self.send(claimed)
        # a deactivated webhook's delivery fails at once: retrying cannot help it
        gone = claimed.target == "webhook" and not claimed.webhook_active
        max_attempts = 1 if gone else self.settings.delivery_max_attempts
        with self.sessions.begin() as session:
            outcome = record(session, claimed, attempt, max_attempts, utcnow())
        self.note(claimed, attempt, outcome)
        return True

    def send(self, claimed: Claimed) -> Attempt:
        if claimed.target == "mqtt":
            if self.publisher is None:
                return Attempt(False, None, "MQTT_URL is not set on this dispatcher")
            line = claimed.payload.get("line")
            topic = mqtt_topic(
                self.settings.mqtt_topic_prefix,
                line if isinstance(line, str) else self.settings.line_name,
                claimed.camera,
                claimed.kind,
            )
            # MQTT 3.1.1 has no headers: the delivery id (to dedupe by) rides in the body
            return self.publisher.publish(
                topic, body_bytes({**claimed.payload, "delivery_id": claimed.id})
            )
        if claimed.webhook_url is None or not claimed.webhook_active:
            return Attempt(False, None, "the webhook is deactivated; activate it, then retry")
        body = body_bytes(claimed.payload)
        timestamp = str(int(time.time()))
        headers = webhook_headers(claimed.kind, claimed.id, claimed.webhook_secret, body, timestamp)
        return post_webhook(claimed.webhook_url, body, headers, self.settings.webhook_timeout_s)

    def note(self, claimed: Claimed, attempt: Attempt, outcome: str | None) -> None:
        target = (
            f"webhook {claimed.webhook_name!r} (#{claimed.webhook_id})"
            if claimed.target == "webhook"
            else "MQTT"
        )
        if outcome is None:
            log.info(
                "delivery %d to %s changed while it was sent; not recorded", claimed.id, target
            )
            return
        metrics.DELIVERIES.labels(claimed.target, outcome).inc()
        if outcome == "delivered":
            log.debug("delivery %d (%s) to %s delivered", claimed.id, claimed.kind, target)
        else:
            log.warning(
                "delivery %d (%s) to %s, try %d: %s%s",
                claimed.id,
                claimed.kind,
                target,
                claimed.attempts + 1,
                attempt.error,
                "; given up (DELIVERY_MAX_ATTEMPTS)" if outcome == "failed" else "; will retry",
            )

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2 * self.settings.webhook_timeout_s + 5)


class Dispatch(bootsteps.StartStopStep):
    """Runs the dispatcher in the worker, beside the jobs. A step of the worker, not of
    its consumer, so that pushing goes on while the broker connection is restarted."""

    # before the worker's Consumer step, whose start blocks while the worker runs
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.dispatcher: Dispatcher | None = None

    def include_if(self, parent: Any) -> bool:
        return get_settings().worker_dispatch

    def start(self, parent: Any) -> None:
        self.dispatcher = Dispatcher(get_settings())
        self.dispatcher.start()

    def stop(self, parent: Any) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None


def main(argv: list[str] | None = None) -> int:
    """``python -m worker.dispatch``: only the dispatcher, until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m worker.dispatch",
        description="Deliver webhooks and MQTT messages from the outbox (README, *Plant "
        "systems*). Workers do this themselves unless WORKER_DISPATCH=0.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG shows every delivery")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.log_format == "json":
        use_json_format(logging.getLogger())
    metrics.start_metrics_server(settings.worker_metrics_port, settings.worker_metrics_host)
    dispatcher = Dispatcher(settings)
    stopped = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    dispatcher.start()
    log.info("dispatching (MQTT %s); stop with Ctrl-C", "on" if settings.mqtt_url else "off")
    while not stopped.wait(1.0):
        if not dispatcher.is_alive():
            log.error("the dispatcher thread ended")
            return 1
    dispatcher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

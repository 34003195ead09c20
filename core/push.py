"""What pushing events to plant systems means, shared by the dispatcher
(``worker/dispatch.py``) and the admin site (``admin/webhooks.py``): webhook URLs
and subscriptions, the signature, the retry policy, MQTT topics, and the test event.

The payloads and how a receiver checks them are documented in docs/events.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.outbox import PAYLOAD_VERSION, iso
from core.tables import EVENT_KINDS, Delivery, Event, Webhook, utcnow

#: a test event, sent to one webhook from the admin site; never fanned out, so no
#: plant system subscribes to it and none takes it for a real result
TEST_KIND = "test"
#: the first retry waits this long, each later one twice the one before ...
FIRST_RETRY_S = 2.0
#: ... up to this
MAX_RETRY_S = 600.0
#: the longest webhook URL the table keeps
MAX_URL_LENGTH = 2000
#: the longest error kept in the delivery log
MAX_ERROR_LENGTH = 500


def new_secret() -> str:
    """A webhook's signing secret: 256 random bits, as hex."""
    return secrets.token_hex(32)


def check_webhook_url(url: str) -> str:
    """``url`` when a webhook may post to it; else ValueError saying what to fix.

    Only http and https: other schemes (file:, ftp:, gopher: ...) would let whoever
    sets up a webhook make the workers read or talk to things that are not web
    endpoints. Credentials in the URL are refused, since the URL is shown on the
    site: a receiver checks the signature instead."""
    url = url.strip()
    if not url:
        raise ValueError("Enter the URL the events are posted to, e.g. https://mes.example/hooks")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"The URL has {len(url)} characters; at most {MAX_URL_LENGTH}.")
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        raise ValueError("The URL contains spaces or control characters; encode them.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("Only http:// and https:// URLs can take webhooks.")
    try:
        host, _port = parts.hostname, parts.port  # .port raises on a port that is no number
    except ValueError:
        raise ValueError("The URL's port is not a number between 0 and 65535.") from None
    if not host:
        raise ValueError("The URL names no host; write it as https://host/path.")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "Leave user names and passwords out of the URL: the receiver checks the "
            "X-Inspection-Signature header instead."
        )
    return url


def check_subscriptions(kinds: Iterable[str]) -> str:
    """The event kinds a webhook takes, as the table keeps them (space separated, in
    the documented order); ValueError when none or an unknown one is chosen."""
    chosen = set(kinds)
    unknown = chosen - set(EVENT_KINDS)
    if unknown:
        raise ValueError(f"Unknown event kinds: {', '.join(sorted(unknown))}.")
    if not chosen:
        raise ValueError("Choose at least one event to send.")
    return " ".join(kind for kind in EVENT_KINDS if kind in chosen)


def subscribed(webhook: Webhook, kind: str) -> bool:
    return kind in webhook.events.split()


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes posted (and signed): compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with the webhook's secret over ``<timestamp>.<body>``.
    The timestamp is signed so a captured request cannot be replayed later as new."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signature_valid(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver checks (docs/events.md has the same in a few lines)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def webhook_headers(
    kind: str, delivery_id: int, secret: str, body: bytes, timestamp: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "steel-inspection-webhooks/1",
        "X-Inspection-Event": kind,
        "X-Inspection-Delivery": str(delivery_id),
        "X-Inspection-Timestamp": timestamp,
        "X-Inspection-Signature": signature(secret, timestamp, body),
    }


def retry_delay_s(attempts: int, rng: random.Random | None = None) -> float:
    """How long to wait after the ``attempts``-th failed try: 2 s, 4 s, 8 s ... at
    most 10 min, less up to a fifth at random, so the deliveries of one outage do
    not all come back at the same moment (and a later wait is never shorter)."""
    base = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(0, attempts - 1))
    return base * (1 - 0.2 * (rng or random).random())


def topic_level(text: str) -> str:
    """``text`` as one MQTT topic level: ``/`` would split it, ``+`` and ``#`` are
    wildcards a publisher may not use."""
    cleaned = "".join("_" if ch in "/+#" or not ch.isprintable() else ch for ch in text)
    return cleaned or "_"


def mqtt_topic(prefix: str, line: str, camera: str | None, kind: str) -> str:
    """``<prefix>/<line>/<camera or "line">/<kind with . as />``, e.g.
    ``inspection/line-1/cam-2/inspection/flagged``."""
    levels = [prefix.strip("/"), topic_level(line), topic_level(camera or "line")]
    return "/".join([*filter(None, levels), *kind.split(".")])


def error_text(error: str) -> str:
    """An error as the delivery log keeps it: one line, bounded."""
    text = " ".join(error.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def test_payload(webhook: Webhook, line: str, sent_by: str) -> dict[str, Any]:
    return {
        "event": TEST_KIND,
        "version": PAYLOAD_VERSION,
        "line": line,
        "at": iso(utcnow()),
        "test": True,
        "webhook": webhook.name,
        "sent_by": sent_by,
        "message": "A test event from the inspection site; no result is reported by it.",
    }


def send_test_event(session: Session, webhook: Webhook, line: str, sent_by: str) -> Delivery:
    """A test event for ``webhook`` alone: written already fanned out, with its one
    delivery, so the dispatcher sends it to no one else."""
    event = Event(
        kind=TEST_KIND,
        camera=None,
        payload=test_payload(webhook, line, sent_by),
        fanned_out=True,
        created_at=utcnow(),
    )
    session.add(event)
    session.flush()
    delivery = Delivery(
        event_id=event.id,
        target="webhook",
        webhook_id=webhook.id,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    session.flush()
    return delivery


def retry_now(session: Session, delivery_id: int, now: datetime | None = None) -> bool:
    """Put a pending or failed delivery up for sending at once; False when it was
    delivered already or does not exist. Its attempts are kept (the log's history): a
    failed one that fails again is failed again after this one try."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(("pending", "failed")))
        .values(status="pending", next_attempt_at=now or utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]

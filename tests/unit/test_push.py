"""Pushing to plant systems, without services: signatures, retry policy, topics, URL
checks, and the dispatcher's fan-out and claims on a migrated SQLite database (the
embedded default: one writer, no row locks). The same against PostgreSQL, real
receivers and a real broker: tests/integration/test_push.py."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.migrate import upgrade_to_head
from core.outbox import emit, prune
from core.push import (
    MAX_RETRY_S,
    check_subscriptions,
    check_webhook_url,
    mqtt_topic,
    retry_delay_s,
    retry_now,
    send_test_event,
    signature,
    signature_valid,
    webhook_headers,
)
from core.tables import Delivery, Event, Webhook, utcnow
from worker.dispatch import claim_due, fan_out, next_due_in, record
from worker.webhook_sender import Attempt


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"event":"inspection.flagged"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1700000000", body) == f"sha256={expected}"
    header = signature("s3cret", "1700000000", body)
    assert signature_valid("s3cret", "1700000000", body, header)
    assert not signature_valid("s3cret", "1700000001", body, header)  # replayed later
    assert not signature_valid("s3cret", "1700000000", body + b" ", header)
    assert not signature_valid("other", "1700000000", body, header)


def test_headers_carry_the_event_the_delivery_and_no_secret():
    headers = webhook_headers("coil.verdict", 42, "s3cret", b"{}", "1700000000")
    assert headers["X-Inspection-Event"] == "coil.verdict"
    assert headers["X-Inspection-Delivery"] == "42"
    assert headers["Content-Type"] == "application/json"
    assert "s3cret" not in " ".join(headers.values())


def test_retries_wait_twice_as_long_each_time_up_to_ten_minutes():
    rng = random.Random(1)
    for attempts, base in [(1, 2), (2, 4), (3, 8), (4, 16), (9, 512), (10, 600), (30, 600)]:
        delays = [retry_delay_s(attempts, rng) for _ in range(50)]
        assert all(0.8 * base <= d <= base for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) <= MAX_RETRY_S
        assert len(set(delays)) > 1  # jitter
    # a later wait is never shorter, whatever the jitter
    assert min(retry_delay_s(2, rng) for _ in range(200)) > 2.0


def test_topics_per_line_camera_and_event():
    assert mqtt_topic("inspection", "line-1", "cam-2", "inspection.flagged") == (
        "inspection/line-1/cam-2/inspection/flagged"
    )
    assert mqtt_topic("plant/a", "l1", None, "report.ready") == "plant/a/l1/line/report/ready"
    # a camera name never splits a level nor becomes a wildcard
    assert mqtt_topic("p", "l", "top/+#", "coil.verdict") == "p/l/top___/coil/verdict"


@pytest.mark.parametrize(
    "url", ["https://mes.example/hooks", "http://10.1.2.3:8080/in?line=3", "HTTPS://A.example"]
)
def test_webhook_urls_accepted(url):
    assert check_webhook_url(f"  {url} ") == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "Enter the URL"),
        ("ftp://mes.example/x", "Only http"),
        ("file:///etc/passwd", "Only http"),
        ("javascript:alert(1)", "Only http"),
        ("https:///path", "no host"),
        ("https://user:pw@mes.example/", "passwords"),
        ("https://mes.example/a b", "spaces"),
        ("https://mes.example:99999/", "port"),
        ("https://mes.example/" + "a" * 2000, "at most"),
    ],
)
def test_webhook_urls_refused_say_why(url, says):
    with pytest.raises(ValueError, match=says):
        check_webhook_url(url)


def test_subscriptions_are_known_kinds_in_order():
    assert check_subscriptions(["report.ready", "inspection.flagged"]) == (
        "inspection.flagged report.ready"
    )
    with pytest.raises(ValueError, match="at least one"):
        check_subscriptions([])
    with pytest.raises(ValueError, match="Unknown"):
        check_subscriptions(["inspection.flagged", "everything"])


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'push.db'}"
    upgrade_to_head(url)
    return url


def add_webhook(session, name, events, active=True):
    hook = Webhook(
        name=name,
        url=f"http://127.0.0.1/{name}",
        secret="x" * 64,
        events=events,
        active=active,
        created_by="test",
    )
    session.add(hook)
    session.flush()
    return hook.id


def test_fan_out_makes_one_delivery_per_subscribed_target_once(sqlite_url):
    with session_scope(sqlite_url) as session:
        flagged_hook = add_webhook(session, "mes", "inspection.flagged coil.verdict")
        reports_hook = add_webhook(session, "erp", "report.ready")
        add_webhook(session, "off", "inspection.flagged", active=False)
        emit(session, "inspection.flagged", "line-1", {"inspection_id": 1}, camera="cam-1")
        emit(session, "report.ready", "line-1", {"report_id": 7})
    with session_scope(sqlite_url) as session:
        assert fan_out(session, mqtt=True) == 2
    with session_scope(sqlite_url) as session:
        assert fan_out(session, mqtt=True) == 0  # nothing twice
        rows = session.execute(
            select(Event.kind, Delivery.target, Delivery.webhook_id).join(Event)
        ).all()
        assert sorted(rows, key=str) == sorted(
            [
                ("inspection.flagged", "webhook", flagged_hook),
                ("inspection.flagged", "mqtt", None),
                ("report.ready", "webhook", reports_hook),
                ("report.ready", "mqtt", None),
            ],
            key=str,
        )
        assert session.scalar(select(func.count()).where(Event.fanned_out.is_(False))) == 0
    now = utcnow()
    with session_scope(sqlite_url) as session:
        assert claim_due(session, now, lease_s=60) is not None
    with session_scope(sqlite_url) as session:  # one claim leases one delivery, no more
        leased = select(func.count()).where(Delivery.next_attempt_at > now)
        assert session.scalar(leased) == 1


def test_a_claim_leases_a_delivery_and_only_its_holder_records(sqlite_url):
    with session_scope(sqlite_url) as session:
        add_webhook(session, "mes", "inspection.flagged")
        emit(session, "inspection.flagged", "line-1", {"inspection_id": 1}, camera="cam-1")
        fan_out(session, mqtt=False)
    now = utcnow()
    with session_scope(sqlite_url) as session:
        first = claim_due(session, now, lease_s=60)
    with session_scope(sqlite_url) as session:
        assert claim_due(session, now, lease_s=60) is None  # leased: no second sender
        assert next_due_in(session, now) == pytest.approx(60, abs=1)
    assert first is not None and first.kind == "inspection.flagged" and first.webhook_active
    assert "x" * 64 not in repr(first)  # the secret stays out of logs

    failed_try = Attempt(False, 500, "HTTP 500 Internal Server Error")
    with session_scope(sqlite_url) as session:
        assert record(session, first, failed_try, max_attempts=3, now=now) == "retry"
        delivery = session.get(Delivery, first.id)
        assert delivery.attempts == 1 and delivery.response_status == 500
        assert timedelta(seconds=1.5) <= delivery.next_attempt_at - now <= timedelta(seconds=2)
    with session_scope(sqlite_url) as session:  # the old lease is gone: not recorded again
        assert record(session, first, Attempt(True, 200), max_attempts=3, now=now) is None

    later = now + timedelta(seconds=3)
    with session_scope(sqlite_url) as session:
        second = claim_due(session, later, lease_s=60)
    assert second is not None and second.attempts == 1
    with session_scope(sqlite_url) as session:
        assert record(session, second, Attempt(True, 204), max_attempts=3, now=later) == "delivered"
        delivery = session.get(Delivery, first.id)
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 2, None)
        assert not retry_now(session, first.id)  # delivered: nothing to retry


def test_the_last_attempt_fails_and_retry_now_brings_it_back(sqlite_url):
    with session_scope(sqlite_url) as session:
        add_webhook(session, "mes", "inspection.flagged")
        emit(session, "inspection.flagged", "line-1", {"inspection_id": 1})
        fan_out(session, mqtt=False)
    now = utcnow()
    with session_scope(sqlite_url) as session:
        claimed = claim_due(session, now, lease_s=60)
        assert record(session, claimed, Attempt(False, None, "refused"), 1, now) == "failed"
    with session_scope(sqlite_url) as session:
        assert session.get(Delivery, claimed.id).status == "failed"
        assert claim_due(session, now + timedelta(hours=1), lease_s=60) is None
        assert retry_now(session, claimed.id, now=now)
    with session_scope(sqlite_url) as session:
        again = claim_due(session, now, lease_s=60)
        assert again is not None and again.id == claimed.id and again.attempts == 1


def test_a_test_event_goes_to_its_webhook_alone(sqlite_url):
    with session_scope(sqlite_url) as session:
        target = add_webhook(session, "mes", "inspection.flagged")
        add_webhook(session, "erp", "inspection.flagged coil.verdict report.ready")
        delivery = send_test_event(session, session.get(Webhook, target), "line-1", "ada")
        delivery_id = delivery.id
    with session_scope(sqlite_url) as session:
        assert fan_out(session, mqtt=True) == 0  # written fanned out: no one else gets it
        claimed = claim_due(session, utcnow(), lease_s=60)
    assert claimed is not None and claimed.id == delivery_id and claimed.webhook_id == target
    assert claimed.kind == "test"
    assert claimed.payload["test"] is True and claimed.payload["event"] == "test"


def test_the_payloads_made_fit_their_documented_schemas():
    from datetime import UTC, datetime

    from core.coil_verdicts import CoilJudgement, verdict_body
    from core.event_schemas import EVENT_MODELS
    from core.outbox import envelope, inspection_body
    from core.push import test_payload as make_test_payload  # not collected as a test
    from core.reports import ready_body
    from core.tables import Coil, Report

    when = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
    row = {
        "job_id": "9b1c4a52-3f0e-4d6b-a8f5-0f1e2d3c4b5a",
        "camera": "cam-top",
        "status": "flagged",
        "label": "scratches",
        "dissimilarity": 1.8,
        "model_version": "abc",
        "captured_at": when,
        "processed_at": when,
        "coil_id": "C-1",
        "frame_index": 3,
        "position_m": 6.0,
        "across_m": None,
    }
    finding = {
        "label": "scratches",
        "x": 1,
        "y": 2,
        "width": 3,
        "height": 4,
        "area": 12,
        "score": 2.5,
        "distance": 0.7,
    }
    coil = Coil(
        coil_id="C-1",
        first_frame_at=when,
        last_frame_at=when,
        frames=10,
        flagged=2,
        length_m=20.0,
        ended_at=when,
    )
    reason = {"rule_id": 1, "label": "*", "count": 2, "limit": 0, "per_m": None, "text": "t"}
    judgement = CoilJudgement("hold", [reason], {"scratches": 2}, 20.0)
    report = Report(
        id=4,
        kind="coil",
        subject="C-1",
        period_start=when,
        period_end=when,
        made_by=None,
        summary={"frames": 10, "by_label": {"x": 1}},
    )
    hook = Webhook(name="mes", url="https://mes.example/", secret="x", events="coil.verdict")
    payloads = [
        envelope("inspection.flagged", "line-1", inspection_body(row, 7, [finding])),
        envelope("coil.verdict", "line-1", verdict_body(coil, judgement)),
        envelope("report.ready", "line-1", ready_body(report)),
        make_test_payload(hook, "line-1", "ada"),
    ]
    for payload in payloads:
        EVENT_MODELS[payload["event"]].model_validate(payload)
    assert payloads[2]["summary"] == {"frames": 10}  # single values only


def test_old_events_go_with_their_log_once_every_delivery_is_done(sqlite_url):
    with session_scope(sqlite_url) as session:
        add_webhook(session, "mes", "inspection.flagged")
        for n in range(3):
            emit(session, "inspection.flagged", "line-1", {"inspection_id": n}, camera="cam")
        emit(session, "inspection.flagged", "line-1", {"inspection_id": 9}, camera="cam")
    with session_scope(sqlite_url) as session:
        assert fan_out(session, mqtt=False) == 4
        deliveries = list(session.scalars(select(Delivery).order_by(Delivery.id)))
        # delivered, failed, still pending; the fourth event is new
        for delivery, status in zip(deliveries, ("delivered", "failed", "pending"), strict=False):
            delivery.status = status
        deliveries[3].status = "delivered"
        for event in session.scalars(select(Event).where(Event.id != deliveries[3].event_id)):
            event.created_at = utcnow() - timedelta(days=31)
        emit(session, "inspection.flagged", "line-1", {"inspection_id": 10}, camera="cam")
    with session_scope(sqlite_url) as session:
        # old and done: two; old but pending, new, and not yet fanned out: kept
        assert prune(session, utcnow() - timedelta(days=30)) == 2
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3
        assert sorted(session.scalars(select(Delivery.status))) == ["delivered", "pending"]
        assert prune(session, utcnow() - timedelta(days=30)) == 0

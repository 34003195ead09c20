"""Pushing results to plant systems on real parts: a Mosquitto broker, HTTP receivers
that check the signature, real workers (and ``python -m worker.dispatch``
processes) on PostgreSQL, and the admin pages that set webhooks up."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from openapi_spec_validator import validate as validate_openapi_document
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select, update

from core.db import session_scope
from core.jobs import InspectJob, send_job
from core.outbox import emit_many, envelope
from core.push import signature_valid
from core.queue import make_client
from core.tables import Delivery, Event, Webhook
from tests.conftest import ROOT, csrf_token, free_port, sample_images, settings_env
from tests.integration.conftest import logged_in

MOSQUITTO = Path("/usr/sbin/mosquitto")
PUSH_TIMEOUT_S = 120
#: a dispatcher's log line (DEBUG) for each delivery it made
DELIVERED = re.compile(r"delivery \d+ \(\S+\) to .* delivered$", re.MULTILINE)


class Mosquitto:
    """A test-owned Mosquitto broker on a free port of 127.0.0.1, anonymous clients allowed."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stdout\n"
        )
        self.log_path = folder / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        if not MOSQUITTO.exists():
            pytest.fail(
                "mosquitto is missing: `make test` installs it (scripts/install_system_deps.sh)"
            )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited:\n{self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


class Subscriber:
    """A plant system listening on MQTT: every message under ``topic``, as it came."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plant-system")
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.messages.append(
            (message.topic, json.loads(message.payload))
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber got no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    signed: bool

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Route:
    secret: str = ""
    answers: list[int] = field(default_factory=list)  # statuses to answer first, then 200


class Receiver:
    """Plant systems' HTTP endpoints (one server, a route per path) that check each
    request's signature with the route's secret and answer as told."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                route = receiver.routes.get(self.path, Route())
                signed = signature_valid(
                    route.secret,
                    self.headers.get("X-Inspection-Timestamp", ""),
                    body,
                    self.headers.get("X-Inspection-Signature", ""),
                )
                status = route.answers.pop(0) if route.answers else 200
                receiver.received.append(
                    Received(self.path, dict(self.headers), body, time.monotonic(), signed)
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def add_webhook(client, name: str, url: str, *events: str) -> str:
    """Add a webhook on the admin page; the secret it shows once."""
    page = client.post(
        "/webhooks/",
        data={
            "csrf_token": csrf_token(client, "/webhooks/"),
            "name": name,
            "url": url,
            "events": list(events),
        },
    )
    assert page.status_code == 200, page.get_data(as_text=True)
    match = re.search(r'<code id="new-secret">([0-9a-f]{64})</code>', page.get_data(as_text=True))
    assert match, "the new secret is not shown"
    return match.group(1)


def documented(client, schema: str, payload: dict[str, Any]) -> None:
    """``payload`` fits its schema in the served OpenAPI document."""
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "inspection.flagged" in spec["webhooks"]
    document = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    jsonschema.Draft202012Validator(document).validate(payload)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def deliveries(url: str) -> list[Delivery]:
    with session_scope(url) as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def settled(url: str, expected: int) -> list[Delivery] | None:
    rows = deliveries(url)
    if len(rows) >= expected and all(row.status != "pending" for row in rows):
        return rows
    return None


def test_a_flagged_inspection_reaches_webhooks_and_mqtt(
    app, settings, start_worker, mosquitto, receiver
):
    admin = logged_in(app, "ada", "admin-password")
    receiver.routes["/mes"] = Route(
        add_webhook(admin, "mes", receiver.url("/mes"), "inspection.flagged")
    )
    receiver.routes["/flaky"] = Route(
        add_webhook(admin, "flaky", receiver.url("/flaky"), "inspection.flagged"), [500, 500]
    )
    dead_url = f"http://127.0.0.1:{free_port()}/gone"  # nothing listens there
    add_webhook(admin, "dead", dead_url, "inspection.flagged")
    receiver.routes["/erp"] = Route(add_webhook(admin, "erp", receiver.url("/erp"), "report.ready"))
    subscriber = Subscriber(mosquitto, "inspection/#")
    start_worker(
        settings.model_copy(update={"mqtt_url": mosquitto.url, "delivery_max_attempts": 3})
    )

    job = InspectJob.for_image_bytes(sample_images()[0].read_bytes(), "cam-7")
    send_job(job, make_client(settings))
    # mes, flaky and dead webhooks, and MQTT; dead gives up after 3 tries (2 s + 4 s apart)
    rows = wait_until(lambda: settled(settings.database_url, 4), PUSH_TIMEOUT_S, "4 deliveries")
    with session_scope(settings.database_url) as session:
        hooks = {w.name: w.id for w in session.scalars(select(Webhook))}
        event = session.scalars(select(Event)).one()
    by_target = {row.webhook_id or "mqtt": row for row in rows}
    assert len(rows) == 4 and set(by_target) == {
        hooks["mes"],
        hooks["flaky"],
        hooks["dead"],
        "mqtt",
    }
    assert event.kind == "inspection.flagged" and event.fanned_out

    # the webhook: once, signed, the delivery id to dedupe by
    (got,) = receiver.at("/mes")
    assert got.signed and got.headers["X-Inspection-Event"] == "inspection.flagged"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Inspection-Delivery"] == str(by_target[hooks["mes"]].id)
    assert got.payload["job_id"] == job.job_id and got.payload["camera"] == "cam-7"
    assert got.payload["event"] == "inspection.flagged" and got.payload["status"] == "flagged"
    assert by_target[hooks["mes"]].status == "delivered" and by_target[hooks["mes"]].attempts == 1
    documented(admin, "InspectionFlaggedEvent", got.payload)

    # 500, 500, then 200: the third try, each wait longer than the one before
    tries = receiver.at("/flaky")
    assert len(tries) == 3 and all(t.signed for t in tries)
    assert len({t.headers["X-Inspection-Delivery"] for t in tries}) == 1
    first_gap, second_gap = tries[1].at - tries[0].at, tries[2].at - tries[1].at
    assert 1.5 <= first_gap < second_gap and second_gap >= 3.0, (first_gap, second_gap)
    flaky = by_target[hooks["flaky"]]
    assert (flaky.status, flaky.attempts, flaky.response_status) == ("delivered", 3, 200)

    # nothing listens: given up after DELIVERY_MAX_ATTEMPTS
    dead = by_target[hooks["dead"]]
    assert (dead.status, dead.attempts, dead.response_status) == ("failed", 3, None)
    assert "could not connect" in (dead.last_error or "")
    assert receiver.at("/erp") == []  # not subscribed to inspection.flagged

    # MQTT: the topic of the line and camera, acknowledged
    assert subscriber.messages == [
        (
            "inspection/line-1/cam-7/inspection/flagged",
            {**got.payload, "delivery_id": by_target["mqtt"].id},
        )
    ]
    assert by_target["mqtt"].status == "delivered"

    # the delivery log shows the tries; the failed filter only the failed one
    log = admin.get("/webhooks/deliveries").get_data(as_text=True)
    assert log.count('<tr class="delivery delivered">') == 3
    failed_page = admin.get("/webhooks/deliveries?status=failed").get_data(as_text=True)
    assert failed_page.count('<tr class="delivery ') == 1 and "could not connect" in failed_page

    # a test event reaches its webhook alone
    token = csrf_token(admin, "/webhooks/")
    assert (
        admin.post(f"/webhooks/{hooks['mes']}/test", data={"csrf_token": token}).status_code == 302
    )
    test = wait_until(lambda: receiver.at("/mes")[1:], 30, "the test event")[0]
    assert test.signed and test.headers["X-Inspection-Event"] == "test"
    assert test.payload["test"] is True and test.payload["webhook"] == "mes"
    documented(admin, "TestEvent", test.payload)
    # "retry now" gives the failed one one more try
    retried = admin.post(f"/webhooks/deliveries/{dead.id}/retry", data={"csrf_token": token})
    assert retried.status_code == 302
    wait_until(
        lambda: [
            r
            for r in deliveries(settings.database_url)
            if r.id == dead.id and r.attempts == 4 and r.status == "failed"
        ],
        30,
        "the retried delivery failed again",
    )
    time.sleep(1.5)  # a round later: still nothing for the others
    assert len(receiver.at("/flaky")) == 3 and receiver.at("/erp") == []
    assert len(subscriber.messages) == 1
    subscriber.close()


def test_two_dispatchers_fan_out_and_send_each_delivery_once(
    settings, mosquitto, receiver, tmp_path
):
    receiver.routes["/all"] = Route("s" * 64)
    with session_scope(settings.database_url) as session:
        session.add(
            Webhook(
                name="all",
                url=receiver.url("/all"),
                secret="s" * 64,
                events="inspection.flagged coil.verdict",
                created_by="test",
            )
        )
    subscriber = Subscriber(mosquitto, "inspection/#")
    env = settings_env(settings.model_copy(update={"mqtt_url": mosquitto.url}))
    logs = [tmp_path / f"dispatch-{n}.log" for n in range(2)]
    processes = []
    for log_path in logs:
        with open(log_path, "wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "worker.dispatch", "--log-level", "DEBUG"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for log_path in logs:
            wait_until(
                lambda p=log_path: "connected to the MQTT broker" in p.read_text(),
                60,
                f"{log_path.name} dispatching",
            )
        events = 240
        for start in range(0, events, 40):  # while both poll
            with session_scope(settings.database_url) as session:
                emit_many(
                    session,
                    [
                        (
                            "inspection.flagged",
                            f"cam-{n % 3}",
                            envelope("inspection.flagged", "line-1", {"n": n}),
                        )
                        for n in range(start, start + 40)
                    ],
                )
            time.sleep(0.3)
        rows = wait_until(
            lambda: settled(settings.database_url, 2 * events), PUSH_TIMEOUT_S, "all delivered"
        )
        with session_scope(settings.database_url) as session:
            per_target = (
                session.execute(
                    select(func.count())
                    .select_from(Delivery)
                    .group_by(Delivery.event_id, Delivery.target)
                )
                .scalars()
                .all()
            )
        assert len(rows) == 2 * events and set(per_target) == {1}
        assert all(row.status == "delivered" and row.attempts == 1 for row in rows)
        sent = [r.headers["X-Inspection-Delivery"] for r in receiver.at("/all")]
        assert len(sent) == events and len(set(sent)) == events  # none sent twice
        assert all(r.signed for r in receiver.at("/all"))
        wait_until(lambda: len(subscriber.messages) >= events, 10, "every MQTT message")
        published = [payload["delivery_id"] for _topic, payload in subscriber.messages]
        assert len(published) == events and len(set(published)) == events
        # both really took part
        shares = [len(DELIVERED.findall(log_path.read_text())) for log_path in logs]
        assert sum(shares) == 2 * events and min(shares) > 0, shares
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            assert process.wait(30) == 0  # SIGTERM: a clean stop
        subscriber.close()


def test_webhook_pages_are_for_admins_with_csrf(app, settings):
    anonymous = app.test_client()
    response = anonymous.get("/webhooks/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    supervisor = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(supervisor, "/inspections")
    assert "/webhooks/" not in supervisor.get("/inspections").get_data(as_text=True)  # no nav link
    for path in ("/webhooks/", "/webhooks/deliveries"):
        assert supervisor.get(path).status_code == 403
    refused = supervisor.post(
        "/webhooks/",
        data={
            "csrf_token": token,
            "name": "x",
            "url": "https://mes.example/",
            "events": "inspection.flagged",
        },
    )
    assert refused.status_code == 403

    admin = logged_in(app, "ada", "admin-password")
    assert 'href="/webhooks/"' in admin.get("/inspections").get_data(as_text=True)
    no_token = admin.post(
        "/webhooks/",
        data={"name": "x", "url": "https://mes.example/", "events": "inspection.flagged"},
    )
    assert no_token.status_code == 400
    token = csrf_token(admin, "/webhooks/")
    wrong = admin.post(
        "/webhooks/",
        data={
            "csrf_token": token,
            "name": "x",
            "url": "file:///etc/passwd",
            "events": "inspection.flagged",
        },
    )
    assert wrong.status_code == 400 and "Only http:// and https://" in wrong.get_data(as_text=True)
    none = admin.post(
        "/webhooks/", data={"csrf_token": token, "name": "x", "url": "https://mes.example/"}
    )
    assert none.status_code == 400 and "at least one event" in none.get_data(as_text=True)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Webhook)) == 0

    # the served OpenAPI document describes the pushed events beside the API
    validate_openapi_document(admin.get("/api/v1/openapi.json").get_json())

    secret = add_webhook(
        admin, "MES line 3", "https://mes.example/in", "coil.verdict", "report.ready"
    )
    with session_scope(settings.database_url) as session:
        hook = session.scalars(select(Webhook)).one()
    assert hook.secret == secret and hook.events == "coil.verdict report.ready"
    assert secret not in admin.get("/webhooks/").get_data(as_text=True)  # shown once

    # deactivating asks first; activating does not
    asked = admin.post(f"/webhooks/{hook.id}/active", data={"csrf_token": token, "active": "0"})
    assert asked.status_code == 200 and "Deactivate the webhook MES line 3?" in asked.get_data(
        as_text=True
    )
    assert webhook(settings, hook.id).active
    admin.post(
        f"/webhooks/{hook.id}/active", data={"csrf_token": token, "active": "0", "confirmed": "1"}
    )
    assert not webhook(settings, hook.id).active
    inactive_test = admin.post(f"/webhooks/{hook.id}/test", data={"csrf_token": token})
    assert inactive_test.status_code == 302 and deliveries(settings.database_url) == []
    admin.post(f"/webhooks/{hook.id}/active", data={"csrf_token": token, "active": "1"})
    assert webhook(settings, hook.id).active

    # rotating asks first, then shows the new secret once
    asked = admin.post(f"/webhooks/{hook.id}/rotate", data={"csrf_token": token})
    assert asked.status_code == 200 and webhook(settings, hook.id).secret == secret
    rotated = admin.post(
        f"/webhooks/{hook.id}/rotate", data={"csrf_token": token, "confirmed": "1"}
    )
    new_secret = webhook(settings, hook.id).secret
    assert new_secret != secret and new_secret in rotated.get_data(as_text=True)

    # a test event: one delivery, to this webhook, of the kind "test"
    sent = admin.post(f"/webhooks/{hook.id}/test", data={"csrf_token": token})
    assert sent.status_code == 302 and "/webhooks/deliveries" in sent.headers["Location"]
    (delivery,) = deliveries(settings.database_url)
    assert delivery.webhook_id == hook.id and delivery.status == "pending"
    log = admin.get(sent.headers["Location"]).get_data(as_text=True)
    assert "<code>test</code>" in log and "MES line 3" in log

    # a failed delivery: filtered, retried now
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Delivery).values(status="failed", attempts=12, last_error="HTTP 503")
        )
    assert "HTTP 503" in admin.get("/webhooks/deliveries?status=failed").get_data(as_text=True)
    assert "HTTP 503" not in admin.get("/webhooks/deliveries?status=delivered").get_data(
        as_text=True
    )
    no_csrf = admin.post(f"/webhooks/deliveries/{delivery.id}/retry")
    assert no_csrf.status_code == 400 and deliveries(settings.database_url)[0].status == "failed"
    retried = admin.post(
        f"/webhooks/deliveries/{delivery.id}/retry",
        data={"csrf_token": token, "status": "failed", "webhook": "//evil"},
    )
    assert retried.status_code == 302 and retried.headers["Location"].startswith(
        "/webhooks/deliveries"
    )
    assert deliveries(settings.database_url)[0].status == "pending"

    # deleting asks first, then takes the webhook and its log
    asked = admin.post(f"/webhooks/{hook.id}/delete", data={"csrf_token": token})
    assert asked.status_code == 200 and webhook(settings, hook.id) is not None
    admin.post(f"/webhooks/{hook.id}/delete", data={"csrf_token": token, "confirmed": "1"})
    assert webhook(settings, hook.id) is None and deliveries(settings.database_url) == []


def webhook(settings, webhook_id: int) -> Webhook | None:
    with session_scope(settings.database_url) as session:
        return session.get(Webhook, webhook_id)

"""Broken broker messages against a real worker: none stops it, none vanishes.

Each message ends as one explained ``rejected`` row (where a job id can be
recovered: the ``job_id`` argument, or a task id that is a UUID) or as one dead
letter, and the worker goes on inspecting good jobs. These are the shapes a
security review sent with kombu and redis-cli; before the worker checked
envelopes, the first one stopped every worker that took it.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.exceptions import KombuError
from sqlalchemy import select

from core.db import session_scope
from core.jobs import QUEUE_NAME, InspectJob, send_job
from core.queue import make_client, workers_online
from core.tables import DeadLetter, Inspection
from producer.client import InspectionClient
from tests.conftest import (
    ROOT,
    SAMPLE,
    RedisServer,
    count_rows,
    sample_images,
    seed_references,
    settings_env,
    wait_for_rows,
)

NOW = "2026-12-05T10:00:00+00:00"
EXCHANGE = Exchange(QUEUE_NAME, "direct")


def good_kwargs(job_id: str) -> dict:
    image = base64.b64encode(sample_images()[0].read_bytes()).decode()
    return {"job_id": job_id, "camera": "hostile", "captured_at": NOW, "image_b64": image}


def publish_raw(redis_url: str, body: str | bytes, headers: dict | None, **options) -> None:
    """Publish ``body`` as it is (no serialiser) to the inspect queue, as kombu does."""
    with Connection(redis_url) as connection:
        connection.Producer().publish(
            body,
            exchange=EXCHANGE,
            routing_key=QUEUE_NAME,
            declare=[Queue(QUEUE_NAME, EXCHANGE, QUEUE_NAME)],
            headers=headers,
            **{"content_type": "application/json", "content_encoding": "utf-8", **options},
        )


def envelope(body: str, **parts) -> bytes:
    """A kombu envelope as the Redis transport stores it, with ``parts`` replaced."""
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "inspect", "id": "hand-made"},  # no UUID: no job id to recover
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": QUEUE_NAME, "routing_key": QUEUE_NAME},
            "body_encoding": "base64",
            "priority": 0,
        },
    }
    message.update(parts)
    return json.dumps({k: v for k, v in message.items() if v is not None}).encode()


def test_no_broken_message_stops_a_worker_or_vanishes(settings, start_worker, redis_url):
    seed_references(settings)
    worker = start_worker(settings)
    rows: dict[str, str] = {}  # job id -> a fragment its error must contain
    dead: list[str] = []  # fragments, one per expected dead letter

    # the review's reproduction: '{}' with headers whose id is no UUID
    publish_raw(redis_url, "{}", {"task": "inspect", "id": "x"})
    dead.append("[args, kwargs, options]; got an empty object")
    for body in ('"a string"', "[[], {}]"):
        task_id = str(uuid.uuid4())
        publish_raw(redis_url, body, {"task": "inspect", "id": task_id})
        rows[task_id] = "[args, kwargs, options]"
    # headers without an id: the job id comes from the arguments
    job_id = str(uuid.uuid4())
    publish_raw(redis_url, json.dumps([[], good_kwargs(job_id), {}]), {"task": "inspect"})
    rows[job_id] = "no task id"
    # an undecodable body
    task_id = str(uuid.uuid4())
    publish_raw(redis_url, "[[], {not json", {"task": "inspect", "id": task_id})
    rows[task_id] = "could not be read as JSON"
    # kwargs that are not an object
    task_id = str(uuid.uuid4())
    publish_raw(redis_url, '[[], "camera-7", {}]', {"task": "inspect", "id": task_id})
    rows[task_id] = "keyword arguments must be an object"
    # a compressed body: refused unread (it could expand to gigabytes)
    publish_raw(redis_url, "[[], {}, {}]", {"task": "inspect", "id": "z"}, compression="zlib")
    dead.append("compressed")
    task_id = str(uuid.uuid4())
    publish_raw(redis_url, "[[], {}, {}]", {"task": "inspect", "id": task_id}, compression="bzip2")
    rows[task_id] = "compression is not accepted"

    client = make_client(settings)
    # wrong task names, with and without a job id to recover
    for name in ("inspekt", "celery.chord_unlock"):
        job_id = str(uuid.uuid4())
        client.send_task(name, kwargs=good_kwargs(job_id), queue=QUEUE_NAME, task_id="t")
        rows[job_id] = f"unknown task '{name}'"
    client.send_task("inspekt", kwargs={"camera": "c"}, queue=QUEUE_NAME, task_id="no-uuid")
    dead.append("unknown task 'inspekt'")
    # a job that asks to wait: the worker would hold it unacknowledged for an hour
    job_id = str(uuid.uuid4())
    client.send_task(
        "inspect", kwargs=good_kwargs(job_id), queue=QUEUE_NAME, task_id=job_id, countdown=3600
    )
    rows[job_id] = "take no eta"

    # items pushed on the list by hand: no headers, headers not an object,
    # an envelope with parts missing, JSON that is no envelope, and no JSON at all
    broker = redis.Redis.from_url(redis_url)
    broker.lpush(QUEUE_NAME, envelope("[[], {}, {}]", headers=None))
    dead.append("not a Celery task message")
    broker.lpush(QUEUE_NAME, envelope("[[], {}, {}]", headers=[1, 2]))
    dead.append("headers are a list")
    broker.lpush(QUEUE_NAME, envelope("[[], {}, {}]", properties={"delivery_tag": 7}))
    dead.append("delivery tag")
    broker.lpush(QUEUE_NAME, b"[1, 2, 3]")
    dead.append("a JSON list, not a kombu message")
    broker.lpush(QUEUE_NAME, b"\x00\xffnot json at all")
    dead.append("not JSON")

    # and a good job after them all
    with InspectionClient(settings) as producer:
        good = producer.submit_file(SAMPLE / "scratches" / "Sc_5.png", "hostile")
    wait_for_rows(settings.database_url, len(rows) + 1, 120)

    with session_scope(settings.database_url) as session:
        stored = {r.job_id: r for r in session.scalars(select(Inspection))}
        letters = [d.reason for d in session.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    assert stored[good].status == "flagged"
    assert set(stored) == {*rows, good}
    for job_id, fragment in rows.items():
        assert stored[job_id].status == "rejected"
        assert fragment in (stored[job_id].error or ""), (fragment, stored[job_id].error)
    assert len(letters) == len(dead), letters
    for fragment in dead:
        assert any(fragment in reason for reason in letters), (fragment, letters)
    assert worker.process.poll() is None, worker.output()
    assert "Unrecoverable error" not in worker.output()
    # nothing left behind: not queued, not held, not in the processing list
    assert broker.llen(QUEUE_NAME) == 0
    assert broker.hlen("unacked") == 0
    assert count_rows(settings.database_url) == len(rows) + 1


def test_a_client_of_redis_cannot_stop_the_workers(settings, start_worker):
    # Celery's remote control is off: a broadcast "shutdown" (or any other
    # command) reaches no worker. The heartbeat says who is alive instead.
    seed_references(settings)
    worker = start_worker(settings)
    client = make_client(settings)
    client.control.broadcast("shutdown")
    assert client.control.ping(timeout=1.0) == []
    broker = redis.Redis.from_url(settings.redis_url)
    assert workers_online(broker) == [worker.name.replace("%h", socket.gethostname())]
    with InspectionClient(settings) as producer:
        producer.submit_file(SAMPLE / "patches" / "Pa_5.png", "still-on")
    wait_for_rows(settings.database_url, 1, 60)
    assert worker.process.poll() is None
    node = worker.name.replace("%h", socket.gethostname())
    health = [sys.executable, "-m", "worker.heartbeat", node]  # compose's health check
    assert subprocess.run(health, env=settings_env(settings), cwd=ROOT).returncode == 0
    worker.stop()
    assert workers_online(broker) == []  # a worker that stops says so at once
    assert subprocess.run(health, env=settings_env(settings), cwd=ROOT).returncode == 1


OUTSIDE_CLIENT = """
import base64, sys
from celery import Celery

redis_url, job_id, image = sys.argv[1:]
app = Celery(broker=redis_url)  # Celery's defaults: no queue named, JSON
with open(image, "rb") as handle:
    data = base64.b64encode(handle.read()).decode()
app.send_task("inspect", kwargs={
    "job_id": job_id, "camera": "outside", "captured_at": "2026-12-05T10:00:00+00:00",
    "image_b64": data, "meta": {"client": "plain celery"},
})
"""


def test_a_client_that_names_no_queue_is_still_heard(settings, start_worker, tmp_path):
    # A client written from the documented job message alone: it imports nothing
    # of this project and sends to Celery's default queue, which no worker reads.
    seed_references(settings)
    start_worker(settings)
    script = tmp_path / "outside_client.py"
    script.write_text(OUTSIDE_CLIENT)
    job_id = str(uuid.uuid4())
    image = SAMPLE / "inclusion" / "In_5.png"
    subprocess.run(
        [sys.executable, "-I", str(script), settings.redis_url, job_id, str(image)],
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    wait_for_rows(settings.database_url, 1, 30)
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(Inspection))
    assert row.job_id == job_id and row.status == "flagged" and row.meta["client"] == "plain celery"
    assert redis.Redis.from_url(settings.redis_url).llen("celery") == 0


def test_a_link_raced_into_the_inbox_never_leads_outside(settings, start_worker, tmp_path):
    # A sender swaps inbox/race.png between a real image and a symbolic link to a
    # file outside the inbox while its jobs are read. Resolving the path and then
    # opening it by name let 26 of 400 such jobs read the outside file.
    secret = b"TOP-SECRET-" * 20
    (tmp_path / "secret.txt").write_bytes(secret)
    image = sample_images()[0].read_bytes()
    inbox = settings.inbox_dir
    inbox.mkdir(parents=True)
    (inbox / "race.png").write_bytes(image)
    stop = threading.Event()

    def swap() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            staged = inbox / f".staged-{i}"
            if i % 2:
                os.symlink(tmp_path / "secret.txt", staged)
            else:
                staged.write_bytes(image)
            os.replace(staged, inbox / "race.png")

    seed_references(settings)
    start_worker(settings.model_copy(update={"inspect_batch_size": 4}))
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    client = make_client(settings)
    try:
        for _ in range(300):
            job = InspectJob(
                job_id=str(uuid.uuid4()),
                camera="race",
                captured_at=datetime.now(UTC),
                image_path="race.png",
            )
            send_job(job, client)
        wait_for_rows(settings.database_url, 300, 180)
    finally:
        stop.set()
        swapper.join()
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Inspection)).all()
    errors = [row.error or "" for row in rows]
    assert not any("TOP-SEC" in error for error in errors)
    blobs = [path.read_bytes() for path in settings.blob_dir.rglob("*") if path.is_file()]
    assert blobs and not any(b"TOP-SECRET" in blob for blob in blobs)
    # both sides of the race were seen: images inspected, links refused
    assert any(row.status != "rejected" for row in rows)
    assert any("symbolic link" in error for error in errors)


def test_a_camera_under_the_documented_redis_acl_can_only_enqueue(settings, start_worker, tmp_path):
    # docs/redis-users.acl: the workers and the site connect as "line"; a camera as
    # "camera", which can enqueue jobs and read the queue's length, nothing else.
    server = RedisServer(
        tmp_path / "acl-redis",
        extra=("--aclfile", str(ROOT / "docs" / "redis-users.acl")),
        user="line:change-me-line",
    ).start()
    try:
        line = settings.model_copy(update={"redis_url": server.url})
        seed_references(line)
        start_worker(line)
        camera = line.model_copy(update={"redis_url": server.url_as("camera:change-me-camera")})
        with InspectionClient(camera) as producer:
            producer.submit_file(SAMPLE / "crazing" / "Cr_5.png", "acl-camera")
            assert producer.queue_length() >= 0
        wait_for_rows(line.database_url, 1, 60)
        as_camera = redis.Redis.from_url(camera.redis_url)
        for denied in (
            lambda: make_client(camera).control.broadcast("shutdown"),
            lambda: as_camera.lrange(QUEUE_NAME, 0, -1),  # other cameras' images
            lambda: as_camera.hgetall("unacked"),
            lambda: as_camera.delete(QUEUE_NAME),
            lambda: as_camera.flushdb(),
        ):
            with pytest.raises((redis.RedisError, KombuError), match="no permissions"):
                denied()
        with pytest.raises(redis.exceptions.AuthenticationError):  # the default user is off
            redis.Redis.from_url(server.url_as("")).ping()
    finally:
        server.stop()

"""Producers put JSON job messages on the real Redis queue."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid

import redis

from core.jobs import QUEUE_NAME, InspectJob
from tests.conftest import ROOT, SAMPLE, sample_images, settings_env


def queued_messages(redis_url: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw) for raw in client.lrange(QUEUE_NAME, 0, -1)]


def test_replay_sends_count_jobs_at_a_rate_and_prints_their_ids(settings):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "producer",
            "replay",
            str(SAMPLE / "scratches"),
            "--camera",
            "replay-cam",
            "--rate",
            "20",
            "--count",
            "12",
        ],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    job_ids = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert len(job_ids) == 12 and len(set(job_ids)) == 12  # loops over 10 files
    messages = queued_messages(settings.redis_url)
    assert len(messages) == 12
    for raw in messages:
        assert raw["content-type"] == "application/json"
        assert raw["headers"]["task"] == "inspect"
        _args, kwargs, _embed = json.loads(base64.b64decode(raw["body"]))
        job = InspectJob.from_message(kwargs)
        assert job.camera == "replay-cam" and job.job_id in job_ids


def test_submit_refuses_missing_files_and_keeps_going(settings, tmp_path):
    good = sample_images()[0]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "producer",
            "submit",
            str(tmp_path / "missing.png"),
            str(good),
            "--camera",
            "cam",
        ],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "missing.png" in result.stderr
    assert uuid.UUID(result.stdout.split("\t")[0])
    assert len(queued_messages(settings.redis_url)) == 1


def test_bad_camera_name_is_refused_before_sending(settings):
    result = subprocess.run(
        [sys.executable, "-m", "producer", "submit", str(sample_images()[0]), "--camera", ""],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "camera" in result.stderr
    assert queued_messages(settings.redis_url) == []


def start_producer(settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "producer", *args],
        cwd=ROOT,
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_hot_folder_enqueues_complete_images_once(settings, tmp_path):
    folder = tmp_path / "hot"
    folder.mkdir()
    images = sample_images()[:4]
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".hidden.png").write_bytes(images[0].read_bytes())
    (folder / "writing.png.part").write_bytes(b"half")
    watcher = start_producer(
        settings, "watch", str(folder), "--camera", "hot-cam", "--settle", "0.5", "--poll", "0.1"
    )
    try:
        # a file still being written is not taken until it holds still
        slow = folder / "slow.png"
        data = images[1].read_bytes()
        with open(slow, "wb") as handle:
            for start in range(0, len(data), 4096):
                handle.write(data[start : start + 4096])
                handle.flush()
                time.sleep(0.15)
        wait_until(lambda: len(list((folder / "done").glob("*.png"))) == 5, 30, "5 done files")
        wait_until(lambda: (folder / "failed" / "notes.txt").exists(), 10, "failed file")
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    reason = (folder / "failed" / "notes.txt.reason.txt").read_text()
    assert "not an image" in reason
    assert (folder / ".hidden.png").exists() and (folder / "writing.png.part").exists()
    messages = queued_messages(settings.redis_url)
    assert len(messages) == 5 == len(out.splitlines())
    sent = {json.loads(base64.b64decode(m["body"]))[1]["meta"]["filename"] for m in messages}
    assert sent == {p.name for p in images} | {"slow.png"}

    # a restarted watcher finds nothing new to send
    again = start_producer(
        settings, "watch", str(folder), "--camera", "hot-cam", "--settle", "0.2", "--poll", "0.1"
    )
    time.sleep(2)
    again.terminate()
    again.communicate(timeout=10)
    assert len(queued_messages(settings.redis_url)) == 5


def test_a_file_sent_twice_keeps_its_job_id(settings, tmp_path):
    """A watcher that dies after sending, before moving, sends the same job again."""
    from producer.client import InspectionClient
    from producer.hotfolder import HotFolder

    folder = tmp_path / "hot"
    folder.mkdir()
    image = sample_images()[0]
    with InspectionClient(settings) as client:
        hot = HotFolder(folder, "cam", client)
        (folder / image.name).write_bytes(image.read_bytes())
        first = hot.process(folder / image.name)
        (folder / image.name).write_bytes(image.read_bytes())  # "restarted" before the move
        second = hot.process(folder / image.name)
    assert first == second
    stem = image.stem
    assert sorted(p.name for p in (folder / "done").iterdir()) == [f"{stem}.1.png", f"{stem}.png"]


def test_producers_spool_while_redis_is_down_and_send_when_it_is_back(settings, redis_server):
    down = settings.model_copy(update={"redis_url": redis_server.url})  # nothing listens there yet
    producer = start_producer(
        down,
        "replay",
        str(SAMPLE / "crazing"),
        "--camera",
        "spool-cam",
        "--rate",
        "20",
        "--count",
        "6",
    )
    spool = down.spool_dir
    wait_until(
        lambda: spool.is_dir() and len(list(spool.glob("*.json"))) == 6, 60, "6 spooled jobs"
    )
    assert producer.poll() is None  # it waits for Redis rather than dropping anything
    redis_server.start()
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err
    assert "spooled jobs sent" in err
    job_ids = [line.split("\t")[0] for line in out.splitlines()]
    queued = [
        json.loads(base64.b64decode(m))[1]["job_id"]
        for m in [
            json.loads(raw)["body"] for raw in redis_server.client().lrange(QUEUE_NAME, 0, -1)
        ]
    ]
    assert sorted(queued) == sorted(job_ids) and len(job_ids) == 6
    assert list(spool.glob("*.json*")) == []


def test_producers_slow_down_when_the_queue_is_long(settings):
    slow = settings.model_copy(update={"max_queue_length": 5})
    producer = start_producer(
        slow,
        "replay",
        str(SAMPLE / "patches"),
        "--camera",
        "bp-cam",
        "--rate",
        "0",
        "--count",
        "30",
    )
    client = redis.Redis.from_url(settings.redis_url)
    try:
        wait_until(lambda: client.llen(QUEUE_NAME) >= 5, 30, "a full queue")
        time.sleep(2)
        assert producer.poll() is None  # still waiting for room
        assert client.llen(QUEUE_NAME) <= 7
        client.delete(QUEUE_NAME)  # the workers catch up
        wait_until(
            lambda: producer.poll() is not None or client.llen(QUEUE_NAME) >= 5,
            30,
            "the producer to resume",
        )
    finally:
        producer.terminate()
        producer.communicate(timeout=10)

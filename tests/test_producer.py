"""Producers put JSON job messages on the real Redis queue."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
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

"""A dead worker's jobs back in seconds, a slow worker's left alone (#30 item 1),
with real worker processes, Redis and PostgreSQL; the visibility timeout stays at
its default (600 s), so only the heartbeats can bring the jobs back this soon."""

from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import redis

from admin.line_status import read_line_status
from core.blobs import BlobStore
from core.db import session_scope
from core.queue import JOBS_RESTORED_KEY, LOST_LOG_KEY, WORKERS_LOST_KEY, recovery_counts
from core.references import add_reference
from producer.client import InspectionClient
from tests.conftest import count_rows, seed_references, wait_for_rows
from tests.integration.test_faults import rows_by_job, submit_sample
from tests.integration.test_frames_line import frame, surface, with_spot


def fresh_counters(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url)
    client.delete(WORKERS_LOST_KEY, JOBS_RESTORED_KEY, LOST_LOG_KEY)
    return client


def test_a_killed_workers_jobs_are_stored_within_seconds(settings, start_worker, capsys):
    # The victim holds a partial batch for 30 s: it takes all 20 jobs and stores none.
    assert settings.visibility_timeout_s == 600
    holding = settings.model_copy(
        update={"inspect_batch_size": 64, "inspect_batch_wait_ms": 30_000}
    )
    seed_references(settings)
    broker = fresh_counters(settings.redis_url)
    victim = start_worker(holding)
    job_ids = submit_sample(settings, 20, "kill-test")
    deadline = time.monotonic() + 30
    while broker.hlen("unacked") < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.hlen("unacked") == 20, "the worker never took the jobs"
    start_worker(settings.model_copy(update={"inspect_batch_wait_ms": 50}))

    os.killpg(victim.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.process.wait()
    assert count_rows(settings.database_url) == 0
    wait_for_rows(settings.database_url, 20, 120)
    took = time.monotonic() - killed_at
    with capsys.disabled():
        print(f"\nall 20 jobs of the killed worker committed {took:.1f} s after the kill")  # noqa: T201

    time.sleep(1)
    rows = rows_by_job(settings.database_url)
    assert sorted(rows) == sorted(job_ids) and set(rows.values()) == {1}
    assert recovery_counts(broker) == (1, 20)  # the heartbeat, not the visibility timeout
    assert broker.hlen("unacked") == 0
    # what the dashboard shows
    line = read_line_status(settings.redis_url, 2.0)
    assert (line.workers_lost, line.jobs_restored) == (1, 20)
    [lost] = line.lost_recently
    assert lost["worker"] == victim.name.replace("%h", socket.gethostname()) and lost["jobs"] == 20


def test_a_slow_worker_keeps_its_jobs(settings, start_worker):
    """Building a camera's memory and inspecting a long strip keep a worker's main
    thread busy for many heartbeat lifetimes (1 s here): its heartbeat thread goes
    on, and no other worker takes its jobs."""
    quick = settings.model_copy(
        update={
            "worker_lost_after_s": 1.0,
            "inspect_batch_size": 4,
            "max_image_bytes": 32 * 1024 * 1024,  # noise strips hardly compress
        }
    )
    rng = np.random.default_rng(3)
    seed_references(settings)
    with session_scope(settings.database_url) as session:
        store = BlobStore(settings.blob_dir)
        for _ in range(2):
            good = frame(surface(rng, 400, 900))
            add_reference(session, store, good, "good surface", "ok", "test", camera="strip-9")
    broker = fresh_counters(settings.redis_url)
    slow = start_worker(quick)
    watcher = start_worker(quick)
    with InspectionClient(quick) as client:
        ids = [
            client.submit_bytes(frame(with_spot(surface(rng, 2048, 4096), 900, 3000)), "strip-9")
            for _ in range(2)
        ]
        client.wait_until_spool_sent()
    wait_for_rows(settings.database_url, 2, 300)
    time.sleep(2 * quick.worker_lost_after_s)
    rows = rows_by_job(settings.database_url)
    assert sorted(rows) == sorted(ids) and set(rows.values()) == {1}
    assert recovery_counts(broker) == (0, 0)
    for worker in (slow, watcher):
        assert "stopped answering" not in worker.output()

"""Storage faults with real processes: BLOB_DIR full or read-only, the database's
disk full. A worker holds its jobs unacknowledged, says why in its log and its
metrics, and stores every job exactly once by itself when the fault clears.

The full and read-only folders are real: small tmpfs mounts (this needs root and
permission to mount; the tests skip, saying so, where that is refused). SQLite's
database sits on such a mount. PostgreSQL's own disk cannot be filled safely on a
shared machine, so the server is made to answer every INSERT into ``inspections``
as a full disk does (an error with SQLSTATE 53100, raised by a trigger): the same
driver exception the worker would get.

Larger runs for docs/benchmarks.md: ``STORAGE_FAULT_JOBS=300 STORAGE_FAULT_HOLD_S=60``
(jobs submitted during the fault, and how long it lasts); ``-s`` shows the figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, text

from core.blobs import BlobStore, BlobStoreUnwritable
from core.db import dispose_engines, session_scope
from core.jobs import QUEUE_NAME
from core.migrate import upgrade_to_head
from core.queue import make_client
from core.tables import Inspection
from producer.client import InspectionClient
from tests.conftest import count_rows, free_port, png_bytes, sample_images, seed_references

JOBS = int(os.environ.get("STORAGE_FAULT_JOBS", "12"))
HOLD_S = float(os.environ.get("STORAGE_FAULT_HOLD_S", "0"))
# How long a fault has to show before the test looks (the worker's first batch
# loads the model first), and how long it has to store everything once cleared
# (the backoff between tries reaches 30 s only after a fault of a minute or more).
SHOWS_WITHIN_S = 60
STORED_WITHIN_S = 90 + JOBS / 5
# room for the jobs' images (about 35 KB each) once the fault clears
BLOB_TMPFS = f"{2 + JOBS // 16}m"


# -- file systems -----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A small tmpfs mounted on ``folder`` for the block; unmounted after it."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        dispose_engines()  # this process's SQLite connections to it
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # detach; freed when unused


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system is full; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (1 << 16, 1 << 12, 1 << 9):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * chunk)
    return filler


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".tmp-*")]


# -- jobs, broker, rows, metrics --------------------------------------------------------


def submit_new_images(settings, count: int, camera: str) -> list[str]:
    """``count`` jobs whose images the store does not hold yet (a sample image with
    one pixel changed): each needs a write."""
    rng = np.random.default_rng()
    images = sample_images()
    with InspectionClient(settings) as client:
        ids = []
        for i in range(count):
            pixels = np.array(Image.open(images[i % len(images)]).convert("L"))
            pixels[0, 0] = (int(pixels[0, 0]) + 1 + int(rng.integers(0, 254))) % 256
            ids.append(client.submit_bytes(png_bytes(Image.fromarray(pixels)), camera))
        client.wait_until_spool_sent()
    return ids


def jobs_in_broker(settings) -> set[str]:
    """The ids of the jobs still in Redis: queued, being fetched or unacknowledged."""
    broker = make_client(settings).connection().default_channel.client
    raw = [
        *broker.lrange(QUEUE_NAME, 0, -1),
        *broker.lrange(f"{QUEUE_NAME}\x06\x16processing", 0, -1),
        *(json.dumps(json.loads(v)[0]) for v in broker.hvals("unacked")),
    ]
    return {json.loads(item)["headers"]["id"] for item in raw}


def rows_by_job(url: str) -> dict[str, tuple[int, str, str | None]]:
    """job_id -> (how many rows, status, image_key)."""
    found: dict[str, tuple[int, str, str | None]] = {}
    with session_scope(url) as session:
        for job_id, status, key in session.execute(
            select(Inspection.job_id, Inspection.status, Inspection.image_key)
        ):
            count = found.get(job_id, (0, "", None))[0]
            found[job_id] = (count + 1, status, key)
    return found


def wait_for(condition, timeout: float, what: str, worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.process.poll() is not None:
            raise AssertionError(f"the worker died while waiting for {what}:\n{worker.output()}")
        time.sleep(0.25)
    raise AssertionError(f"no {what} within {timeout}s:\n{worker.output()[-4000:]}")


def metrics_of(worker) -> str:
    found = re.search(r"Prometheus metrics on 127\.0\.0\.1 port (\d+)", worker.output())
    assert found, "the worker serves no metrics"
    url = f"http://127.0.0.1:{found.group(1)}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


def metric(text_: str, name: str, **labels: str) -> float | None:
    for line in text_.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
    return None


def observed(settings):
    """Settings for a worker whose metrics the test reads."""
    return settings.model_copy(update={"worker_metrics_port": free_port()})


# -- the checks every fault shares ------------------------------------------------------


def assert_held(settings, worker, job_ids: list[str], says: str, store: str) -> float:
    """While the fault lasts (HOLD_S at least): the log says why, no row, every job
    still in Redis, the worker alive, its metrics showing the fault. Returns when
    the fault began to show."""
    wait_for(lambda: says in worker.output(), SHOWS_WITHIN_S, f"log line {says!r}", worker)
    shown = time.monotonic()
    time.sleep(HOLD_S)
    line = next(line for line in worker.output().splitlines() if says in line)
    assert "holding" in line and "retrying" in line, line
    assert not rows_by_job(settings.database_url).keys() & set(job_ids)
    assert jobs_in_broker(settings) == set(job_ids)  # none acknowledged, none lost
    assert worker.process.poll() is None
    scraped = metrics_of(worker)
    assert metric(scraped, "inspection_storage_blocked", store=store) == 1.0
    assert (metric(scraped, "inspection_storage_faults_total", store=store) or 0) >= 1
    assert not [
        line for line in worker.output().splitlines() if "rejected" in line and "job " in line
    ]
    return shown


def assert_stored_once(settings, worker, job_ids: list[str], store: str, shown: float) -> None:
    """Once cleared: every job stored exactly once, none rejected, its image whole,
    Redis empty, the fault cleared in the log and the metrics."""
    cleared = time.monotonic()
    wanted = set(job_ids)
    wait_for(
        lambda: wanted <= rows_by_job(settings.database_url).keys(),
        STORED_WITHIN_S,
        f"rows for all {len(wanted)} jobs",
        worker,
    )
    stored = time.monotonic()
    wait_for(lambda: not jobs_in_broker(settings), 30, "every job acknowledged", worker)
    held, took = cleared - shown, stored - cleared
    figure = f"{store}: {len(wanted)} jobs held {held:.1f} s, stored once {took:.1f} s after"
    print(f"\n{figure} the fault cleared")  # noqa: T201
    rows = rows_by_job(settings.database_url)
    mine = {job_id: rows[job_id] for job_id in wanted}
    assert {count for count, _, _ in mine.values()} == {1}
    assert {status for _, status, _ in mine.values()} <= {"passed", "flagged"}
    blobs = BlobStore(settings.blob_dir)
    for _, _, key in mine.values():
        assert key and hashlib.sha256(blobs.get(key)).hexdigest() == key
    assert not temporary_files(settings.blob_dir)
    assert "storing again after" in worker.output()
    assert metric(metrics_of(worker), "inspection_storage_blocked", store=store) == 0.0


# -- the tests --------------------------------------------------------------------------


def test_a_full_blob_store_leaves_no_half_written_file(tmp_path):
    with tmpfs(tmp_path / "blobs") as folder:
        store = BlobStore(folder)
        filler = fill(folder)
        with pytest.raises(BlobStoreUnwritable) as raised:
            store.put_many([b"a" * 1000, b"b" * 50_000])
        assert raised.value.reason == "full" and str(raised.value).endswith("is full (ENOSPC)")
        assert not temporary_files(folder)
        filler.unlink()
        key = store.put(b"b" * 50_000)
        remount(folder, "ro")
        with pytest.raises(BlobStoreUnwritable, match="is read-only"):
            store.put(b"c")
        assert store.get(key) == b"b" * 50_000  # reading goes on
        remount(folder, "rw")


def test_a_full_blob_dir_holds_the_jobs_until_it_has_room(settings, start_worker):
    line = observed(settings)
    with tmpfs(line.blob_dir, size=BLOB_TMPFS) as folder:
        seed_references(line)
        worker = start_worker(line)
        try:
            filler = fill(folder)
            job_ids = submit_new_images(line, JOBS, "blob-full")
            says = f"BLOB_DIR {folder} is full (ENOSPC)"
            shown = assert_held(line, worker, job_ids, says, "blobs")
            filler.unlink()
            assert_stored_once(line, worker, job_ids, "blobs", shown)
        finally:
            worker.stop()


def test_a_read_only_blob_dir_holds_the_jobs_until_it_is_writable(settings, start_worker):
    line = observed(settings)
    with tmpfs(line.blob_dir, size=BLOB_TMPFS) as folder:
        seed_references(line)
        worker = start_worker(line)
        try:
            remount(folder, "ro")
            job_ids = submit_new_images(line, JOBS, "blob-read-only")
            says = f"BLOB_DIR {folder} is read-only (EROFS)"
            shown = assert_held(line, worker, job_ids, says, "blobs")
            remount(folder, "rw")
            assert_stored_once(line, worker, job_ids, "blobs", shown)
        finally:
            worker.stop()
            remount(folder, "rw")


def test_a_full_sqlite_disk_holds_the_jobs_until_it_has_room(settings, start_worker, tmp_path):
    with tmpfs(tmp_path / "database", size="16m") as folder:
        path = folder / "inspection.db"
        line = observed(settings).model_copy(update={"database_url": f"sqlite:///{path}"})
        upgrade_to_head(line.database_url)
        seed_references(line)
        worker = start_worker(line)
        # This connection keeps SQLite's -wal and -shm files while the disk is full
        # (a connection opened then cannot create them: "disk I/O error").
        keeper = sqlite3.connect(path)
        try:
            first = submit_new_images(line, 1, "sqlite-full")  # loads the model, opens the pool
            wait_for(lambda: count_rows(line.database_url) == 1, SHOWS_WITHIN_S, "a row", worker)
            # Empty the write-ahead log, so that the next commit must grow a file.
            assert keeper.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
            filler = fill(folder)
            job_ids = submit_new_images(line, JOBS, "sqlite-full")
            shown = assert_held(line, worker, job_ids, "the database is full", "database")
            filler.unlink()
            assert_stored_once(line, worker, first + job_ids, "database", shown)
        finally:
            keeper.close()
            worker.stop()


def test_postgresql_disk_full_holds_the_jobs_until_it_has_room(settings, start_worker):
    line = observed(settings)
    seed_references(line)
    with session_scope(line.database_url) as session:
        session.execute(
            text(
                """
                CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device'
                        USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
                END $$;
                CREATE TRIGGER disk_full BEFORE INSERT ON inspections
                    FOR EACH STATEMENT EXECUTE FUNCTION disk_full();
                """
            )
        )
    worker = start_worker(line)
    job_ids = submit_new_images(line, JOBS, "postgres-full")
    shown = assert_held(line, worker, job_ids, "the database is full (SQLSTATE 53100", "database")
    with session_scope(line.database_url) as session:
        session.execute(text("DROP TRIGGER disk_full ON inspections"))
    assert_stored_once(line, worker, job_ids, "database", shown)

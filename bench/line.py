"""End-to-end line benchmarks: real Redis, real PostgreSQL (or SQLite), real worker processes.

Each scenario starts its own ``celery -A worker worker`` processes on a fresh
database, fills the queue with the same images, and reads throughput and
latency back from the rows (``submitted_at`` is stamped by the producer,
``processed_at`` by the worker just before its batch's transaction commits).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psycopg
import redis
from sqlalchemy import select

from core.blobs import BlobStore
from core.db import dispose_engines, session_scope
from core.jobs import QUEUE_NAME, InspectJob, send_job
from core.migrate import upgrade_to_head
from core.queue import make_client
from core.references import seed_from_folder
from core.settings import Settings, settings_from_env, settings_to_env
from core.tables import Inspection
from worker.launch import STANDALONE, worker_argv

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


@dataclass
class Scenario:
    name: str
    processes: int
    threads: int
    batch_size: int
    batch_wait_ms: int = 20
    checkpoint: Path | None = None  # None: the shipped default model


@dataclass
class LineResult:
    scenario: Scenario
    images: int
    images_per_s: float
    worker_rss_mb: list[float] = field(default_factory=list)
    span_s: float = 0.0  # the first job's enqueue to the last row's commit


@dataclass
class LatencyResult:
    scenario: Scenario
    rate: float
    images: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def pg_admin_dsn() -> str:
    return os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_database(prefer_postgres: bool = True) -> Iterator[str]:
    """A new, migrated database: PostgreSQL when it answers, SQLite otherwise."""
    if prefer_postgres:
        try:
            name = f"inspection_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(pg_admin_dsn(), autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            info = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn())
            user = f"{info['user']}@" if info.get("user") else ""
            url = (
                f"postgresql+psycopg://{user}{info.get('host', '127.0.0.1')}:"
                f"{info.get('port', 5432)}/{name}"
            )
            upgrade_to_head(url)
            try:
                yield url
            finally:
                dispose_engines()
                with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.OperationalError:
            pass
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade_to_head(url)
        yield url
        dispose_engines()


def sample_payloads() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(SAMPLE.glob("*/*.png"))]


class Line:
    """Workers for one scenario on a fresh database and an empty queue."""

    def __init__(self, base: Settings, scenario: Scenario, workdir: Path) -> None:
        self.settings = base.model_copy(
            update={
                "inspect_batch_size": scenario.batch_size,
                "inspect_batch_wait_ms": scenario.batch_wait_ms,
                "model_threads": scenario.threads,
                "model_checkpoint": scenario.checkpoint or base.model_checkpoint,
                "log_level": "WARNING",
                "worker_remote_control": True,
            }
        )
        self.scenario = scenario
        self.workdir = workdir
        self.workers: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        env = {**os.environ, **settings_to_env(self.settings)}
        env["OMP_NUM_THREADS"] = str(self.settings.model_threads)
        return env

    def start(self) -> None:
        for i in range(self.scenario.processes):
            log = open(self.workdir / f"{self.scenario.name}-{i}.log", "ab")
            argv = worker_argv(
                f"bench{i}-{uuid.uuid4().hex[:6]}@%h",
                loglevel="WARNING",
                extra=(*STANDALONE, "--without-heartbeat"),
            )
            self.workers.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def rss_mb(self) -> list[float]:
        """Peak resident memory of each worker process (VmHWM)."""
        sizes = []
        for worker in self.workers:
            try:
                for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        sizes.append(int(line.split()[1]) / 1024)
            except OSError:
                pass
        return sizes

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def build_jobs(payloads: list[tuple[str, bytes]], count: int, camera: str) -> list[InspectJob]:
    return [
        InspectJob.for_image_bytes(
            payloads[i % len(payloads)][1],
            camera,
            meta={"filename": payloads[i % len(payloads)][0]},
        )
        for i in range(count)
    ]


def rows_since(
    url: str, camera: str, job_ids: Collection[str] | None = None
) -> list[tuple[float, float]]:
    """(submitted, processed) epoch seconds of a camera's rows (only ``job_ids``'
    where given: a camera that serves several measurements, as one with good frames)."""
    query = select(Inspection.submitted_at, Inspection.processed_at).where(
        Inspection.camera == camera
    )
    if job_ids is not None:
        query = query.where(Inspection.job_id.in_(sorted(job_ids)))
    with session_scope(url) as session:
        rows = session.execute(query).all()
    return [(s.timestamp(), p.timestamp()) for s, p in rows]


def wait_rows(
    url: str, camera: str, count: int, timeout: float, job_ids: Collection[str] | None = None
) -> list[tuple[float, float]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_since(url, camera, job_ids)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def send_all(settings: Settings, jobs: list[InspectJob]) -> None:
    client = make_client(settings)
    for job in jobs:
        send_job(job, client)
    client.close()


def warm_up(line: Line, payloads: list[tuple[str, bytes]]) -> None:
    """Every worker loads its model and the reference embeddings before timing starts."""
    camera = f"warmup-{uuid.uuid4().hex[:6]}"
    count = 64 * line.scenario.processes
    send_all(line.settings, build_jobs(payloads, count, camera))
    rows = wait_rows(line.settings.database_url, camera, count, 300)
    if len(rows) < count:
        raise RuntimeError(f"warm-up: only {len(rows)} of {count} rows; see {line.workdir}")


def measure_throughput(
    line: Line, payloads: list[tuple[str, bytes]], count: int, camera: str | None = None
) -> LineResult:
    """Fill the queue while the workers hold off, then time how fast they empty it
    (the steady middle of the run).

    Filling it while they ran timed the sender too, which shares the 2 cores
    with the workers (on the 2026-12-01 machine, 2 processes: 221 images/s that
    way, 256 this way). Celery's remote control pauses every worker's
    consumption of the queue while it fills, and resumes it.

    ``camera``: send as that camera (one with good frames) instead of a new one.
    """
    shared = camera is not None
    camera = camera or f"throughput-{uuid.uuid4().hex[:6]}"
    jobs = build_jobs(payloads, count, camera)
    job_ids = {job.job_id for job in jobs} if shared else None
    client = make_client(line.settings)
    try:
        paused = client.control.cancel_consumer(QUEUE_NAME, reply=True, timeout=10)
        if len(paused) < line.scenario.processes:
            raise RuntimeError(
                f"throughput: only {len(paused)} of {line.scenario.processes} workers paused"
            )
        try:
            send_all(line.settings, jobs)
        finally:
            client.control.add_consumer(QUEUE_NAME, reply=True, timeout=10)
    finally:
        client.close()
    rows = wait_rows(line.settings.database_url, camera, count, 900, job_ids)
    if len(rows) < count:
        raise RuntimeError(f"throughput: only {len(rows)} of {count} rows")
    done = np.sort([p for _, p in rows])
    lo, hi = int(0.1 * count), int(0.9 * count)
    rate = (hi - lo) / max(done[hi] - done[lo], 1e-9)
    span = float(done[-1] - min(s for s, _ in rows))
    return LineResult(line.scenario, count, float(rate), line.rss_mb(), span)


def measure_latency(
    line: Line,
    payloads: list[tuple[str, bytes]],
    rate: float,
    seconds: float,
    camera: str | None = None,
) -> LatencyResult:
    """Send at a steady ``rate`` for ``seconds``; latency = committed - submitted.
    ``camera``: send as that camera (one with good frames) instead of a new one."""
    shared = camera is not None
    camera = camera or f"latency-{uuid.uuid4().hex[:6]}"
    count = max(20, int(rate * seconds))
    jobs = build_jobs(payloads, count, camera)
    job_ids = {job.job_id for job in jobs} if shared else None
    client = make_client(line.settings)
    start = time.monotonic()
    for n, job in enumerate(jobs):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        send_job(replace(job, submitted_at=None), client)
    client.close()
    rows = wait_rows(line.settings.database_url, camera, count, 300, job_ids)
    latency = np.array([(p - s) * 1000 for s, p in rows])
    p50, p95, p99 = np.percentile(latency, [50, 95, 99])
    return LatencyResult(line.scenario, rate, len(rows), float(p50), float(p95), float(p99))


def prepare_base(workdir: Path, database_url: str, redis_url: str) -> Settings:
    base = settings_from_env({}).model_copy(
        update={
            "database_url": database_url,
            "redis_url": redis_url,
            "blob_dir": workdir / "blobs",
            "spool_dir": workdir / "spool",
        }
    )
    with session_scope(database_url) as session:
        seed_from_folder(session, BlobStore(base.blob_dir), SAMPLE, "bench")
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE_NAME, "unacked", "unacked_index")
    client.close()
    return base


@contextmanager
def running(
    base: Settings, scenario: Scenario, workdir: Path, payloads: list[tuple[str, bytes]]
) -> Iterator[Line]:
    line = Line(base, scenario, workdir)
    line.start()
    try:
        warm_up(line, payloads)
        yield line
    finally:
        line.stop()

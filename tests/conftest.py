"""Fixtures on real parts: a fresh PostgreSQL database per test that asks for one,
a Redis database of its own, and real ``celery worker`` processes.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from PIL import Image
from sqlalchemy import func, select

from core.blobs import BlobStore
from core.db import session_scope
from core.migrate import upgrade_to_head
from core.references import seed_from_folder
from core.settings import Settings, settings_from_env, settings_to_env
from core.tables import Inspection
from worker.launch import STANDALONE, worker_argv

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
# A database of the local Redis is a test run's own (it is flushed before every test):
# TEST_REDIS_URL names one, else each run claims a free one of 15 ... 1 (``redis_db``).
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
LOCAL_REDIS = "redis://127.0.0.1:6379"
# A claim outlives a run that died without releasing it by at most this long.
REDIS_CLAIM_SECONDS = 3 * 3600
BIN = Path(sys.executable).parent


def create_pg_database() -> str:
    """A new, empty PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"inspection_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    host, port, user = info.get("host", "127.0.0.1"), info.get("port", "5432"), info.get("user")
    credentials = f"{user}@" if user else ""
    return f"postgresql+psycopg://{credentials}{host}:{port}/{name}"


def drop_pg_database(url: str) -> None:
    from core.db import dispose_engines

    dispose_engines()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (not migrated)."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def migrated_pg_url(pg_url: str) -> str:
    upgrade_to_head(pg_url)
    return pg_url


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """The URL of a Redis database no other test run uses at the same time.

    Every test flushes it, so two runs on one machine (a developer's and CI's)
    sharing one database would delete each other's queues. Each run claims the
    first free database of 15 ... 1 with a key in database 0 that expires, and
    releases it at the end.
    """
    if TEST_REDIS_URL:
        yield TEST_REDIS_URL
        return
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with redis.Redis.from_url(f"{LOCAL_REDIS}/0") as claims:
        for db in range(15, 0, -1):
            key = f"inspection-tests:redis-db:{db}"
            if claims.set(key, token, nx=True, ex=REDIS_CLAIM_SECONDS):
                break
        else:
            raise RuntimeError("every Redis database 1-15 is claimed by another test run")
        try:
            yield f"{LOCAL_REDIS}/{db}"
        finally:
            if claims.get(key) == token.encode():
                claims.delete(key)


@pytest.fixture
def redis_url(redis_db: str) -> str:
    client = redis.Redis.from_url(redis_db)
    client.flushdb()
    client.close()
    return redis_db


@pytest.fixture
def settings(migrated_pg_url: str, redis_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, Redis database and folders."""
    base = settings_from_env({})
    return base.model_copy(
        update={
            "database_url": migrated_pg_url,
            "redis_url": redis_url,
            "blob_dir": tmp_path / "blobs",
            "inbox_dir": tmp_path / "inbox",
            "spool_dir": tmp_path / "spool",
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(settings_to_env(settings), PYTHONUNBUFFERED="1")
    return env


class WorkerProcess:
    """A real ``celery -A worker worker`` process, its log in a file."""

    def __init__(self, settings: Settings, log_path: Path):
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            worker_argv(self.name, extra=STANDALONE),
            cwd=ROOT,
            env=settings_env(settings),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    """Start real workers with given settings; all are stopped after the test."""
    workers: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def sample_images() -> list[Path]:
    return sorted(SAMPLE.glob("*/*.png"))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token of the first form on ``path`` (a Flask test client)."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username: str, password: str):
    return client.post(
        "/login",
        data={"csrf_token": csrf_token(client), "username": username, "password": password},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A test-owned ``redis-server`` on its own port, optionally with append-only persistence."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        appendonly: bool = False,
        extra: tuple[str, ...] = (),
        user: str = "",
    ):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra = extra  # more redis-server options, such as an --aclfile
        self.user = user  # "name:password" to connect as, when the default user is off
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.url_as(self.user)

    def url_as(self, user: str) -> str:
        return f"redis://{user + '@' if user else ''}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            *self.extra,
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes its append-only file and exits
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with append-only persistence, not yet started."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


def seed_references(settings: Settings) -> None:
    """One defect reference per class of the bundled sample."""
    with session_scope(settings.database_url) as session:
        added = seed_from_folder(session, BlobStore(settings.blob_dir), SAMPLE, "test")
    assert len(added) == 6


def count_rows(url: str, **where: str) -> int:
    with session_scope(url) as session:
        query = select(func.count(Inspection.id))
        for column, value in where.items():
            query = query.where(getattr(Inspection, column) == value)
        return session.scalar(query) or 0


def wait_for_rows(url: str, expected: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if count_rows(url) >= expected:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"only {count_rows(url)} of {expected} rows after {timeout}s")

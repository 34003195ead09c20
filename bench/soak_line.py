"""The line the soak runs: its own redis-server, a fresh PostgreSQL database, worker
processes as the README starts them, and the admin site under gunicorn.

Everything is started here and stopped by ``SoakLine.stop``, so a run leaves no
process and no database behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import redis

from bench.line import fresh_database, prepare_base
from core.db import session_scope
from core.settings import Settings, settings_to_env
from worker.launch import worker_argv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SUPERVISOR = "soak-supervisor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)


class SoakLine:
    """Start with ``start()``; ``stop()`` ends every process it started."""

    def __init__(self, workdir: Path, workers: int) -> None:
        self.workdir = workdir
        self.worker_count = workers
        self.stack = ExitStack()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.database_url = ""
        self.admin_url = ""
        self.password = secrets.token_urlsafe(12)
        self.token = ""
        self.settings: Settings | None = None

    # -- start -------------------------------------------------------------------

    def start(self, batch_size: int) -> Settings:
        self.start_redis()
        self.database_url = self.stack.enter_context(fresh_database())
        if not self.database_url.startswith("postgresql"):
            raise SystemExit(
                "the soak needs PostgreSQL (BENCH_PG_ADMIN_DSN, default "
                "postgresql://postgres@127.0.0.1:5432/postgres); `make services` starts it"
            )
        base = prepare_base(self.workdir, self.database_url, self.redis_url)
        self.settings = base.model_copy(
            update={
                "log_level": "WARNING",
                "model_threads": 1,  # one single-threaded process per core (README, Workers)
                "inspect_batch_size": batch_size,
                "secret_key": secrets.token_hex(32),
            }
        )
        self.make_supervisor()
        for i in range(self.worker_count):
            self.start_worker(i)
        self.start_admin()
        return self.settings

    def start_redis(self) -> None:
        folder = self.workdir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("redis-server is not installed; `make services` needs it too")
        self.spawn(
            "redis",
            [
                server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            os.environ.copy(),
        )
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, 15, "redis-server to answer")
        client.close()

    def env(self, settings: Settings | None = None) -> dict[str, str]:
        settings = settings or self.settings
        assert settings is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(settings_to_env(settings), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        return env

    def start_worker(self, i: int) -> None:
        argv = worker_argv(f"soak{i}-{uuid.uuid4().hex[:4]}@%h", loglevel="WARNING")
        self.spawn(f"worker-{i}", argv, self.env())

    def start_admin(self) -> None:
        port = free_port()
        prometheus = self.workdir / "prometheus"
        prometheus.mkdir(exist_ok=True)
        env = {**self.env(), "PROMETHEUS_MULTIPROC_DIR": str(prometheus)}
        # as compose runs it: gunicorn, two workers
        argv = [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "120",
            "admin:create_app()",
        ]
        self.spawn("admin", argv, env)
        self.admin_url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"{self.admin_url}/login", timeout=2)
                return True
            except OSError:
                if self.processes["admin"].poll() is not None:
                    raise RuntimeError(f"the admin exited; see {self.workdir}/admin.log") from None
                return False

        wait_until(answers, 60, "the admin site to answer")

    def make_supervisor(self) -> None:
        from admin.auth import create_user
        from admin.tokens import new_api_token

        with session_scope(self.database_url) as session:
            create_user(session, SUPERVISOR, self.password, "supervisor")
            self.token = new_api_token(session, SUPERVISOR, "soak", ["read", "review"])

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")
        self.logs.append(log)
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    # -- stop --------------------------------------------------------------------

    def stop(self) -> None:
        # the admin, then the workers (a warm shutdown acknowledges what they
        # committed), Redis last
        order = sorted(self.processes, key=lambda n: (n == "redis", n != "admin", n))
        for name in order:
            process = self.processes[name]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self.logs:
            log.close()
        self.stack.close()  # drops the database

    def pids(self) -> dict[str, int]:
        """The processes to watch: workers and the admin's master (its workers are
        found under it), while they run."""
        return {
            name: p.pid
            for name, p in self.processes.items()
            if name != "redis" and p.poll() is None
        }

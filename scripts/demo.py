"""``make demo``: the whole line on one machine, until Ctrl-C.

Migrates the database (SQLite by default), seeds one reference per NEU class
from the bundled sample and a demo supervisor, makes sure Redis answers, then
starts one worker, the admin site and a camera replaying the sample.
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
from pathlib import Path
from urllib.parse import urlsplit

import redis
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
LOGS = ROOT / "var" / "logs"
DEMO_USER = "supervisor"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def report_waiting_jobs(url: str) -> None:
    """Say so when jobs from an earlier run still wait: the worker takes them first.

    They are kept, not purged: a job in the queue is a camera's image that has no
    result yet, and the system loses none (each job carries its image).
    """
    from core.queue import queue_length

    with redis.Redis.from_url(url) as client:
        waiting = queue_length(client)
    if waiting:
        say(f"{waiting} job(s) from an earlier run wait in Redis; the worker inspects them first")


def ensure_redis(url: str, children: list[subprocess.Popen]) -> None:
    """Use Redis at ``url``; start a local redis-server when none answers and we can."""
    if redis_answers(url):
        say(f"Redis answers at {url}")
        return
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 6379
    server = shutil.which("redis-server")
    if host not in ("localhost", "127.0.0.1", "::1") or server is None:
        sys.exit(
            f"[demo] no Redis answers at {url}.\n"
            "  Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install "
            "redis)\n  or point REDIS_URL at a running Redis, then run `make demo` again."
        )
    say(f"no Redis at {url}; starting {server} on port {port}")
    children.append(
        subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=open(LOGS / "redis.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )
    for _ in range(50):
        if redis_answers(url):
            return
        time.sleep(0.1)
    sys.exit(f"[demo] started redis-server but it does not answer; see {LOGS / 'redis.log'}")


def seed(settings) -> str:  # type: ignore[no-untyped-def]
    """One reference per sample class (labels not yet in the library) and the demo user."""
    from werkzeug.security import generate_password_hash

    from admin.auth import create_user
    from core.blobs import BlobStore
    from core.db import session_scope
    from core.references import seed_from_folder
    from core.tables import User

    password = secrets.token_urlsafe(9)
    with session_scope(settings.database_url) as session:
        store = BlobStore(settings.blob_dir)
        for label, path in seed_from_folder(session, store, SAMPLE, "demo"):
            say(f"reference: {label} <- {path.relative_to(ROOT)}")
        user = session.scalar(select(User).where(User.username == DEMO_USER))
        if user is None:
            create_user(session, DEMO_USER, password, "supervisor")
        else:  # a new password each run, printed below
            user.password_hash = generate_password_hash(password)
    return password


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit("[demo] no free port for the admin site")


def start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(LOGS / f"{name}.log", "ab")
    say(f"starting {name}: {' '.join(argv)}  (log: {log.name})")
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_all(children: list[subprocess.Popen]) -> None:
    """SIGTERM each child's process group (the worker's pool too), then SIGKILL stragglers."""
    for child in reversed(children):
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def counts(database_url: str) -> str:
    from core.db import session_scope
    from core.tables import Inspection

    with session_scope(database_url) as session:
        rows = dict(
            session.execute(
                select(Inspection.status, func.count()).group_by(Inspection.status)
            ).all()
        )
    return ", ".join(f"{k} {rows.get(k, 0)}" for k in ("flagged", "passed", "rejected"))


def stop_on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # SIGTERM (from `timeout`, a service manager) and SIGHUP (terminal closed)
    # stop the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    parent = os.getppid()
    os.chdir(ROOT)
    LOGS.mkdir(parents=True, exist_ok=True)
    from core.migrate import upgrade_to_head
    from core.settings import get_settings
    from worker.launch import worker_argv

    settings = get_settings()
    children: list[subprocess.Popen] = []
    try:
        ensure_redis(settings.redis_url, children)
        report_waiting_jobs(settings.redis_url)
        upgrade_to_head(settings.database_url)
        say(f"database migrated: {settings.database_url}")
        password = seed(settings)
        port = free_port(int(os.environ.get("ADMIN_PORT", "5000")))
        env = {**os.environ, "SECRET_KEY": settings.secret_key, "PYTHONUNBUFFERED": "1"}
        children.append(start("worker", worker_argv("demo-worker@%h"), env))
        children.append(
            start(
                "admin",
                [
                    str(BIN / "flask"),
                    "--app",
                    "admin",
                    "run",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env,
            )
        )
        children.append(
            start(
                "camera",
                [
                    str(BIN / "python"),
                    "-m",
                    "producer",
                    "replay",
                    str(SAMPLE),
                    "--camera",
                    "demo-line-1",
                    "--rate",
                    "2",
                ],
                env,
            )
        )
        say("")
        say(f"admin site:  http://127.0.0.1:{port}/")
        say(f"log in as:   {DEMO_USER} / {password}")
        say("the camera replays the bundled NEU sample at 2 images/s; Ctrl-C stops everything")
        say("")
        ticks = 0
        while os.getppid() == parent:  # stop when `make` goes away
            time.sleep(1)
            ticks += 1
            for child in children:
                if child.poll() is not None:
                    say(
                        f"a process stopped (exit {child.returncode}): {' '.join(child.args)}; "
                        f"see the logs in {LOGS}"
                    )
                    return 1
            if ticks % 10 == 0:
                say(f"inspections so far: {counts(settings.database_url)}")
        return 0
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stop_all(children)


if __name__ == "__main__":
    sys.exit(main())

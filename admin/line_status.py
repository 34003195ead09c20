"""What runs on the line now: the job queue's length and the workers alive, from Redis.

Nothing here asks the workers themselves (Celery's inspect/ping would wait for
their answers): each worker renews a heartbeat key (``worker/heartbeat.py``), so
reading the keys is one quick Redis call. The dashboard renders from the last
status this process read when it is recent, so a page view costs no Redis
round trip at all while the page's script polls ``/dashboard/line`` for news;
and a Redis that does not answer delays a page by at most ``PAGE_TIMEOUT_S``
once per ``MAX_AGE_S``, since a failed read is remembered too.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis
from flask import current_app

from core.queue import (
    LOST_LOG_KEY,
    jobs_held,
    queue_length,
    recovery_counts,
    workers_online,
)

#: how old a status the dashboard may show instead of reading Redis again
MAX_AGE_S = 5.0
#: how long the page waits for Redis when it has no recent status (the JSON
#: endpoint, read in the background, waits longer)
PAGE_TIMEOUT_S = 0.5
POLL_TIMEOUT_S = 2.0


@dataclass
class LineStatus:
    queue: int | None = None
    unacked: int | None = None
    workers: list[str] = field(default_factory=list)
    # workers found dead by the others' heartbeats, and the jobs put back from them
    workers_lost: int | None = None
    jobs_restored: int | None = None
    lost_recently: list[dict[str, Any]] = field(default_factory=list)  # newest first
    error: str | None = None
    checked_at: float = 0.0  # time.time() of the read

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def lost_recently(client: redis.Redis, count: int = 5) -> list[dict[str, Any]]:
    """The latest workers lost (worker, jobs put back, at: a Unix time), newest first."""
    found = []
    for item in cast(list[bytes], client.lrange(LOST_LOG_KEY, 0, count - 1)):
        try:
            record = json.loads(item)
            found.append(
                {
                    "worker": str(record["worker"]),
                    "jobs": int(record["jobs"]),
                    "at": float(record["at"]),
                }
            )
        except (ValueError, KeyError, TypeError):
            continue  # written by something else: not shown
    return found


def read_line_status(redis_url: str, timeout: float) -> LineStatus:
    """The status as Redis has it now; a status with ``error`` set if it does not answer."""
    status = LineStatus(checked_at=time.time())
    try:
        client = redis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            status.queue = queue_length(client)
            status.unacked = jobs_held(client)
            status.workers = workers_online(client)
            status.workers_lost, status.jobs_restored = recovery_counts(client)
            status.lost_recently = lost_recently(client)
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        status.error = f"Redis does not answer at {redis_url}: {exc}"
    return status


class LineStatusCache:
    """The last status read by this process (one per app: tests build several)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: LineStatus | None = None

    def recent(self, max_age: float = MAX_AGE_S) -> LineStatus | None:
        with self._lock:
            last = self._last
        if last is not None and time.time() - last.checked_at <= max_age:
            return last
        return None

    def refresh(self, timeout: float) -> LineStatus:
        status = read_line_status(current_app.config["REDIS_URL"], timeout)
        with self._lock:
            self._last = status
        return status


def line_cache() -> LineStatusCache:
    cache: LineStatusCache = current_app.extensions.setdefault("line_status", LineStatusCache())
    return cache


def status_for_page() -> LineStatus:
    """A recent status if this process has one, else a read that waits briefly."""
    cache = line_cache()
    return cache.recent() or cache.refresh(PAGE_TIMEOUT_S)


def status_now() -> LineStatus:
    """A fresh read, for the page's background poll."""
    return line_cache().refresh(POLL_TIMEOUT_S)

"""Each worker's heartbeat: a Redis key that says it is alive, renewed from its event loop.

The dashboard and the compose health check read it; Celery's remote control
(ping), which used to answer them, is off by default, since anyone who reaches
Redis could also tell every worker to shut down through it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import redis

from core.queue import WORKER_HEARTBEAT_S, WORKER_HEARTBEAT_TTL_S, WORKER_KEY_PREFIX
from core.settings import get_settings
from worker.redis_step import RedisTimerStep


class Heartbeat(RedisTimerStep):
    interval = WORKER_HEARTBEAT_S

    def starting(self, consumer: Any) -> None:
        self.key = f"{WORKER_KEY_PREFIX}{consumer.hostname}"
        self.value = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        )

    def tick(self, client: redis.Redis) -> None:
        client.set(self.key, self.value, ex=WORKER_HEARTBEAT_TTL_S)

    def closing(self, client: redis.Redis) -> None:
        client.delete(self.key)  # gone at once; else it expires by itself


def main(argv: list[str] | None = None) -> int:
    """``python -m worker.heartbeat NODE``: exit 0 when the worker NODE (as
    ``celery@host``) has a fresh heartbeat; else say why on stderr and exit 1
    (a container health check)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m worker.heartbeat NODE_NAME (e.g. celery@$HOSTNAME)")
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=3)
    try:
        alive = bool(client.exists(f"{WORKER_KEY_PREFIX}{args[0]}"))
    except redis.RedisError as exc:
        raise SystemExit(f"Redis does not answer: {exc}") from None
    if not alive:
        raise SystemExit(f"no fresh heartbeat from {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

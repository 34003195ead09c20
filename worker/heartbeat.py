"""Each worker's heartbeat, from a thread of its own: the keys that say it is alive,
and the reaper of workers that are not (``worker/recovery.py``).

The beat runs on its own thread, not on the worker's event loop: with the solo
pool a batch of large frames keeps the event loop busy for as long as it runs,
and a worker busy for a minute is slow, not dead. A worker killed (even by
SIGKILL) stops beating, and its keys expire.

Two keys per beat: ``inspection:worker:<node>`` (the dashboard and the compose
health check read it; Celery's remote control (ping), which used to answer them,
is off by default, since anyone who reaches Redis could also tell every worker to
shut down through it) and the incarnation's alive key (recovery reads it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from celery import bootsteps
from kombu import Connection

from core.queue import WORKER_HEARTBEAT_TTL_S, WORKER_KEY_PREFIX, celery_config
from core.settings import get_settings
from worker.recovery import alive, incarnation, lost_incarnations, name_incarnation, reap

log = logging.getLogger(__name__)

#: how many beats make up WORKER_LOST_AFTER_S
BEATS_PER_LIFETIME = 5


class Lifeline(threading.Thread):
    """Beats every fifth of WORKER_LOST_AFTER_S, then reaps lost workers."""

    def __init__(self, redis_url: str, node: str, lifetime_s: float) -> None:
        super().__init__(name="lifeline", daemon=True)
        self.redis_url = redis_url
        self.node_key = f"{WORKER_KEY_PREFIX}{node}"
        self.node_value = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        )
        self.lifetime_s = lifetime_s
        self.interval_s = lifetime_s / BEATS_PER_LIFETIME
        self.stopping = threading.Event()
        timeout = max(1.0, self.interval_s)
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.connection: Connection | None = None

    def beat(self) -> None:
        """Renew the keys. Called once in the starting thread before any job is
        taken, so no job is held by an incarnation that never said it was alive."""
        alive(self.client, self.lifetime_s)
        ttl = max(WORKER_HEARTBEAT_TTL_S, int(self.lifetime_s) + 1)
        self.client.set(self.node_key, self.node_value, ex=ttl)

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.beat()
                self.reap_lost()
            except (redis.RedisError, OSError):  # Redis restarting: the next round will do
                log.debug("the heartbeat skipped a round", exc_info=True)
            except Exception:  # a bug here must not silence a live worker
                log.exception("the heartbeat failed a round")

    def reap_lost(self) -> None:
        lost = lost_incarnations(self.client)
        if lost:
            qos = self.channel().qos
            for incarnation_id in lost:
                reap(self.client, qos, incarnation_id)

    def channel(self) -> Any:
        """A kombu channel of this thread's own (kombu connections are not shared
        between threads), for kombu's restore."""
        if self.connection is None:
            options = celery_config(get_settings())["broker_transport_options"]
            self.connection = Connection(self.redis_url, transport_options=options)
        return self.connection.default_channel

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=self.interval_s + 5)
        try:  # gone at once; else they expire by themselves
            self.client.delete(self.node_key, f"inspection:alive:{incarnation()}")
        except redis.RedisError:
            log.debug("could not remove the heartbeat keys", exc_info=True)
        if self.connection is not None:
            self.connection.release()
        self.client.close()


class Heartbeat(bootsteps.StartStopStep):
    """Starts the lifeline with the consumer (before it takes any job)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.lifeline: Lifeline | None = None

    def start(self, consumer: Any) -> None:
        settings = get_settings()
        name_incarnation(consumer.hostname)
        self.lifeline = Lifeline(
            settings.redis_url, consumer.hostname, settings.worker_lost_after_s
        )
        try:
            self.lifeline.beat()
        except redis.RedisError:
            log.warning("Redis does not answer the first heartbeat; the lifeline retries")
        self.lifeline.start()

    def stop(self, consumer: Any) -> None:
        if self.lifeline is not None:
            self.lifeline.stop()
            self.lifeline = None


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
        is_alive = bool(client.exists(f"{WORKER_KEY_PREFIX}{args[0]}"))
    except redis.RedisError as exc:
        raise SystemExit(f"Redis does not answer: {exc}") from None
    if not is_alive:
        raise SystemExit(f"no fresh heartbeat from {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Jobs sent to Celery's default queue are moved to the ``inspect`` queue.

A Celery client written from the documented job message (task ``inspect``, JSON
keyword arguments) that names no queue sends to Celery's default queue,
``celery``, which no worker consumed: the job waited there forever, with no
error and no row. Every worker now moves what arrives there onto ``inspect``
each second, with Redis's LMOVE (atomic: a job is on one list or the other,
never lost, never doubled). What is not an inspect job is refused there like
any other message (``worker/consumer.py``).
"""

from __future__ import annotations

import logging

import redis

from core.jobs import QUEUE_NAME
from worker.redis_step import RedisTimerStep

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "celery"
# kombu's Redis transport keeps a queue as one list per priority level; a client
# with Celery's defaults uses these four (a message without a priority: the first)
PRIORITY_SEPARATOR = "\x06\x16"
DEFAULT_QUEUE_LISTS = [DEFAULT_QUEUE] + [f"{DEFAULT_QUEUE}{PRIORITY_SEPARATOR}{p}" for p in "369"]
INTERVAL_S = 1.0
MOVES_PER_ROUND = 1000


def move_default_queue(client: redis.Redis, limit: int = MOVES_PER_ROUND) -> int:
    """Move up to ``limit`` jobs from the default queue's lists to ``inspect``, oldest
    first, each to the end that is taken last (behind the jobs already waiting)."""
    moved = 0
    for source in DEFAULT_QUEUE_LISTS:
        while moved < limit and client.lmove(source, QUEUE_NAME, "RIGHT", "LEFT") is not None:
            moved += 1
    return moved


class ForwardDefaultQueue(RedisTimerStep):
    interval = INTERVAL_S

    def tick(self, client: redis.Redis) -> None:
        if moved := move_default_queue(client):
            log.info("moved %d job(s) sent to Celery's default queue onto %r", moved, QUEUE_NAME)

"""A dead worker's jobs back on the queue within seconds, a slow one's left alone.

Kombu's Redis transport hands a job to one worker and keeps it in the ``unacked``
hash until that worker acknowledges it; a worker that dies holding jobs leaves
them there until the visibility timeout (600 s) has passed. RabbitMQ redelivers
as soon as a consumer's connection drops; this module does the same with Redis:

- every worker process is an *incarnation* (a random id and its node name, made
  at start, so a worker restarted under the same name is another one);
- ``HeldJobsQoS`` records each job the worker takes in the set
  ``inspection:held:<incarnation>``, in the same transaction as kombu's
  ``unacked`` record, and removes it in the same transaction as the ack;
- the worker's lifeline thread (``worker/heartbeat.py``) renews
  ``inspection:alive:<incarnation>`` every fifth of WORKER_LOST_AFTER_S, with that
  expiry, and looks for held sets whose alive key has lapsed: ``reap`` puts their
  jobs back on the queue with kombu's own ``restore_by_tag`` (a transaction on
  ``unacked``: a job is restored once, even when two workers reap at once), then
  counts the worker lost and the jobs restored.

The visibility timeout stays as the last resort (``worker/restore.py``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, cast

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from core.queue import (
    ALIVE_PREFIX,
    HELD_PREFIX,
    JOBS_RESTORED_KEY,
    LOST_LOG_KEY,
    LOST_LOG_LENGTH,
    WORKERS_LOST_KEY,
)
from core.settings import get_settings
from worker import metrics

log = logging.getLogger(__name__)

#: a worker reaping a lost one holds this lock meanwhile (the others skip it)
REAP_LOCK_S = 60

_incarnation: dict[str, str] = {"id": f"{uuid.uuid4().hex[:12]}~unnamed"}


def incarnation() -> str:
    """This worker process's incarnation id: random, then its node name."""
    return _incarnation["id"]


def name_incarnation(node: str) -> str:
    """Give this process's incarnation the worker's node name (at start, before any
    job is taken), for the log and the dashboard."""
    _incarnation["id"] = f"{uuid.uuid4().hex[:12]}~{node}"
    return _incarnation["id"]


def node_of(incarnation_id: str) -> str:
    return incarnation_id.split("~", 1)[-1]


class HeldJobsQoS(kombu_redis.QoS):
    """Kombu's Redis QoS, recording the jobs this worker holds in its held set."""

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        record = json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, record
            ).sadd(HELD_PREFIX + incarnation(), delivery_tag).execute()
            virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        pipe = super()._remove_from_indices(delivery_tag, pipe)
        return pipe.srem(HELD_PREFIX + incarnation(), delivery_tag)


def alive(client: redis.Redis, lifetime_s: float) -> None:
    """Say this incarnation is alive for ``lifetime_s`` more seconds."""
    client.set(ALIVE_PREFIX + incarnation(), node_of(incarnation()), px=int(lifetime_s * 1000))


def lost_incarnations(client: redis.Redis) -> list[str]:
    """Incarnations that hold jobs and whose alive key has lapsed."""
    lost = []
    for key in client.scan_iter(match=f"{HELD_PREFIX}*", count=500):
        held = key.decode(errors="replace")[len(HELD_PREFIX) :]
        if held != incarnation() and not client.exists(ALIVE_PREFIX + held):
            lost.append(held)
    return lost


def reap(client: redis.Redis, qos: Any, lost: str) -> int | None:
    """Put the jobs ``lost`` held back on the queue; how many were still held (None
    when another worker is reaping it)."""
    if not client.set(f"inspection:reaping:{lost}", incarnation(), nx=True, ex=REAP_LOCK_S):
        return None
    held_key = HELD_PREFIX + lost
    tags = [tag.decode() for tag in cast(set[bytes], client.smembers(held_key))]
    restored = 0
    for tag in tags:
        if client.hexists(qos.unacked_key, tag):
            qos.restore_by_tag(tag, client=client)
            restored += 1
        client.srem(held_key, tag)
    client.delete(held_key)
    record = {"worker": node_of(lost), "incarnation": lost, "jobs": restored, "at": time.time()}
    pipe = client.pipeline()
    pipe.incr(WORKERS_LOST_KEY)
    pipe.incrby(JOBS_RESTORED_KEY, restored)
    pipe.lpush(LOST_LOG_KEY, json.dumps(record))
    pipe.ltrim(LOST_LOG_KEY, 0, LOST_LOG_LENGTH - 1)
    pipe.execute()
    metrics.WORKERS_LOST.inc()
    metrics.JOBS_RESTORED.inc(restored)
    log.warning(
        "worker %s stopped answering (no heartbeat for %.0f s): put %d job(s) it held back "
        "on the queue",
        node_of(lost),
        get_settings().worker_lost_after_s,
        restored,
    )
    return restored

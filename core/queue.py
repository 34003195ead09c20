"""The Celery configuration every side shares, and a send-only client app.

Workers build their app from ``celery_config`` too (``worker/celery_app.py``),
so producers and workers can never disagree on serialisation or queues.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from celery import Celery
from kombu import Queue

from core.jobs import QUEUE_NAME
from core.settings import Settings, get_settings


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.redis_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_queues": [Queue(QUEUE_NAME)],
        "task_send_sent_event": True,  # monitors (Flower) see jobs when they are sent
        "task_default_queue": QUEUE_NAME,
        # Seconds a job may stay unacknowledged before Redis hands it to another
        # worker. Jobs are acknowledged after their row is committed, so this
        # must exceed the longest time a worker holds a job (its batch included);
        # a redelivered job is harmless, since rows are written once per job_id.
        # One priority level: each queue is one Redis list, which lets the worker's
        # transport fetch with BLMOVE (worker/transport.py).
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": [0],
        },
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
        "enable_utc": True,
    }


# redis-py types its sync and async clients as one (``Awaitable[int] | int``); these
# clients are sync, hence the casts below.


def queue_length(client: redis.Redis) -> int:
    """Jobs waiting in the queue (not those a worker holds unacknowledged).

    Redis keeps the queue as one list named after it (one priority level, see
    ``broker_transport_options`` above), so its length is the count.
    """
    return int(cast(int, client.llen(QUEUE_NAME)))


def jobs_held(client: redis.Redis) -> int:
    """Jobs workers have taken and not yet acknowledged (kombu's ``unacked`` hash)."""
    return int(cast(int, client.hlen("unacked")))


#: each worker's heartbeat: a key per worker (its node name after the prefix) that
#: it renews every fifth of WORKER_LOST_AFTER_S and that expires at least
#: WORKER_HEARTBEAT_TTL_S after its last beat, so the keys there are the workers alive
WORKER_KEY_PREFIX = "inspection:worker:"
WORKER_HEARTBEAT_TTL_S = 20


#: Each worker process (an *incarnation*: a random id made when it starts, so a
#: worker restarted under the same node name is another one) records the delivery
#: tags of the jobs it holds in ``HELD_PREFIX<incarnation>`` (a set, written in the
#: same transaction as kombu's ``unacked`` record) and keeps ``ALIVE_PREFIX<incarnation>``
#: alive from a thread of its own, renewed every WORKER_LOST_AFTER_S / 5. When the
#: key has lapsed, any live worker puts the jobs of the set back on the queue.
HELD_PREFIX = "inspection:held:"
ALIVE_PREFIX = "inspection:alive:"
#: counters of what recovery did, and the latest workers lost (newest first)
WORKERS_LOST_KEY = "inspection:stats:workers_lost"
JOBS_RESTORED_KEY = "inspection:stats:jobs_restored"
LOST_LOG_KEY = "inspection:lost_workers"
LOST_LOG_LENGTH = 20


def recovery_counts(client: redis.Redis) -> tuple[int, int]:
    """Workers found lost and jobs put back from them, since Redis started."""
    lost, restored = client.mget([WORKERS_LOST_KEY, JOBS_RESTORED_KEY])  # type: ignore[misc]
    return int(lost or 0), int(restored or 0)


def workers_online(client: redis.Redis) -> list[str]:
    """The node names of the workers whose heartbeat is fresh."""
    keys = client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=200)
    return sorted(key.decode(errors="replace")[len(WORKER_KEY_PREFIX) :] for key in keys)


def make_client(settings: Settings | None = None) -> Celery:
    """A Celery app that only sends jobs (it defines no tasks)."""
    settings = settings or get_settings()
    app = Celery("inspection-client")
    app.conf.update(celery_config(settings))
    return app

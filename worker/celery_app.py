"""The Celery app of the workers: JSON only, late acknowledgement, no results kept.

Configuration is added lazily (``add_defaults`` with a callable), so importing
this module reads no environment; ``celery -A worker worker`` reads it at start.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from core.queue import celery_config
from core.settings import get_settings
from worker.default_queue import ForwardDefaultQueue
from worker.heartbeat import Heartbeat
from worker.restore import RestoreUnackedJobs
from worker.schedule import Schedule


def worker_config() -> dict[str, Any]:
    settings = get_settings()
    config = celery_config(settings)
    config.update(
        # A job is acknowledged only after its row is committed; a worker that
        # dies holding it (even by SIGKILL) leaves it to be redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Unacknowledged jobs count against the prefetch limit: room for the
        # batch being inspected and the next one filling up.
        worker_prefetch_multiplier=2 * settings.inspect_batch_size,
        worker_hijack_root_logger=True,
        # kombu's Redis transport, keeping jobs popped during a Redis restart
        broker_transport="worker.transport:Transport",
        # a consumer that stores any broken message, with why, instead of stopping
        worker_consumer="worker.consumer:Consumer",
        # Events on, so Flower and `celery -A worker events` see the workers' tasks.
        worker_send_task_events=True,
        # Remote control (shutdown, pause, ping...) only when asked for: any client
        # of Redis could use it. Workers say they are alive by heartbeat instead.
        worker_enable_remote_control=settings.worker_remote_control,
    )
    return config


app = Celery("worker", include=["worker.tasks"])
app.add_defaults(worker_config)
app.steps["consumer"].add(RestoreUnackedJobs)
app.steps["consumer"].add(Heartbeat)
app.steps["consumer"].add(ForwardDefaultQueue)
app.steps["consumer"].add(Schedule)  # coil ends, shift ends, reports (worker/schedule.py)
app.steps["worker"].add("worker.dispatch:Dispatch")  # webhooks, MQTT; by name: `-m` runs it

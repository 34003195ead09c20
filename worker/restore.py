"""Give the jobs of a dead worker back to the queue, promptly.

A job a worker took but never acknowledged (it was killed, its host lost
power) sits in Redis's "unacked" set. Kombu puts such jobs back once they are
older than the visibility timeout, but it looks only when a worker starts and
then about every 100 seconds. This consumer step looks every half visibility
timeout (at most every 30 s), so a killed worker's batch is inspected by
another worker soon after the timeout. Kombu's own Redis mutex keeps several
workers from restoring the same job twice, and a job that is restored anyway
makes no second row.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from core.settings import get_settings

log = logging.getLogger(__name__)


class RestoreUnackedJobs(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None

    def start(self, consumer: Any) -> None:
        qos = getattr(consumer.task_consumer.channel, "qos", None)
        if not hasattr(qos, "restore_visible"):
            return  # not the Redis transport
        interval = min(30.0, get_settings().visibility_timeout_s / 2)
        self.timer_ref = consumer.timer.call_repeatedly(interval, self.restore, (qos,))

    @staticmethod
    def restore(qos: Any) -> None:
        try:
            qos.restore_visible(num=None, interval=1)  # interval=1: every call, not every 10th
        except Exception:  # the broker may be restarting; the next round will do it
            log.warning("could not restore unacknowledged jobs this round", exc_info=True)

    def stop(self, consumer: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

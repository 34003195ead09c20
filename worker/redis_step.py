"""A consumer step that does something with Redis every few seconds, from the
worker's event loop (its own client; a Redis outage only skips a round)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps

from core.settings import get_settings

log = logging.getLogger(__name__)


class RedisTimerStep(bootsteps.StartStopStep):
    """Calls ``tick`` every ``interval`` seconds once the consumer runs, and once at
    start; ``closing`` runs before the client is closed at stop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    interval = 1.0

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None
        self.client: redis.Redis | None = None

    def start(self, consumer: Any) -> None:
        self.client = redis.Redis.from_url(
            get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self.starting(consumer)
        self.run_tick()
        self.timer_ref = consumer.timer.call_repeatedly(self.interval, self.run_tick)

    def run_tick(self) -> None:
        assert self.client is not None
        try:
            self.tick(self.client)
        except redis.RedisError:  # Redis restarting: the next round will do
            log.debug("%s skipped a round", type(self).__name__, exc_info=True)

    def stop(self, consumer: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None
        if self.client is not None:
            try:
                self.closing(self.client)
            except redis.RedisError:
                log.debug("%s could not close cleanly", type(self).__name__, exc_info=True)
            self.client.close()
            self.client = None

    def starting(self, consumer: Any) -> None:
        """Before the first tick."""

    def tick(self, client: redis.Redis) -> None:
        raise NotImplementedError

    def closing(self, client: redis.Redis) -> None:
        """At stop, before the client closes."""

"""The Python client cameras use to enqueue images.

Sending never loses an image: when Redis does not answer, the message goes to
a local spool (``SPOOL_DIR``) and is sent, oldest first, as soon as Redis
answers again. When the queue is longer than ``MAX_QUEUE_LENGTH`` the client
waits before sending (backpressure), so a fast camera cannot flood Redis while
the workers catch up. The spool is bounded too: a client whose spool holds
``SPOOL_MAX_BYTES`` waits for Redis to answer rather than spool more, so a long
outage stops the camera instead of filling the disk; nothing is dropped.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import OperationalError as KombuOperationalError

from core.jobs import QUEUE_NAME, TASK_NAME, InspectJob, Trace
from core.queue import make_client, queue_length
from core.settings import Settings, get_settings
from producer.spool import Spool

log = logging.getLogger(__name__)

SEND_ERRORS = (KombuOperationalError, redis.RedisError, ConnectionError, OSError)
# After a failed send, spool without trying Redis again for this long, so a
# camera loop is not slowed down by connection attempts while Redis is down.
RETRY_AFTER_S = 2.0
# How often the queue length is asked of Redis when sending fast.
QUEUE_CHECK_INTERVAL_S = 0.25


class ImageTooLarge(ValueError):
    pass


class InspectionClient:
    """Sends images as ``inspect`` jobs over the shared Celery configuration."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.celery = make_client(self.settings)
        self.spool = Spool(self.settings.spool_dir)
        self.spool.recover_stale_claims()
        self._redis = redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=5, socket_connect_timeout=3
        )
        self._down_until = 0.0
        self._queue_checked_at = 0.0
        self._room = 0  # jobs that may still be sent before the queue is counted again
        self.waited_for_room_s = 0.0
        self.waited_for_spool_s = 0.0
        self._spool_full_said = float("-inf")  # when the full spool was last logged

    # -- sending -----------------------------------------------------------------

    def submit_bytes(
        self,
        data: bytes,
        camera: str,
        captured_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
        job_id: str | None = None,
        trace: Trace | None = None,
    ) -> str:
        """Enqueue one image (or spool it while Redis is down); returns its job_id.

        Oversized images are refused here, before they reach Redis. ``trace``: the
        coil the frame belongs to and where on it (``core.jobs.Trace``).
        """
        if len(data) > self.settings.max_image_bytes:
            raise ImageTooLarge(
                f"image is {len(data):,} bytes, over the limit of "
                f"{self.settings.max_image_bytes:,} (MAX_IMAGE_BYTES)"
            )
        job = InspectJob.for_image_bytes(data, camera, captured_at, meta, job_id, trace)
        self.submit_job(job)
        return job.job_id

    def submit_file(
        self,
        path: str | Path,
        camera: str,
        job_id: str | None = None,
        meta: dict[str, Any] | None = None,
        trace: Trace | None = None,
    ) -> str:
        path = Path(path)
        return self.submit_bytes(
            path.read_bytes(),
            camera,
            meta={"filename": path.name, **(meta or {})},
            job_id=job_id,
            trace=trace,
        )

    def submit_job(self, job: InspectJob) -> bool:
        """Send ``job``, or spool it if Redis does not answer. True when it was sent.

        While the spool is full (``SPOOL_MAX_BYTES``) this waits, trying Redis
        every ``RETRY_AFTER_S``, until the job is sent or the spool has room.
        """
        message = job.to_message()
        while True:
            if time.monotonic() >= self._down_until:
                try:
                    self.flush_spool()
                    self.send_message(message)
                    return True
                except SEND_ERRORS as exc:
                    self._mark_down(exc)
            if self.spool.size_bytes() < self.settings.spool_max_bytes:
                self.spool.put(message)
                return False
            self._wait_for_spool_room()

    def _wait_for_spool_room(self) -> None:
        """Sleep until Redis may be tried again; the caller (the camera) waits meanwhile."""
        if time.monotonic() - self._spool_full_said > 30:
            log.warning(
                "the spool holds %d bytes (SPOOL_MAX_BYTES %d); waiting for Redis",
                self.spool.size_bytes(),
                self.settings.spool_max_bytes,
            )
            self._spool_full_said = time.monotonic()
        pause = max(self._down_until - time.monotonic(), 0.05)
        time.sleep(pause)
        self.waited_for_spool_s += pause

    def send_job(self, job: InspectJob) -> None:
        """Send ``job`` now or raise: for callers that keep the image themselves
        until it is sent (the hot folder keeps the file)."""
        self.flush_spool()
        self.send_message(job.to_message())

    def send_message(self, message: dict[str, Any]) -> None:
        self.wait_for_room()
        self.celery.send_task(
            TASK_NAME,
            kwargs=message,
            queue=QUEUE_NAME,
            task_id=message["job_id"],
            # fail fast and spool rather than block the camera on kombu's retries
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2},
        )

    def flush_spool(self) -> int:
        """Send spooled messages, oldest first; stops (raising) at the first failure."""
        sent = 0
        for claimed, message in self.spool.claim():
            try:
                self.send_message(message)
            except BaseException:
                self.spool.release(claimed)
                raise
            self.spool.done(claimed)
            sent += 1
        if sent:
            log.info("sent %d spooled job(s)", sent)
        return sent

    def _mark_down(self, exc: BaseException) -> None:
        if self._down_until == 0.0 or time.monotonic() > self._down_until + 30:
            log.warning("Redis does not answer (%s); spooling to %s", exc, self.spool.folder)
        self._down_until = time.monotonic() + RETRY_AFTER_S

    def wait_until_spool_sent(self, poll_s: float = 1.0) -> None:
        """Block until every spooled message is sent (Redis answers again)."""
        while len(self.spool):
            try:
                self.flush_spool()
            except SEND_ERRORS as exc:
                self._mark_down(exc)
                time.sleep(poll_s)

    # -- backpressure --------------------------------------------------------------

    def queue_length(self) -> int:
        return queue_length(self._redis)

    def wait_for_room(self) -> None:
        """Wait while MAX_QUEUE_LENGTH or more jobs are queued.

        Redis is asked only when the room left at the last count may be used up
        or the count is old, so sending fast costs few extra round trips.
        """
        now = time.monotonic()
        if self._room > 0 and now - self._queue_checked_at < QUEUE_CHECK_INTERVAL_S:
            self._room -= 1
            return
        limit = self.settings.max_queue_length
        length = self.queue_length()
        if length >= limit:
            log.warning("queue holds %d jobs (limit %d); waiting for the workers", length, limit)
            started = time.monotonic()
            while length >= limit:
                time.sleep(QUEUE_CHECK_INTERVAL_S)
                length = self.queue_length()
            self.waited_for_room_s += time.monotonic() - started
        self._queue_checked_at = time.monotonic()
        self._room = limit - length - 1

    def close(self) -> None:
        self.celery.close()
        self._redis.close()

    def __enter__(self) -> InspectionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

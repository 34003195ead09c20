"""The worker's Celery consumer: no message, however broken, stops it or vanishes.

Celery's own consumer raises out of its message handler on a malformed task
message (the worker exits with "Unrecoverable error", the message goes back to
the queue and stops the next worker too), and drops unknown tasks, undecodable
bodies and messages without headers with only a log line. This one checks
every message first (``worker.envelope.check_task_message``) and hands only
well-formed ``inspect`` jobs to Celery. Any other message is stored, with the
reason, as a rejected row when a job id can be recovered from it and as a dead
letter otherwise, and only then acknowledged. Storing waits out a database
outage, as a batch does.

Selected with Celery's ``worker_consumer`` setting (``worker.celery_app``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from core.settings import get_settings
from worker.envelope import MessageRefused, check_task_message, describe
from worker.inspection import PendingJob, record_refusals
from worker.retry import DATABASE_UNREACHABLE, until_stored

log = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        celery_handler = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                check_task_message(message)
            except MessageRefused as refused:
                return self.refuse(message, refused)
            except Exception as exc:  # a check that itself failed: still the message's fault
                log.exception("could not check a message")
                return self.refuse(message, MessageRefused(f"unreadable message ({exc!r:.200})"))
            try:
                return celery_handler(message)
            except Exception as exc:
                # Something the check above let through that Celery still cannot
                # take: the message pays, not the worker (were the job buffered
                # after all, its row is written once and the second ack is a no-op).
                log.exception("Celery could not take a checked message")
                reason = f"the worker could not take this message ({exc!r:.200})"
                task_id = (message.headers or {}).get("id")
                return self.refuse(message, MessageRefused(reason, task_id=task_id))

        return on_task_received

    # What Celery's handler and kombu call for messages the check above should
    # already have refused: refuse them too, rather than drop them.
    def on_unknown_message(self, body: Any, message: Any) -> None:
        self.refuse(message, MessageRefused("not a Celery task message"))

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self.refuse(message, MessageRefused(f"unknown task ({exc!r:.200})"))

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self.refuse(message, MessageRefused(f"invalid task message ({exc!s:.200})"))

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        reason = f"the message could not be decoded ({type(exc).__name__}: {exc!s:.200})"
        self.refuse(message, MessageRefused(reason))

    def refuse(self, message: Any, refused: MessageRefused) -> None:
        """Store ``message`` as refused (a rejected row or a dead letter), then
        acknowledge it; a database outage is waited out with the message held."""
        pending = PendingJob(
            message=refused.kwargs,
            task_id=refused.task_id,
            error=refused.reason,
            task_name=refused.task,
            envelope=describe(message),
        )
        log.warning("refused a message: %s", refused.reason, extra={"task_id": refused.task_id})
        until_stored(lambda: self.store_refusal(pending))
        message.ack_log_error(log, self.connection_errors)

    @staticmethod
    def store_refusal(pending: PendingJob) -> None:
        try:
            record_refusals(get_settings(), [pending])
        except DATABASE_UNREACHABLE:
            raise
        except Exception:
            # Something in what it held cannot be stored (a bug of ours): keep
            # at least why it was refused, with nothing of its content.
            log.exception("could not store a refused message as it was; storing its reason")
            pending.message, pending.task_id, pending.task_name = {}, None, None
            pending.envelope = {"headers": None, "body": None, "body_bytes": None}
            record_refusals(get_settings(), [pending])

"""The ``inspect`` task. The model loads lazily, once per worker process."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.signals import worker_init
from sqlalchemy.exc import InterfaceError, OperationalError

from core.jobs import TASK_NAME
from core.settings import get_settings
from worker.celery_app import app
from worker.inspection import PendingJob, WorkerRuntime, inspect_batch, record_failures

log = logging.getLogger(__name__)

# The database is unreachable (down, restarting, network cut): wait and retry,
# for as long as it takes; the job stays in the queue meanwhile.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
# Any other error is a bug or a broken dependency: a few retries, then the job
# is recorded as rejected with the error, so it is neither lost nor retried forever.
UNEXPECTED_ERROR_RETRIES = 3
MAX_BACKOFF_S = 60.0


def backoff_seconds(retries: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(MAX_BACKOFF_S, 2.0 ** (retries + 1)))


class InspectTask(Task):
    """Holds the worker's runtime (model, image store, reference cache).

    It is built on first use, not in ``worker_process_init``, where a slow
    model load would get the child killed, and after the fork, so no CUDA
    context or database pool crosses it.
    """

    _runtime: WorkerRuntime | None = None

    @property
    def runtime(self) -> WorkerRuntime:
        if InspectTask._runtime is None:
            InspectTask._runtime = WorkerRuntime.load(get_settings())
        return InspectTask._runtime


@worker_init.connect
def check_configuration(**_: Any) -> None:
    """Fail at start-up, not on the first job, when the configuration is wrong."""
    settings = get_settings()
    if settings.model_checkpoint is not None and not settings.model_checkpoint.is_file():
        raise SystemExit(f"MODEL_CHECKPOINT {settings.model_checkpoint} does not exist")


@app.task(name=TASK_NAME, base=InspectTask, bind=True, max_retries=None, typing=False)
def inspect(self: InspectTask, *args: Any, **message: Any) -> str:
    """Inspect one job; bad or missing fields become a rejected row, not a TypeError."""
    pending = PendingJob(message=dict(message), task_id=self.request.id)
    if args:
        pending.error = (
            "the inspect task takes keyword arguments only (job_id, camera, "
            "captured_at, image_b64 or image_path, meta); it got positional ones"
        )
    retries = self.request.retries
    try:
        rows = inspect_batch(self.runtime, [pending])
    except DATABASE_UNREACHABLE as exc:
        log.warning("job %s: database unreachable (%s); retry %d", pending.task_id, exc, retries)
        raise self.retry(exc=exc, countdown=backoff_seconds(retries)) from None
    except Exception as exc:
        if retries < UNEXPECTED_ERROR_RETRIES:
            log.exception(
                "job %s failed; retry %d of %d",
                pending.task_id,
                retries + 1,
                UNEXPECTED_ERROR_RETRIES,
            )
            raise self.retry(exc=exc, countdown=backoff_seconds(retries)) from None
        log.exception(
            "job %s failed %d times; recording it as rejected", pending.task_id, retries + 1
        )
        record_failures(get_settings(), [pending], exc)
        return "rejected"
    return str(rows[0]["status"])

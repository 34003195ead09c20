"""The ``inspect`` task: jobs are buffered and inspected in batches.

Built on celery-batches: the worker's consumer buffers incoming ``inspect``
messages and hands them to the task as a list when ``INSPECT_BATCH_SIZE`` have
arrived or ``INSPECT_BATCH_WAIT_MS`` have passed, whichever comes first. The
messages are acknowledged only when the batch returns, after its rows are
committed (``acks_late``); a worker that dies holding a batch leaves every job
in it to be redelivered. Errors never escape the task (that would acknowledge
the batch with no rows): a storage fault (the database down or full, BLOB_DIR
full or read-only: ``worker.retry``) is waited out with the batch held, and any
other error is isolated to the job that causes it, which is then recorded as
rejected. A job is rejected for its own input or a bug, never for our storage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_ready,
)
from celery_batches import Batches, SimpleRequest

from core.jobs import TASK_NAME
from core.logs import use_json_format
from core.settings import get_settings
from worker import metrics
from worker.celery_app import app
from worker.inspection import PendingJob, WorkerRuntime, inspect_batch, record_failures
from worker.retry import attempts, until_stored

log = logging.getLogger(__name__)

# Any error but a storage fault (worker.retry) is a bug or a broken dependency:
# a job that still fails after this many attempts on its own is recorded as
# rejected, saying why.
ATTEMPTS_PER_JOB = 3

# What the worker's main process knows of its pool, inherited by forked children.
_pool: dict[str, Any] = {"processes": 1}


@worker_init.connect
def check_configuration(sender: Any = None, **_: Any) -> None:
    """Fail at start-up, not on the first job, when the configuration is wrong."""
    settings = get_settings()
    if settings.model_checkpoint is not None and not settings.model_checkpoint.is_file():
        raise SystemExit(f"MODEL_CHECKPOINT {settings.model_checkpoint} does not exist")
    pool = str(getattr(sender, "pool_cls", "")).lower()
    if "solo" not in pool:  # prefork or threads: that many processes or threads share the cores
        _pool["processes"] = int(getattr(sender, "concurrency", 1) or 1)


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """Once logging is set up, so the port chosen is in the log."""
    settings = get_settings()
    metrics.start_metrics_server(settings.worker_metrics_port, settings.worker_metrics_host)


@after_setup_logger.connect
@after_setup_task_logger.connect
def json_logs(logger: Any = None, **_: Any) -> None:
    """LOG_FORMAT=json: one JSON object per line, job ids as fields."""
    if logger is not None and get_settings().log_format == "json":
        use_json_format(logger)


def torch_threads() -> int:
    configured = get_settings().model_threads
    return configured or max(1, (os.cpu_count() or 1) // _pool["processes"])


class InspectBatches(Batches):
    """A Batches task whose batch size and wait come from the settings, and which
    holds the worker's runtime (model, image store, reference cache).

    The runtime is built on the first batch, not in ``worker_process_init``
    (where a slow model load gets the child killed) and after any fork, so no
    CUDA context or database pool crosses one.
    """

    _runtime: WorkerRuntime | None = None

    @property
    def flush_every(self) -> int:
        return get_settings().inspect_batch_size

    @property
    def flush_interval(self) -> float:
        return get_settings().inspect_batch_wait_ms / 1000.0

    @property
    def runtime(self) -> WorkerRuntime:
        if InspectBatches._runtime is None:
            InspectBatches._runtime = WorkerRuntime.load(get_settings(), torch_threads())
        return InspectBatches._runtime


def pending_from_request(request: SimpleRequest) -> PendingJob:
    # The consumer let through only messages with keyword arguments in an object
    # and no positional ones (worker.envelope.check_task_message).
    return PendingJob(message=dict(request.kwargs), task_id=request.id)


def inspect_until_stored(
    runtime: Callable[[], WorkerRuntime], batch: list[PendingJob], sleep: Callable = time.sleep
) -> None:
    """Inspect ``batch`` and store its rows, whatever it takes; never raises.

    Storage faults are waited out (``until_stored``), the batch held; any other
    error is isolated to the job that causes it, which is retried and then
    recorded as rejected.
    """
    if len(batch) == 1:
        inspect_alone(runtime, batch[0], sleep)
        return
    try:
        until_stored(lambda: inspect_batch(runtime(), batch), sleep, holding=len(batch))
        return
    except Exception:
        ids = {"job_ids": [p.task_id for p in batch]}
        log.exception("a batch of %d failed; inspecting its jobs one by one", len(batch), extra=ids)
    for pending in batch:
        inspect_alone(runtime, pending, sleep)


def inspect_alone(
    runtime: Callable[[], WorkerRuntime], pending: PendingJob, sleep: Callable
) -> None:
    """One job, tried ATTEMPTS_PER_JOB times; then stored as rejected, saying why."""
    fields = {"job_id": pending.task_id}
    try:
        for attempt in attempts(ATTEMPTS_PER_JOB, sleep):
            with attempt:
                try:
                    until_stored(lambda: inspect_batch(runtime(), [pending]), sleep)
                except Exception:
                    number = attempt.retry_state.attempt_number
                    log.exception(
                        "job %s failed (attempt %d)", pending.task_id, number, extra=fields
                    )
                    raise
    except Exception as exc:
        log.error(
            "job %s failed %d times; recording it as rejected",
            pending.task_id,
            ATTEMPTS_PER_JOB,
            extra=fields,
        )
        until_stored(partial(record_failures, get_settings(), [pending], exc), sleep)


@app.task(name=TASK_NAME, base=InspectBatches, bind=True, typing=False)
def inspect(self: InspectBatches, requests: list[SimpleRequest]) -> None:
    batch = [pending_from_request(request) for request in requests]
    inspect_until_stored(lambda: self.runtime, batch)

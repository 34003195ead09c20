"""Inspecting jobs: check, decode, embed, compare, decide and persist, per batch.

Everything here works on a list of messages so that one forward pass and one
transaction serve many jobs; the Celery task feeds it what it has.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.blobs import BlobStore
from core.db import session_scope
from core.images import ImageRejected, decode_image
from core.inbox import read_inbox_file
from core.jobs import (
    MAX_CAMERA_LENGTH,
    InspectJob,
    JobInvalid,
    decode_b64_image,
)
from core.references import ReferenceCache, register_model_version
from core.results import insert_inspections
from core.settings import Settings
from core.tables import DeadLetter, utcnow
from core.thresholds import ThresholdCache
from core.verdict import decide_batch
from worker import metrics
from worker.envelope import BODY_EXCERPT_CHARS, json_safe, printable

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    """What a worker process loads once: settings, model, image store, references."""

    settings: Settings
    embedder: Any  # model.Embedder
    store: BlobStore
    references: ReferenceCache
    thresholds: ThresholdCache

    @classmethod
    def load(cls, settings: Settings, threads: int | None = None) -> WorkerRuntime:
        import torch

        from model import load_embedder

        if threads:
            # Several worker processes on one host must not each use every core.
            torch.set_num_threads(threads)
        embedder = load_embedder(
            settings.model_checkpoint,
            device=settings.model_device,
            threshold=settings.match_threshold,
        )
        store = BlobStore(settings.blob_dir)
        with session_scope(settings.database_url) as session:
            register_model_version(session, embedder)
        metrics.MODEL.labels(embedder.version, embedder.arch).set(1)
        log.info(
            "loaded model %s on %s, %d torch thread(s), threshold %.4f",
            embedder.version,
            embedder.device,
            torch.get_num_threads(),
            embedder.threshold,
        )
        return cls(
            settings,
            embedder,
            store,
            ReferenceCache(embedder, store),
            ThresholdCache(embedder.threshold, embedder.version),
        )


@dataclass
class PendingJob:
    """One message on its way to a row."""

    message: dict[str, Any]
    task_id: str | None
    received_at: datetime = field(default_factory=utcnow)
    task_name: str | None = None  # the task the message named, where it was not "inspect"
    job: InspectJob | None = None
    image: Image.Image | None = None
    data: bytes | None = None  # what was sent, kept even when it is no image
    image_key: str | None = None
    error: str | None = None
    envelope: dict[str, Any] | None = None  # headers and body, as a dead letter keeps them

    def recovered_job_id(self) -> str | None:
        """The job's id when the message has no valid one: the Celery task id, which
        producers set to the job id. None when neither is a UUID: no row can be
        written for it (another copy of the message would make a second one), so
        it becomes a dead letter."""
        for raw in (self.message.get("job_id"), self.task_id):
            if isinstance(raw, str):
                try:
                    return str(uuid.UUID(raw))
                except ValueError:
                    pass
        return None


def _printable_camera(value: Any) -> str:
    text = value if isinstance(value, str) else "unknown"
    text = "".join(ch if ch.isprintable() else "?" for ch in text).strip() or "unknown"
    return text[:MAX_CAMERA_LENGTH]


def read_image_bytes(job: InspectJob, settings: Settings) -> bytes:
    if job.image_b64 is not None:
        return decode_b64_image(job.image_b64, settings.max_image_bytes)
    return read_inbox_file(job.image_path or "", settings.inbox_dir, settings.max_image_bytes)


def prepare(pending: PendingJob, runtime: WorkerRuntime) -> None:
    """Check the message and decode its image; on any fault record why, never raise."""
    settings = runtime.settings
    # Start afresh: a batch that is retried (the database was down) is prepared again.
    pending.job, pending.image, pending.data, pending.image_key = None, None, None, None
    pending.error = None
    try:
        pending.job = InspectJob.from_message(pending.message)
        data = read_image_bytes(pending.job, settings)
    except (JobInvalid, ImageRejected) as exc:
        pending.error = str(exc)
        return
    except OSError as exc:
        pending.error = f"the image file could not be read ({exc.strerror or exc})"
        return
    try:
        pending.image = decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
    except ImageRejected as exc:
        pending.error = str(exc)
    # Keep what was sent, even a bad image, so a supervisor can look at it.
    pending.data = data


def rejected_row(pending: PendingJob, processed_at: datetime) -> dict[str, Any]:
    job, message = pending.job, pending.message
    meta = message.get("meta") if isinstance(message.get("meta"), dict) else None
    return base_row(
        job_id=job.job_id if job else pending.recovered_job_id(),
        camera=job.camera if job else _printable_camera(message.get("camera")),
        status="rejected",
        error=pending.error,
        image_key=pending.image_key,
        meta=job.meta if job else meta,
        captured_at=job.captured_at if job else None,
        submitted_at=job.submitted_at if job else None,
        received_at=pending.received_at,
        processed_at=processed_at,
    )


def dead_letter_row(pending: PendingJob) -> dict[str, Any]:
    """A dead letter for a refused message from which no job id could be recovered."""
    envelope = pending.envelope or {
        "headers": json_safe({"id": pending.task_id}) if pending.task_id else None,
        "body": printable(json.dumps(pending.message, default=repr)[:BODY_EXCERPT_CHARS]),
        "body_bytes": None,
    }
    return {
        "received_at": pending.received_at,
        "reason": pending.error or "refused",
        "task": pending.task_name,
        "task_id": printable(pending.task_id)[:200] if pending.task_id else None,
        **envelope,
    }


def store_rejections(
    session: Session, batch: list[PendingJob], processed_at: datetime
) -> list[dict[str, Any]]:
    """The refused jobs of ``batch`` (no image, ``error`` set): writes a dead letter
    for each from which no job id can be recovered, and returns a rejected row for
    each of the others, for the caller to insert with the rest of its rows."""
    rows, dead = [], []
    for pending in batch:
        if pending.image is not None:
            continue
        if pending.job is None and pending.recovered_job_id() is None:
            dead.append(pending)
        else:
            rows.append(rejected_row(pending, processed_at))
    if dead:
        session.execute(insert(DeadLetter), [dead_letter_row(p) for p in dead])
        for pending in dead:
            metrics.DEAD_LETTERS.inc()
            log.warning(
                "dead letter (no job id could be recovered): %s",
                pending.error,
                extra={"task_id": pending.task_id},
            )
    return rows


def base_row(**values: Any) -> dict[str, Any]:
    """A complete row: every column present, so one executemany serves a batch."""
    row: dict[str, Any] = {
        "job_id": None,
        "camera": None,
        "status": None,
        "label": None,
        "dissimilarity": None,
        "nearest_reference_id": None,
        "distances": None,
        "threshold": None,
        "model_version": None,
        "image_key": None,
        "image_width": None,
        "image_height": None,
        "error": None,
        "meta": None,
        "captured_at": None,
        "submitted_at": None,
        "received_at": None,
        "processed_at": None,
        "review_state": "pending",
    }
    row.update(values)
    return row


def inspect_batch(runtime: WorkerRuntime, batch: list[PendingJob]) -> list[dict[str, Any]]:
    """Inspect a batch of jobs and commit one row per job in one transaction."""
    started = time.perf_counter()
    for pending in batch:
        prepare(pending, runtime)
    stored = [(p, p.data) for p in batch if p.data is not None]
    keys = runtime.store.put_many([data for _, data in stored])
    for (pending, _), key in zip(stored, keys, strict=True):
        pending.image_key = key
    good = [p for p in batch if p.image is not None]
    embed_started = time.perf_counter()
    embeddings = (
        runtime.embedder.embed([p.image for p in good])
        if good
        else np.empty((0, 0), dtype=np.float32)
    )
    embed_seconds = time.perf_counter() - embed_started
    with session_scope(runtime.settings.database_url) as session:
        references = runtime.references.get(session)
        thresholds = runtime.thresholds.get(session)
        verdicts = decide_batch(embeddings, references, thresholds) if good else []
        processed_at = datetime.now(UTC)
        rows = store_rejections(session, batch, processed_at)
        for pending, verdict in zip(good, verdicts, strict=True):
            job = pending.job
            assert job is not None and pending.image is not None
            rows.append(
                base_row(
                    job_id=job.job_id,
                    camera=job.camera,
                    status=verdict.status,
                    label=verdict.label,
                    dissimilarity=verdict.dissimilarity,
                    nearest_reference_id=verdict.nearest_reference_id,
                    distances=verdict.distances,
                    threshold=verdict.threshold,
                    model_version=runtime.embedder.version,
                    image_key=pending.image_key,
                    image_width=pending.image.width,
                    image_height=pending.image.height,
                    meta=job.meta,
                    captured_at=job.captured_at,
                    submitted_at=job.submitted_at,
                    received_at=pending.received_at,
                    processed_at=processed_at,
                )
            )
        # A job sent twice may arrive twice in one batch: the first copy stands.
        unique, seen = [], set()
        for row in rows:
            if row["job_id"] not in seen:
                seen.add(row["job_id"])
                unique.append(row)
        inserted = insert_inspections(session, unique)
    record_outcome(rows, unique, inserted, len(batch), embed_seconds, time.perf_counter() - started)
    return rows


def record_outcome(
    rows: list[dict[str, Any]],
    unique: list[dict[str, Any]],
    inserted: set[str],
    batch_size: int,
    embed_seconds: float,
    batch_seconds: float,
) -> None:
    """Log a line per job (its job_id a field too) and update the metrics."""
    kept = {id(row) for row in unique}
    for row in rows:
        fields = {"job_id": row["job_id"], "camera": row["camera"], "status": row["status"]}
        if row["job_id"] not in inserted or id(row) not in kept:
            metrics.DUPLICATES.inc()
            log.info(
                "job %s already had a row (sent twice or redelivered); kept the first",
                row["job_id"],
                extra=fields,
            )
            continue
        log.info(
            "job %s from %s: %s %s%s",
            row["job_id"],
            row["camera"],
            row["status"],
            row["label"] or "",
            f" ({row['error']})" if row["error"] else "",
            extra=fields,
        )
        metrics.JOBS.labels(row["status"]).inc()
        if row["status"] == "rejected":
            metrics.REJECTED.labels(metrics.rejected_reason(row["error"])).inc()
        if row["submitted_at"] is not None:
            metrics.END_TO_END_SECONDS.observe(
                max(0.0, (row["processed_at"] - row["submitted_at"]).total_seconds())
            )
    metrics.BATCH_SIZE.observe(batch_size)
    metrics.EMBED_SECONDS.observe(embed_seconds)
    metrics.BATCH_SECONDS.observe(batch_seconds)
    log.info(
        "batch of %d inspected and stored in %.0f ms",
        batch_size,
        1000 * batch_seconds,
        extra={"job_ids": [row["job_id"] for row in rows], "batch_size": batch_size},
    )


def record_failures(settings: Settings, batch: list[PendingJob], exc: Exception) -> None:
    """Record jobs that failed for a reason of ours, not of their input, as rejected.

    Needs only the database, not the model, so it works when the model does not.
    """
    for pending in batch:
        pending.image = None
        pending.error = (
            f"internal error while inspecting ({type(exc).__name__}: {exc}); the image was "
            "not judged. Resubmit it; if this repeats, tell the operators"
        )
    record_refusals(settings, batch)


def record_refusals(settings: Settings, batch: list[PendingJob]) -> None:
    """Store jobs refused before inspection (their ``error`` set): rejected rows or
    dead letters. Needs only the database."""
    with session_scope(settings.database_url) as session:
        rows = store_rejections(session, batch, utcnow())
        inserted = insert_inspections(session, rows)
    for row in rows:
        if row["job_id"] in inserted:
            metrics.JOBS.labels("rejected").inc()
            metrics.REJECTED.labels(metrics.rejected_reason(row["error"])).inc()
        fields = {"job_id": row["job_id"]}
        log.info("job %s rejected: %s", row["job_id"], row["error"], extra=fields)

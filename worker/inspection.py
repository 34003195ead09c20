"""Inspecting jobs: check, decode, embed, compare, decide and persist, per batch.

Everything here works on a list of messages so that one forward pass and one
transaction serve many jobs; the Celery task feeds it what it has.
"""

from __future__ import annotations

import io
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
from core.coils import place_frames, record_frames
from core.db import session_scope
from core.images import ImageRejected, decode_image
from core.inbox import read_inbox_file
from core.jobs import (
    MAX_CAMERA_LENGTH,
    InspectJob,
    JobInvalid,
    check_meta,
    decode_b64_image,
)
from core.outbox import emit_flagged
from core.references import ReferenceCache, register_model_version
from core.results import embedding_bytes, insert_inspections
from core.settings import Settings
from core.surface_memories import CameraMemory, SurfaceMemoryCache
from core.tables import DeadLetter, Finding, utcnow
from core.thresholds import ThresholdCache
from core.verdict import ReferenceSet, decide_batch
from worker import metrics
from worker.envelope import BODY_EXCERPT_CHARS, json_safe, printable, shown

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    """What a worker process loads once: settings, model, image store, references."""

    settings: Settings
    embedder: Any  # model.Embedder
    store: BlobStore
    references: ReferenceCache
    thresholds: ThresholdCache
    memories: SurfaceMemoryCache

    @classmethod
    def load(cls, settings: Settings, threads: int | None = None) -> WorkerRuntime:
        import torch

        from model import load_embedder

        if threads:
            # Several worker processes on one host must not each use every core.
            torch.set_num_threads(threads)
            import faiss  # the good-surface memory's search

            faiss.omp_set_num_threads(threads)
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
            SurfaceMemoryCache(lambda: frame_inspector(embedder, settings), store),
        )


def frame_inspector(embedder: Any, settings: Settings) -> Any:
    """The frame inspector (``model.frames.FrameInspector``: ``FRAME_CHECKPOINT``,
    the shipped ``frames.pt``, or the naming model), or None when its network has
    no feature maps to read (such as the paper's network): then every camera
    keeps the whole-image rule."""
    from model.frames import load_frame_inspector

    try:
        inspector = load_frame_inspector(
            settings.frame_checkpoint, settings.model_device, fallback=embedder
        )
        log.info("frames are read by model %s", inspector.version)
        return inspector
    except ValueError as exc:
        log.warning("frames are judged by the whole-image rule only: %s", exc)
        return None


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


def _storable_meta(value: Any) -> dict[str, Any] | None:
    """A refused message's meta, kept on its row only when a job could carry it: one
    with NaN (which PostgreSQL's json refuses) would make the row unwritable."""
    try:
        return check_meta(value) if isinstance(value, dict) else None
    except JobInvalid:
        return None


def rejected_row(pending: PendingJob, processed_at: datetime) -> dict[str, Any]:
    job, message = pending.job, pending.message
    return base_row(
        job_id=job.job_id if job else pending.recovered_job_id(),
        camera=job.camera if job else _printable_camera(message.get("camera")),
        status="rejected",
        # a reason may quote what was sent; PostgreSQL's text takes no NUL
        error=printable(pending.error or "rejected"),
        image_key=pending.image_key,
        meta=job.meta if job else _storable_meta(message.get("meta")),
        **(trace_columns(job) if job else {}),
        captured_at=job.captured_at if job else None,
        submitted_at=job.submitted_at if job else None,
        received_at=pending.received_at,
        processed_at=processed_at,
    )


def dead_letter_row(pending: PendingJob) -> dict[str, Any]:
    """A dead letter for a refused message from which no job id could be recovered."""
    envelope = pending.envelope or {
        "headers": json_safe({"id": pending.task_id}) if pending.task_id else None,
        "body": shown(pending.message, BODY_EXCERPT_CHARS),
        "body_bytes": None,
    }
    return {
        "received_at": pending.received_at,
        "reason": printable(pending.error or "refused"),
        "task": printable(pending.task_name)[:200] if pending.task_name else None,
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


def trace_columns(job: InspectJob) -> dict[str, Any]:
    """Where on which coil the job's frame was taken, as its row keeps it."""
    return {
        "coil_id": job.coil_id,
        "frame_index": job.frame_index,
        "position_m": job.position_m,
        "across_m": job.across_m,
    }


def coil_ends(batch: list[PendingJob]) -> set[str]:
    """The job ids of the batch that end their coil."""
    return {p.job.job_id for p in batch if p.job is not None and p.job.coil_end}


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
        "anomaly_key": None,
        "error": None,
        "meta": None,
        "captured_at": None,
        "submitted_at": None,
        "received_at": None,
        "processed_at": None,
        "review_state": "pending",
        "embedding": None,
        "coil_id": None,
        "frame_index": None,
        "position_m": None,
        "across_m": None,
    }
    row.update(values)
    return row


@dataclass
class FrameOutcome:
    """A frame judged by its camera's good-surface memory, its findings named."""

    memory: CameraMemory
    score: float
    findings: list[dict[str, Any]]  # Finding columns, rank order
    heat_map: bytes  # PNG
    anomaly_key: str | None = None
    # the naming network's code of the top finding's crop (float32 bytes), set when
    # the findings are named; None without findings
    embedding: bytes | None = None


def judge_frames(
    runtime: WorkerRuntime, jobs: list[PendingJob], memories: dict[str, CameraMemory]
) -> dict[int, FrameOutcome]:
    """Each job of a camera with good frames judged by its memory (by ``id`` of the
    job); findings named later, with the references."""
    inspector: Any = runtime.memories.builder()  # set: the memories were built with it
    outcomes: dict[int, FrameOutcome] = {}
    by_camera: dict[str, list[PendingJob]] = {}
    for pending in jobs:
        assert pending.job is not None
        by_camera.setdefault(pending.job.camera, []).append(pending)
    for camera, members in by_camera.items():
        memory = memories[camera]
        verdicts = inspector.inspect(
            [p.image for p in members], memory.rows, memory.threshold, memory.scale
        )
        for pending, verdict in zip(members, verdicts, strict=True):
            buffer = io.BytesIO()
            verdict.grid.heat_map(memory.threshold).save(buffer, format="PNG")
            findings = [
                {
                    "rank": rank,
                    "x": region.x,
                    "y": region.y,
                    "width": region.width,
                    "height": region.height,
                    "area": region.area,
                    "score": region.score,
                    "crop": crop,
                }
                for rank, (region, crop) in enumerate(
                    zip(verdict.regions, verdict.crops, strict=True)
                )
            ]
            outcomes[id(pending)] = FrameOutcome(
                memory, verdict.grid.score, findings, buffer.getvalue()
            )
    return outcomes


def name_findings(
    runtime: WorkerRuntime,
    outcomes: list[FrameOutcome],
    references: ReferenceSet,
    thresholds: Any,
) -> None:
    """Each finding named by the nearest ``defect`` reference of its crop within the
    match threshold (``unknown`` otherwise), all crops in one embedding pass; each
    frame keeps its top finding's code, for "similar confirmed inspections"."""
    findings = [f for outcome in outcomes for f in outcome.findings]
    if not findings:
        return
    defects = [i for i, kind in enumerate(references.kinds) if kind == "defect"]
    library = ReferenceSet(
        ids=[references.ids[i] for i in defects],
        labels=[references.labels[i] for i in defects],
        kinds=["defect"] * len(defects),
        vectors=references.vectors[defects] if defects else references.vectors[:0],
        model_version=references.model_version,
    )
    codes = runtime.embedder.embed([f.pop("crop") for f in findings])
    verdicts = decide_batch(codes, library, thresholds)
    for finding, verdict in zip(findings, verdicts, strict=True):
        finding["label"] = verdict.label
        finding["reference_id"] = verdict.nearest_reference_id
        finding["distance"] = verdict.dissimilarity
    start = 0  # the findings are flat in outcome order, each outcome's top one first
    for outcome in outcomes:
        if outcome.findings:
            outcome.embedding = embedding_bytes(codes[start])
        start += len(outcome.findings)


def frame_row(pending: PendingJob, outcome: FrameOutcome, **common: Any) -> dict[str, Any]:
    """The inspection row of a frame: flagged with its top finding's label, or passed.
    ``distances`` stays empty: each finding keeps its own nearest reference and
    distance, on the match threshold's scale, not the frame threshold's."""
    top = outcome.findings[0] if outcome.findings else None
    return base_row(
        status="flagged" if top else "passed",
        label=top["label"] if top else outcome.memory.label,
        dissimilarity=outcome.score,
        nearest_reference_id=top["reference_id"] if top else None,
        threshold=outcome.memory.threshold,
        anomaly_key=outcome.anomaly_key,
        embedding=outcome.embedding,
        **common,
    )


def store_findings(
    session: Session, inserted: dict[str, int], frames: dict[str, FrameOutcome]
) -> int:
    """The findings of the frames whose rows were just inserted; returns how many."""
    job_ids = [job_id for job_id in frames if job_id in inserted and frames[job_id].findings]
    if not job_ids:
        return 0
    rows = [
        {
            "inspection_id": inserted[job_id],
            **{k: v for k, v in finding.items() if k != "crop"},
        }
        for job_id in job_ids
        for finding in frames[job_id].findings
    ]
    session.execute(insert(Finding), rows)
    return len(rows)


def inspect_batch(runtime: WorkerRuntime, batch: list[PendingJob]) -> list[dict[str, Any]]:
    """Inspect a batch of jobs and commit one row per job in one transaction.

    Frames of a camera with good frames are judged by its good-surface memory
    (findings); the others by the whole-image rule (embedding and references)."""
    started = time.perf_counter()
    for pending in batch:
        prepare(pending, runtime)
    stored = [(p, p.data) for p in batch if p.data is not None]
    keys = runtime.store.put_many([data for _, data in stored])
    for (pending, _), key in zip(stored, keys, strict=True):
        pending.image_key = key
    good = [p for p in batch if p.image is not None]
    cameras = {p.job.camera for p in good if p.job is not None}
    with session_scope(runtime.settings.database_url) as session:
        memories = runtime.memories.get(session, cameras)
    framed = [p for p in good if p.job is not None and p.job.camera in memories]
    framed_ids = {id(p) for p in framed}
    whole = [p for p in good if id(p) not in framed_ids]
    embed_started = time.perf_counter()
    embeddings = (
        runtime.embedder.embed([p.image for p in whole])
        if whole
        else np.empty((0, 0), dtype=np.float32)
    )
    outcomes = judge_frames(runtime, framed, memories) if framed else {}
    heat_keys = runtime.store.put_many([o.heat_map for o in outcomes.values()])
    for outcome, key in zip(outcomes.values(), heat_keys, strict=True):
        outcome.anomaly_key = key
    embed_seconds = time.perf_counter() - embed_started
    with session_scope(runtime.settings.database_url) as session:
        references = runtime.references.get(session)
        thresholds = runtime.thresholds.get(session)
        name_findings(runtime, list(outcomes.values()), references, thresholds)
        verdicts = decide_batch(embeddings, references, thresholds) if whole else []
        verdict_of = {id(p): v for p, v in zip(whole, verdicts, strict=True)}
        code_of = {id(p): code for p, code in zip(whole, embeddings, strict=True)}
        processed_at = datetime.now(UTC)
        rows = store_rejections(session, batch, processed_at)
        frames_by_job: dict[str, FrameOutcome] = {}
        for pending in good:
            job = pending.job
            assert job is not None and pending.image is not None
            common = {
                "job_id": job.job_id,
                "camera": job.camera,
                # a frame's verdict is its memory's: the frames model's version
                "model_version": outcomes[id(pending)].memory.model_version
                if id(pending) in outcomes
                else runtime.embedder.version,
                "image_key": pending.image_key,
                "image_width": pending.image.width,
                "image_height": pending.image.height,
                "meta": job.meta,
                **trace_columns(job),
                "captured_at": job.captured_at,
                "submitted_at": job.submitted_at,
                "received_at": pending.received_at,
                "processed_at": processed_at,
            }
            if id(pending) in outcomes:
                outcome = outcomes[id(pending)]
                frames_by_job.setdefault(job.job_id, outcome)
                rows.append(frame_row(pending, outcome, **common))
                continue
            verdict = verdict_of[id(pending)]
            rows.append(
                base_row(
                    status=verdict.status,
                    label=verdict.label,
                    dissimilarity=verdict.dissimilarity,
                    nearest_reference_id=verdict.nearest_reference_id,
                    distances=verdict.distances,
                    threshold=verdict.threshold,
                    embedding=embedding_bytes(code_of[id(pending)]),
                    **common,
                )
            )
        # A job sent twice may arrive twice in one batch: the first copy stands.
        unique, seen = [], set()
        for row in rows:
            if row["job_id"] not in seen:
                seen.add(row["job_id"])
                unique.append(row)
        place_frames(session, unique)
        inserted = insert_inspections(session, unique)
        findings = store_findings(session, inserted, frames_by_job)
        record_frames(session, unique, inserted, coil_ends(batch))
        emit_flagged(
            session,
            runtime.settings.line_name,
            unique,
            inserted,
            {job_id: frame.findings for job_id, frame in frames_by_job.items()},
        )
    if findings:
        metrics.FINDINGS.inc(findings)
    record_outcome(rows, unique, inserted, len(batch), embed_seconds, time.perf_counter() - started)
    return rows


def record_outcome(
    rows: list[dict[str, Any]],
    unique: list[dict[str, Any]],
    inserted: dict[str, int],
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
        place_frames(session, rows)
        inserted = insert_inspections(session, rows)
        record_frames(session, rows, inserted, coil_ends(batch))
    for row in rows:
        if row["job_id"] in inserted:
            metrics.JOBS.labels("rejected").inc()
            metrics.REJECTED.labels(metrics.rejected_reason(row["error"])).inc()
        fields = {"job_id": row["job_id"]}
        log.info("job %s rejected: %s", row["job_id"], row["error"], extra=fields)

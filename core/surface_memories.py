"""Cameras' good-surface memories: built from their good frames, cached per model version.

A camera's good frames are its active ``ok`` references with that camera. The
memory (local features of good surface and a frame-score threshold calibrated
from the good frames alone) is built once per (camera, model version, good frames
and scale) and stored in ``surface_memories``, so a new worker, or one more host,
reuses it. ``SurfaceMemoryCache`` keeps the memories in a worker's memory and
notices a changed library from a cheap query, so workers need no restart.
A camera without good frames keeps the whole-image rule.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.blobs import BlobStore
from core.images import decode_image
from core.tables import Camera, CameraThreshold, Reference, SurfaceMemory

log = logging.getLogger(__name__)
DEFAULT_SCALE = 1.0


class MemoryBuilder(Protocol):
    """What builds a memory (``model.frames.FrameInspector``)."""

    version: str

    def build(self, images: list[Any], scale: float) -> tuple[np.ndarray, float]: ...


@dataclass(frozen=True)
class CameraMemory:
    """A camera's memory as a worker uses it."""

    camera: str
    scale: float
    rows: np.ndarray  # (M, C) float32
    calibrated: float  # the threshold calibrated from the good frames
    threshold: float  # the one that applies: an admin's, else the calibrated
    label: str  # the good frames' label: a frame without findings passes with it
    model_version: str  # of the network whose features it holds


def good_frames(session: Session, camera: str) -> list[Reference]:
    """The camera's active good frames, oldest first."""
    return list(
        session.scalars(
            select(Reference)
            .where(
                Reference.active.is_(True),
                Reference.kind == "ok",
                Reference.camera == camera,
            )
            .order_by(Reference.id)
        )
    )


def camera_scale(session: Session, camera: str) -> float:
    row = session.get(Camera, camera)
    return float(row.scale) if row is not None else DEFAULT_SCALE


def memory_signature(references: list[Reference], scale: float) -> str:
    """Names the good frames (their ids and stored images) and the scale."""
    text = ";".join(f"{r.id}:{r.image_key}" for r in references) + f"@{scale:.6g}"
    return hashlib.sha256(text.encode()).hexdigest()


def stored_memory(
    session: Session, camera: str, model_version: str, signature: str
) -> SurfaceMemory | None:
    return session.scalars(
        select(SurfaceMemory).where(
            SurfaceMemory.camera == camera,
            SurfaceMemory.model_version == model_version,
            SurfaceMemory.signature == signature,
        )
    ).first()


def current_memory(session: Session, camera: str, model_version: str) -> SurfaceMemory | None:
    """The stored memory for the camera's good frames as they are now, if built."""
    references = good_frames(session, camera)
    if not references:
        return None
    signature = memory_signature(references, camera_scale(session, camera))
    return stored_memory(session, camera, model_version, signature)


def load_or_build(
    session: Session,
    camera: str,
    references: list[Reference],
    scale: float,
    builder: MemoryBuilder,
    store: BlobStore,
) -> CameraMemory:
    """The memory of the camera's good frames ``references`` read at ``scale`` under
    ``builder``'s model: stored, or built and stored. Its threshold is the
    calibrated one; the caller applies an admin's."""
    signature = memory_signature(references, scale)
    row = stored_memory(session, camera, builder.version, signature)
    if row is None:
        started = time.perf_counter()
        images = [decode_image(store.get(r.image_key), 1 << 62, 1 << 62) for r in references]
        rows, threshold = builder.build(images, scale)
        seconds = time.perf_counter() - started
        row = SurfaceMemory(
            camera=camera,
            model_version=builder.version,
            signature=signature,
            scale=scale,
            frames=len(references),
            dim=int(rows.shape[1]),
            rows=np.ascontiguousarray(rows, dtype=np.float32).tobytes(),
            threshold=float(threshold),
            seconds=seconds,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another worker stored it first: use theirs
            theirs = stored_memory(session, camera, builder.version, signature)
            assert theirs is not None
            row = theirs
        log.info(
            "built the good-surface memory of camera %s from %d good frame(s) in %.1f s; "
            "threshold %.4f",
            camera,
            len(references),
            seconds,
            threshold,
        )
    return CameraMemory(
        camera=camera,
        scale=row.scale,
        rows=np.frombuffer(row.rows, dtype=np.float32).reshape(-1, row.dim).copy(),
        calibrated=row.threshold,
        threshold=row.threshold,
        label=references[0].label,
        model_version=builder.version,
    )


class SurfaceMemoryCache:
    """The memories of the cameras a worker sees, kept in memory; per batch three
    small queries tell whether a camera's good frames, scale or threshold changed."""

    def __init__(self, builder: Callable[[], MemoryBuilder | None], store: BlobStore) -> None:
        self._builder_factory = builder
        self._builder: MemoryBuilder | None = None
        self._no_builder = False
        self.store = store
        self._memories: dict[str, tuple[str, CameraMemory]] = {}

    def builder(self) -> MemoryBuilder | None:
        """Made on first need; None (said once) when the model cannot read frames."""
        if self._builder is None and not self._no_builder:
            self._builder = self._builder_factory()
            self._no_builder = self._builder is None
        return self._builder

    def get(self, session: Session, cameras: set[str]) -> dict[str, CameraMemory]:
        """The memory of each of ``cameras`` that has good frames."""
        if not cameras:
            return {}
        frames: dict[str, list[Reference]] = {}
        for reference in session.scalars(
            select(Reference)
            .where(
                Reference.active.is_(True),
                Reference.kind == "ok",
                Reference.camera.in_(sorted(cameras)),
            )
            .order_by(Reference.id)
        ):
            frames.setdefault(reference.camera or "", []).append(reference)
        if not frames or self.builder() is None:
            return {}
        builder = self._builder
        assert builder is not None
        scales = {
            row.name: float(row.scale)
            for row in session.scalars(select(Camera).where(Camera.name.in_(sorted(frames))))
        }
        overrides = {
            row.camera: float(row.value)
            for row in session.scalars(
                select(CameraThreshold).where(
                    CameraThreshold.camera.in_(sorted(frames)),
                    CameraThreshold.model_version == builder.version,
                )
            )
        }
        found = {}
        for camera, references in frames.items():
            scale = scales.get(camera, DEFAULT_SCALE)
            signature = memory_signature(references, scale)
            cached = self._memories.get(camera)
            if cached is None or cached[0] != signature:
                memory = load_or_build(session, camera, references, scale, builder, self.store)
                cached = self._memories[camera] = (signature, memory)
            memory = cached[1]
            threshold = overrides.get(camera, memory.calibrated)
            found[camera] = replace(memory, threshold=threshold)
        return found

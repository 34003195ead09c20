"""The reference library: adding references and caching their embeddings per model.

An embedding is computed once per (reference, model version) and stored in
``reference_embeddings``, so a new worker, or one more host, reuses it.
``ReferenceCache`` keeps them in memory and reloads when the library changes,
which it notices from a cheap signature query, so workers need no restart.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.blobs import BlobStore
from core.images import decode_image
from core.tables import (
    REFERENCE_KINDS,
    Label,
    ModelVersion,
    Reference,
    ReferenceEmbedding,
    check_name,
)
from core.verdict import ReferenceSet

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}


class EmbedderLike(Protocol):
    version: str
    threshold: float
    arch: str
    meta: dict[str, Any]

    def embed(self, images: Any) -> np.ndarray: ...


def add_reference(
    session: Session,
    store: BlobStore,
    data: bytes,
    label: str,
    kind: str,
    added_by: str | None = None,
    max_bytes: int = 8 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    camera: str | None = None,
) -> Reference:
    """Check the image, store it and add an active reference row (not committed).

    An ``ok`` reference with a ``camera`` is a good frame of that camera: it goes
    into the camera's good-surface memory (frames and findings) instead of the
    whole-image rule. A defect reference's camera is kept for the record."""
    if not label.strip():
        raise ValueError("a reference needs a label, such as 'scratches'")
    label = check_name(label, "the label")
    if kind not in REFERENCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(REFERENCE_KINDS)}, got {kind!r}")
    if camera is not None:
        camera = check_name(camera, "the camera")
    decode_image(data, max_bytes, max_pixels)  # raises ImageRejected with the reason
    # every reference's label is one to choose from (admin.labels); the site asks
    # before a new one, admin commands and seeding add theirs here
    ensure_label(session, label, added_by)
    reference = Reference(
        label=label, kind=kind, image_key=store.put(data), added_by=added_by, camera=camera
    )
    session.add(reference)
    session.flush()
    return reference


def ensure_label(session: Session, name: str, created_by: str | None = None) -> bool:
    """Add ``name`` to the labels to choose from unless it is there, active or not
    (a deactivated label stays deactivated); True when it was added."""
    name = check_name(name, "the label")
    if session.get(Label, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Label(name=name, active=True, created_by=created_by))
    except IntegrityError:
        return False  # another admin added it at the same moment
    return True


def seed_from_folder(
    session: Session, store: BlobStore, folder: Path, added_by: str | None = None
) -> list[tuple[str, Path]]:
    """Register the first image of each class sub-folder of ``folder`` as a defect
    reference, for labels the library does not have yet. Returns what was added."""
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    known = set(session.scalars(select(Reference.label)))
    added = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in known):
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            add_reference(session, store, images[0].read_bytes(), sub.name, "defect", added_by)
            added.append((sub.name, images[0]))
    return added


def register_model_version(session: Session, embedder: EmbedderLike) -> None:
    """Record the checkpoint this process loaded (once per version, any process)."""
    if session.get(ModelVersion, embedder.version) is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                ModelVersion(
                    version=embedder.version,
                    arch=embedder.arch,
                    threshold=float(embedder.meta["threshold"]),
                    meta=embedder.meta,
                )
            )
    except IntegrityError:
        pass  # another process recorded it first


def library_signature(session: Session) -> tuple[Any, ...]:
    """Changes whenever a reference is added, changed, (de)activated or removed."""
    row = session.execute(
        select(func.count(Reference.id), func.max(Reference.id), func.max(Reference.updated_at))
    ).one()
    return tuple(row)


def is_good_frame() -> Any:
    """SQL: the reference is a good frame of a camera (its good-surface memory's)."""
    return (Reference.kind == "ok") & Reference.camera.is_not(None)


def load_reference_set(session: Session, embedder: EmbedderLike, store: BlobStore) -> ReferenceSet:
    """Embeddings of every active reference under ``embedder``, computing missing ones;
    cameras' good frames are not among them (they build good-surface memories)."""
    references = session.scalars(
        select(Reference).where(Reference.active.is_(True), ~is_good_frame()).order_by(Reference.id)
    ).all()
    if not references:
        return ReferenceSet.empty(model_version=embedder.version)
    cached = {
        row.reference_id: np.frombuffer(row.vector, dtype=np.float32)
        for row in session.scalars(
            select(ReferenceEmbedding).where(
                ReferenceEmbedding.model_version == embedder.version,
                ReferenceEmbedding.reference_id.in_([r.id for r in references]),
            )
        )
    }
    missing = [r for r in references if r.id not in cached]
    if missing:
        images = [decode_image(store.get(r.image_key), 1 << 62, 1 << 62) for r in missing]
        vectors = embedder.embed(images)
        for reference, vector in zip(missing, vectors, strict=True):
            cached[reference.id] = vector
            try:
                with session.begin_nested():
                    session.add(
                        ReferenceEmbedding(
                            reference_id=reference.id,
                            model_version=embedder.version,
                            vector=np.asarray(vector, dtype=np.float32).tobytes(),
                        )
                    )
            except IntegrityError:
                pass  # another worker stored the same embedding first
        log.info("embedded %d reference(s) for model %s", len(missing), embedder.version)
    return ReferenceSet(
        ids=[r.id for r in references],
        labels=[r.label for r in references],
        kinds=[r.kind for r in references],
        vectors=np.stack([cached[r.id] for r in references]).astype(np.float32),
        model_version=embedder.version,
    )


class ReferenceCache:
    """The active references of one embedder, reloaded when the library changes."""

    def __init__(self, embedder: EmbedderLike, store: BlobStore) -> None:
        self.embedder = embedder
        self.store = store
        self._signature: tuple[Any, ...] | None = None
        self._references: ReferenceSet | None = None

    def get(self, session: Session) -> ReferenceSet:
        signature = library_signature(session)
        if self._references is None or signature != self._signature:
            self._references = load_reference_set(session, self.embedder, self.store)
            self._signature = signature
        return self._references

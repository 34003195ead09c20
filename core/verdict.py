"""The verdict rule: nearest active reference within the threshold decides.

A ``defect`` reference within the threshold flags the image with its label; an
``ok`` reference within it passes the image; with no reference that close the
image is flagged as ``unknown``. Pure numpy, shared by the worker and the admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.tables import UNKNOWN_LABEL
from core.thresholds import GLOBAL, Thresholds


@dataclass(frozen=True)
class ReferenceSet:
    """The active references' embeddings under one model version."""

    ids: list[int]
    labels: list[str]
    kinds: list[str]
    vectors: np.ndarray  # (M, D) float32
    model_version: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, dim: int = 0, model_version: str = "") -> ReferenceSet:
        return cls([], [], [], np.empty((0, dim), dtype=np.float32), model_version)


@dataclass(frozen=True)
class Verdict:
    status: str  # "passed" or "flagged"
    label: str
    dissimilarity: float | None
    nearest_reference_id: int | None
    threshold: float
    distances: list[dict[str, Any]] = field(default_factory=list)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of (N, D) ``a`` and (M, D) ``b``: (N, M)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    diff = a[:, None, :] - b[None, :, :]
    return np.sqrt((diff * diff).sum(axis=2))


def as_thresholds(threshold: float | Thresholds) -> Thresholds:
    return threshold if isinstance(threshold, Thresholds) else Thresholds(float(threshold))


def decide(
    distances_to_refs: np.ndarray, references: ReferenceSet, threshold: float | Thresholds
) -> Verdict:
    """The verdict for one image given its distances (M,) to every reference.

    The threshold that applies is the one for the nearest reference's label.
    """
    thresholds = as_thresholds(threshold)
    if len(references) == 0:
        return Verdict("flagged", UNKNOWN_LABEL, None, None, thresholds.for_label(GLOBAL), [])
    order = np.argsort(distances_to_refs, kind="stable")
    table = [
        {
            "reference_id": references.ids[i],
            "label": references.labels[i],
            "kind": references.kinds[i],
            "distance": round(float(distances_to_refs[i]), 6),
        }
        for i in order
    ]
    nearest = int(order[0])
    distance = float(distances_to_refs[nearest])
    ref_id = references.ids[nearest]
    threshold = thresholds.for_label(references.labels[nearest])
    if distance > threshold:
        return Verdict("flagged", UNKNOWN_LABEL, distance, ref_id, threshold, table)
    if references.kinds[nearest] == "ok":
        return Verdict("passed", references.labels[nearest], distance, ref_id, threshold, table)
    return Verdict("flagged", references.labels[nearest], distance, ref_id, threshold, table)


def decide_batch(
    embeddings: np.ndarray, references: ReferenceSet, threshold: float | Thresholds
) -> Sequence[Verdict]:
    """Verdicts for (N, D) embeddings against the same references, in one matrix op."""
    if len(references) == 0:
        return [decide(np.empty(0), references, threshold) for _ in range(len(embeddings))]
    matrix = pairwise_distances(embeddings, references.vectors)
    return [decide(row, references, threshold) for row in matrix]

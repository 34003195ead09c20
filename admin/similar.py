"""The inspections already confirmed by a supervisor that look most like a given one.

Similarity is the Euclidean distance between the codes the naming network gave
the images (for a frame: its top finding's crop), kept in ``inspections.embedding``.
The work per page is bounded: one query reads the codes of at most
``SEARCH_LIMIT`` confirmed rows, the newest, and numpy compares them with the
inspection's code; older confirmed rows are not searched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.review_queue import findings_of
from core.results import embedding_vector
from core.tables import Finding, Inspection
from core.verdict import pairwise_distances

#: the review states that say a supervisor agreed with (or corrected) the label
CONFIRMED_STATES = ("confirmed", "relabeled")
#: how many of the newest confirmed rows are compared (at 128 float32s a code,
#: about 2.5 MB read per detail page)
SEARCH_LIMIT = 5000


@dataclass(frozen=True)
class SimilarInspection:
    inspection: Inspection
    distance: float
    # a frame's code is its top finding's crop: that crop is what to show
    top_finding: Finding | None = None

    @property
    def reviewed_label(self) -> str | None:
        """The label as reviewed: the supervisor's where relabeled, else the verdict's."""
        return self.inspection.review_label or self.inspection.label


def similar_confirmed(
    db: Session, inspection: Inspection, limit: int = 6, search_limit: int = SEARCH_LIMIT
) -> list[SimilarInspection]:
    """The ``limit`` confirmed or relabeled inspections of the same model version
    nearest to ``inspection``, nearest first; empty when it has no code."""
    if inspection.embedding is None or inspection.model_version is None or limit <= 0:
        return []
    code = embedding_vector(inspection.embedding)
    candidates = db.execute(
        select(Inspection.id, Inspection.embedding)
        .where(
            Inspection.review_state.in_(CONFIRMED_STATES),
            Inspection.model_version == inspection.model_version,
            Inspection.embedding.is_not(None),
            Inspection.id != inspection.id,
        )
        .order_by(Inspection.id.desc())
        .limit(search_limit)
    ).all()
    # A code of another length came from another naming network: not comparable.
    comparable = [(i, data) for i, data in candidates if len(data) == len(inspection.embedding)]
    if not comparable or code.size == 0:
        return []
    matrix = np.stack([embedding_vector(data) for _, data in comparable])
    distances = pairwise_distances(code[None, :], matrix)[0]
    # nearest first; ties broken by the newer row (the candidates are newest first)
    nearest = np.argsort(distances, kind="stable")[:limit]
    ids = [comparable[i][0] for i in nearest]
    rows = {row.id: row for row in db.scalars(select(Inspection).where(Inspection.id.in_(ids)))}
    findings = findings_of(db, ids)
    return [
        SimilarInspection(rows[row_id], float(distance), next(iter(findings.get(row_id, [])), None))
        for row_id, distance in zip(ids, distances[nearest], strict=True)
        if row_id in rows
    ]

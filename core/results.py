"""Writing inspection results: idempotent by ``job_id`` on every backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.tables import Inspection

#: how ``inspections.embedding`` stores a code: little-endian float32, one after another
EMBEDDING_DTYPE = np.dtype("<f4")


def embedding_bytes(code: np.ndarray) -> bytes:
    """A code of the naming network as ``inspections.embedding`` keeps it."""
    return np.asarray(code, dtype=EMBEDDING_DTYPE).reshape(-1).tobytes()


def embedding_vector(data: bytes) -> np.ndarray:
    """The code kept by :func:`embedding_bytes`, as a float32 vector."""
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float32)


def insert_inspections(session: Session, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert result rows, skipping any whose ``job_id`` already has one.

    A redelivered job (its worker died after committing, before acknowledging)
    thus never makes a second row, and the first result stands. Returns the
    job ids actually inserted, each with its row's id.
    """
    if not rows:
        return {}
    dialect = session.get_bind().dialect.name
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(Inspection).on_conflict_do_nothing(index_elements=["job_id"])
    elif dialect == "sqlite":
        statement = sqlite.insert(Inspection).on_conflict_do_nothing(index_elements=["job_id"])
    else:  # other backends: check first (unique constraint still guards the race)
        existing = set(
            session.scalars(
                select(Inspection.job_id).where(Inspection.job_id.in_([r["job_id"] for r in rows]))
            )
        )
        rows = [r for r in rows if r["job_id"] not in existing]
        if not rows:
            return {}
        statement = insert(Inspection)
    # RETURNING names the rows really inserted (conflicts return nothing), where
    # an executemany rowcount is unreliable across drivers.
    result = session.connection().execute(
        statement.returning(Inspection.job_id, Inspection.id), list(rows)
    )
    return {job_id: row_id for job_id, row_id in result.tuples()}

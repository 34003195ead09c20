"""The outbox: what plant systems are told, written where it happens.

An event is a row of ``events`` written in the same transaction as what it reports
(a flagged inspection, a coil's verdict, a report made), so none is told that did
not happen and none that happened is lost. Delivering it (webhooks, MQTT) is the
dispatcher's work, afterwards (``worker/dispatch.py``). The payloads are documented
in docs/events.md, beside the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.orm import Session

from core.tables import EVENT_KINDS, Delivery, Event, utcnow

#: every payload carries this version; a change that breaks a reader raises it
PAYLOAD_VERSION = 1


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def envelope(kind: str, line: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A payload as every event has it: what happened, on which line, when, and its body."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return {"event": kind, "version": PAYLOAD_VERSION, "line": line, "at": iso(utcnow()), **body}


def emit(
    session: Session, kind: str, line: str, body: Mapping[str, Any], camera: str | None = None
) -> None:
    """Record one event in ``session``'s transaction."""
    emit_many(session, [(kind, camera, envelope(kind, line, body))])


def emit_many(session: Session, events: Sequence[tuple[str, str | None, dict[str, Any]]]) -> None:
    """Record ``(kind, camera, payload)`` events in one statement."""
    if events:
        session.execute(
            insert(Event),
            [
                {"kind": kind, "camera": camera, "payload": payload, "fanned_out": False}
                for kind, camera, payload in events
            ],
        )


def inspection_body(
    row: Mapping[str, Any], inspection_id: int, findings: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The body of an ``inspection.flagged`` event, from the row as a worker stores it."""
    return {
        "inspection_id": inspection_id,
        "job_id": row["job_id"],
        "camera": row["camera"],
        "status": row["status"],
        "label": row["label"],
        "dissimilarity": row["dissimilarity"],
        "model_version": row["model_version"],
        "captured_at": iso(row["captured_at"]),
        "processed_at": iso(row["processed_at"]),
        "coil_id": row.get("coil_id"),
        "frame_index": row.get("frame_index"),
        "position_m": row.get("position_m"),
        "across_m": row.get("across_m"),
        "findings": [
            {
                "label": finding["label"],
                "box": [finding["x"], finding["y"], finding["width"], finding["height"]],
                "area": finding["area"],
                "score": finding["score"],
                "distance": finding["distance"],
            }
            for finding in findings
        ],
    }


def emit_flagged(
    session: Session,
    line: str,
    rows: Sequence[Mapping[str, Any]],
    inserted: Mapping[str, int],
    findings: Mapping[str, Sequence[Mapping[str, Any]]],
) -> int:
    """An ``inspection.flagged`` event for each flagged row just inserted; how many."""
    events = [
        (
            "inspection.flagged",
            row["camera"],
            envelope(
                "inspection.flagged",
                line,
                inspection_body(row, inserted[row["job_id"]], findings.get(row["job_id"], ())),
            ),
        )
        for row in rows
        if row["status"] == "flagged" and row["job_id"] in inserted
    ]
    emit_many(session, events)
    return len(events)


def prune(session: Session, before: datetime) -> int:
    """Delete the events made before ``before`` whose deliveries are all done
    (delivered or failed), with their delivery log; how many events. An event still
    waiting to be fanned out or delivered is kept, however old: nothing is dropped
    untold. Deliveries first, so no backend's foreign-key handling matters."""
    pending = exists().where(Delivery.event_id == Event.id, Delivery.status == "pending")
    done = select(Event.id).where(Event.created_at < before, Event.fanned_out, ~pending)
    ids = list(session.scalars(done.limit(PRUNE_BATCH)))
    if ids:
        session.execute(delete(Delivery).where(Delivery.event_id.in_(ids)))
        session.execute(delete(Event).where(Event.id.in_(ids)))
    return len(ids)


#: at most this many events pruned a tick, so one tick's transaction stays short
PRUNE_BATCH = 5000

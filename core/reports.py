"""Coil and shift reports: what they say, and making one (its PDF and CSV in the
image store, a ``reports`` row, a ``report.ready`` event, in one transaction).

A *coil report* sums up one coil: its frames and length, its verdict and why
(the stored verdict of an ended coil; an open coil's is judged now and marked
provisional), counts by label, and every flagged frame or finding along it. A
*shift report* sums up one shift (``core.shifts``): the frames inspected in it
(by when they were inspected, ``processed_at``), passed, flagged and rejected,
by label and by camera, the coils seen in it with their verdicts, and how far
the review of its flagged frames has got.

Both list one line per finding of a flagged frame (one for a frame flagged
whole, without findings): the CSV holds all of them, the PDF the first
``PDF_MAX_LINES``. The report's ``summary`` (JSON) is a snapshot of its tables,
so the site shows a report as it was made, even after reviews changed since.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.orm import Session

from core.blobs import BlobStore
from core.coil_verdicts import coil_marks, judge_coil
from core.outbox import emit, iso
from core.report_files import render_csv, render_pdf
from core.settings import get_settings
from core.shifts import ShiftClock
from core.tables import REVIEW_STATES, STATUSES, Coil, Finding, Inspection, Report, utcnow


@dataclass(frozen=True)
class Line:
    """One flagged frame's finding (``finding`` is its rank in the frame), or a frame
    flagged whole (``finding`` None)."""

    inspection_id: int
    finding: int | None
    processed_at: datetime
    camera: str
    coil_id: str | None
    frame_index: int | None
    position_m: float | None
    across_m: float | None
    label: str
    score: float | None
    review_state: str
    review_label: str | None


@dataclass
class ReportContent:
    """What a report says, before it is rendered: ``summary`` is JSON-plain (times
    as ISO 8601 UTC), ``lines`` the flagged frames and findings."""

    kind: str
    subject: str
    line: str
    period_start: datetime | None
    period_end: datetime | None
    made_at: datetime
    made_by: str | None
    summary: dict[str, Any]
    lines: list[Line] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.kind.capitalize()} report: {self.subject}"


def flagged_lines(session: Session, where: ColumnElement[bool], along_coil: bool) -> list[Line]:
    """The flagged frames matching ``where``, one line per finding: along the coil
    (position, then frame) or in the order they were inspected."""
    order = (
        [Inspection.position_m.asc().nulls_last(), Inspection.id, Finding.rank]
        if along_coil
        else [Inspection.processed_at, Inspection.id, Finding.rank]
    )
    query = (
        select(
            Inspection.id,
            Finding.rank,
            Inspection.processed_at,
            Inspection.camera,
            Inspection.coil_id,
            Inspection.frame_index,
            Inspection.position_m,
            Inspection.across_m,
            func.coalesce(Finding.label, Inspection.label),
            func.coalesce(Finding.score, Inspection.dissimilarity),
            Inspection.review_state,
            Inspection.review_label,
        )
        .outerjoin(Finding, Finding.inspection_id == Inspection.id)
        .where(Inspection.status == "flagged", where)
        .order_by(*order)
    )
    return [
        Line(
            inspection_id=row[0],
            finding=row[1],
            processed_at=row[2],
            camera=row[3],
            coil_id=row[4],
            frame_index=row[5],
            position_m=row[6],
            across_m=row[7],
            label=row[8] or "unknown",
            score=row[9],
            review_state=row[10],
            review_label=row[11],
        )
        for row in session.execute(query)
    ]


def review_progress(session: Session, where: ColumnElement[bool]) -> dict[str, int]:
    """The flagged frames matching ``where`` by review state (every state present)."""
    counts = dict.fromkeys(REVIEW_STATES, 0)
    query = (
        select(Inspection.review_state, func.count())
        .where(Inspection.status == "flagged", where)
        .group_by(Inspection.review_state)
    )
    for state, count in session.execute(query):
        counts[state] = count
    return counts


def coil_content(
    session: Session, coil_id: str, made_by: str | None, line: str, now: datetime
) -> ReportContent:
    coil = session.get(Coil, coil_id)
    if coil is None:
        raise ValueError(f"no coil {coil_id!r}: give the id of a coil the line has seen frames of")
    if coil.verdict is not None:
        verdict, reasons, provisional = coil.verdict, coil.verdict_reasons or [], False
    else:  # an open coil (or one not judged yet): what its rules say now
        judgement = judge_coil(session, coil_id)
        verdict, reasons, provisional = judgement.verdict, judgement.reasons, True
    on_coil = Inspection.coil_id == coil_id
    lines = flagged_lines(session, on_coil, along_coil=True)
    summary = {
        "line": line,
        "coil_id": coil.coil_id,
        "state": "ended" if coil.ended_at is not None else "open",
        "first_frame_at": iso(coil.first_frame_at),
        "last_frame_at": iso(coil.last_frame_at),
        "ended_at": iso(coil.ended_at),
        "frames": coil.frames,
        "flagged": coil.flagged,
        "length_m": coil.length_m,
        "verdict": verdict,
        "provisional": provisional,
        "reasons": [str(reason.get("text", "")) for reason in reasons],
        "findings": len(lines),
        # as the coil rules count them: after review, false alarms left out
        "by_label": dict(sorted(Counter(m.label for m in coil_marks(session, coil_id)).items())),
        "review": review_progress(session, on_coil),
    }
    return ReportContent(
        kind="coil",
        subject=coil.coil_id,
        line=line,
        period_start=coil.first_frame_at,
        period_end=coil.ended_at or coil.last_frame_at,
        made_at=now,
        made_by=made_by,
        summary=summary,
        lines=lines,
    )


def shift_content(
    session: Session,
    subject: str,
    start: datetime,
    end: datetime,
    made_by: str | None,
    line: str,
    now: datetime,
) -> ReportContent:
    in_shift = and_(Inspection.processed_at >= start, Inspection.processed_at < end)
    statuses = zero_statuses()
    cameras: dict[str, dict[str, Any]] = {}
    query = (
        select(Inspection.camera, Inspection.status, func.count())
        .where(in_shift)
        .group_by(Inspection.camera, Inspection.status)
    )
    for camera, status, count in session.execute(query):
        statuses[status] = statuses.get(status, 0) + count
        row = cameras.setdefault(camera, {"camera": camera, "frames": 0, **zero_statuses()})
        row["frames"] += count
        row[status] = row.get(status, 0) + count
    by_label = {
        label or "unknown": count
        for label, count in session.execute(
            select(Inspection.label, func.count())
            .where(in_shift, Inspection.status == "flagged")
            .group_by(Inspection.label)
            .order_by(Inspection.label)
        )
    }
    lines = flagged_lines(session, in_shift, along_coil=False)
    summary = {
        "line": line,
        "shift": subject,
        "complete": now >= end,
        "frames": sum(statuses.values()),
        **statuses,
        "findings": len(lines),
        "by_label": by_label,
        "by_camera": [cameras[name] for name in sorted(cameras)],
        "coils": coils_in(session, in_shift),
        "review": review_progress(session, in_shift),
    }
    return ReportContent(
        kind="shift",
        subject=subject,
        line=line,
        period_start=start,
        period_end=end,
        made_at=now,
        made_by=made_by,
        summary=summary,
        lines=lines,
    )


def zero_statuses() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


def coils_in(session: Session, where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """The coils with frames matching ``where``: those frames, flagged, and the coil's
    verdict (None while it is open), in the order the coils were first seen."""
    flagged = func.count().filter(Inspection.status == "flagged")
    query = (
        select(
            Inspection.coil_id,
            func.count(),
            flagged,
            func.min(Inspection.processed_at),
            Coil.verdict,
            Coil.ended_at,
        )
        .outerjoin(Coil, Coil.coil_id == Inspection.coil_id)
        .where(where, Inspection.coil_id.is_not(None))
        .group_by(Inspection.coil_id, Coil.verdict, Coil.ended_at)
        .order_by(func.min(Inspection.processed_at), Inspection.coil_id)
    )
    return [
        {
            "coil_id": coil_id,
            "frames": frames,
            "flagged": flagged_count,
            "verdict": verdict,
            "ended": ended_at is not None,
        }
        for coil_id, frames, flagged_count, _first, verdict, ended_at in session.execute(query)
    ]


def had_inspections(session: Session, start: datetime, end: datetime) -> bool:
    """Whether any frame was inspected in [start, end)."""
    in_span = and_(Inspection.processed_at >= start, Inspection.processed_at < end)
    return bool(session.scalar(select(exists().where(in_span))))


def automatic_report_exists(session: Session, kind: str, subject: str) -> bool:
    query = select(Report.id).where(
        Report.kind == kind, Report.subject == subject, Report.made_by.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


# -- making one --------------------------------------------------------------------


def store_report(
    session: Session, store: BlobStore, content: ReportContent, zone: tzinfo
) -> Report:
    """Render ``content`` (PDF and CSV into ``store``), add its row and its
    ``report.ready`` event to ``session``'s transaction."""
    pdf_key, csv_key = store.put_many([render_pdf(content, zone), render_csv(content)])
    report = Report(
        kind=content.kind,
        subject=content.subject,
        period_start=content.period_start,
        period_end=content.period_end,
        made_at=content.made_at,
        made_by=content.made_by,
        pdf_key=pdf_key,
        csv_key=csv_key,
        summary=content.summary,
    )
    session.add(report)
    session.flush()  # its id, for the event
    emit(session, "report.ready", content.line, ready_body(report))
    return report


def ready_body(report: Report) -> dict[str, Any]:
    """The body of a ``report.ready`` event: the report, its headline numbers and
    where the site serves its files."""
    return {
        "report_id": report.id,
        "kind": report.kind,
        "subject": report.subject,
        "period": {"start": iso(report.period_start), "end": iso(report.period_end)},
        "made_by": report.made_by,
        "summary": headline(report.summary),
        "pdf": report_path(report.id, "pdf"),
        "csv": report_path(report.id, "csv"),
    }


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A summary's single values (counts, verdict), without its tables."""
    return {
        key: value
        for key, value in summary.items()
        if value is None or isinstance(value, str | int | float | bool)
    }


def report_path(report_id: int, extension: str | None = None) -> str:
    """Where the site serves a report: ``/reports/<id>`` (printable), ``.pdf``, ``.csv``."""
    return f"/reports/{report_id}" + (f".{extension}" if extension else "")


def make_coil_report(
    session: Session,
    store: BlobStore,
    coil_id: str,
    made_by: str | None = None,
    line: str | None = None,
    *,
    zone: tzinfo | None = None,
    now: datetime | None = None,
) -> Report:
    """The report of coil ``coil_id`` (``made_by`` None: made automatically), in
    ``session``'s transaction (the caller commits). ``ValueError`` for a coil the
    line has not seen."""
    if line is None or zone is None:
        settings = get_settings()
        line = settings.line_name if line is None else line
        zone = ZoneInfo(settings.plant_timezone) if zone is None else zone
    content = coil_content(session, coil_id, made_by, line, now or utcnow())
    return store_report(session, store, content, zone)


def make_shift_report(
    session: Session,
    store: BlobStore,
    shift_start: str | datetime,
    made_by: str | None = None,
    line: str | None = None,
    *,
    clock: ShiftClock | None = None,
    now: datetime | None = None,
) -> Report:
    """The report of a shift, named as ``"YYYY-MM-DD HH:MM"`` (its start, plant time)
    or by an instant in it, in ``session``'s transaction (the caller commits).
    A shift in progress is reported up to now (``summary["complete"]`` false);
    one that has not started is a ``ValueError``."""
    if line is None or clock is None:
        settings = get_settings()
        line = settings.line_name if line is None else line
        clock = ShiftClock.from_settings(settings) if clock is None else clock
    now = now or utcnow()
    if isinstance(shift_start, datetime):
        shift = clock.containing(shift_start)
    else:
        shift = clock.named(shift_start)
    if shift.start > now:
        raise ValueError(f"the shift {shift.subject} has not started yet: nothing to report")
    content = shift_content(
        session, shift.subject, shift.start, shift.end, made_by, line, now.astimezone(UTC)
    )
    return store_report(session, store, content, clock.zone)

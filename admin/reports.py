"""Reports: the list of coil and shift reports, made on demand here and by the
workers at each coil's and shift's end (``worker/schedule.py``); each one's PDF,
CSV and printable page.

A report is a snapshot: its page shows the ``summary`` and CSV stored when it was
made, not today's numbers. Any user may make one; it is recorded as theirs.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, time
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import select

from admin.db import get_db, get_or_404, get_store
from admin.id_pages import newest_first, page_of
from admin.timezone import plant_zone
from core.report_files import PDF_MAX_LINES
from core.reports import make_coil_report, make_shift_report
from core.settings import get_settings
from core.shifts import ShiftClock
from core.tables import MAX_LABEL_LENGTH, Report, utcnow

bp = Blueprint("reports", __name__)
#: what a download's file name keeps of a subject (coil ids are anyone's text)
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def shift_clock() -> ShiftClock:
    return ShiftClock(get_settings().shift_starts, plant_zone())


@bp.route("/reports")
def reports() -> Any:
    query = newest_first(select(Report), Report.id)
    rows, older = page_of(get_db().scalars(query).all(), lambda row: row.id)
    clock = shift_clock()
    current = clock.containing(utcnow())
    return render_template(
        "reports.html",
        rows=rows,
        older=older,
        starts=[start.strftime("%H:%M") for start in clock.starts],
        current=current,
    )


@bp.post("/reports/coil")
def make_coil() -> Any:
    coil_id = request.form.get("coil_id", "").strip()
    if not coil_id or len(coil_id) > MAX_LABEL_LENGTH:
        flash(f"Give the id of a coil (at most {MAX_LABEL_LENGTH} characters).", "error")
        return redirect(url_for("reports.reports"))
    db = get_db()
    try:
        report = make_coil_report(
            db,
            get_store(),
            coil_id,
            current_user.username,
            get_settings().line_name,
            zone=plant_zone(),
        )
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("reports.reports"))
    db.commit()
    return made(report)


@bp.post("/reports/shift")
def make_shift() -> Any:
    clock = shift_clock()
    try:
        day = date.fromisoformat(request.form.get("day", "").strip())
        start = time.fromisoformat(request.form.get("start", "").strip())
    except ValueError:
        flash("Give the shift's date (YYYY-MM-DD) and choose its start.", "error")
        return redirect(url_for("reports.reports"))
    db = get_db()
    try:
        shift = clock.starting(day, start)
        report = make_shift_report(
            db,
            get_store(),
            shift.subject,
            current_user.username,
            get_settings().line_name,
            clock=clock,
        )
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("reports.reports"))
    db.commit()
    return made(report)


def made(report: Report) -> Any:
    flash(f"Report {report.id} made: {report.kind} {report.subject}.", "info")
    return redirect(url_for("reports.reports", _anchor=f"report-{report.id}"))


def download_name(report: Report, extension: str) -> str:
    subject = UNSAFE_IN_NAME.sub("-", report.subject).strip("-") or "report"
    return f"{report.kind}-{subject}-report-{report.id}.{extension}"


def stored(key: str) -> bytes:
    try:
        return get_store().get(key)
    except (OSError, ValueError):
        abort(404, "this report's file is missing from the image store (BLOB_DIR)")


def download(report_id: int, extension: str, mimetype: str) -> Any:
    """The report's stored file (``pdf`` or ``csv``), as a named attachment."""
    report = get_or_404(Report, report_id)
    key = report.pdf_key if extension == "pdf" else report.csv_key
    return send_file(
        io.BytesIO(stored(key)),
        mimetype=mimetype,
        as_attachment=True,
        download_name=download_name(report, extension),
    )


@bp.route("/reports/<int:report_id>.pdf")
def pdf(report_id: int) -> Any:
    return download(report_id, "pdf", "application/pdf")


@bp.route("/reports/<int:report_id>.csv")
def csv_file(report_id: int) -> Any:
    return download(report_id, "csv", "text/csv")


@bp.route("/reports/<int:report_id>")
def printable(report_id: int) -> Any:
    report = get_or_404(Report, report_id)
    lines = csv_lines(stored(report.csv_key))
    return render_template(
        "report.html",
        report=report,
        s=report.summary,
        lines=lines[:PDF_MAX_LINES],
        total_lines=len(lines),
        number=number,
    )


def csv_lines(data: bytes) -> list[dict[str, Any]]:
    """The report's CSV rows, with ``processed_at`` as a time for the page."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    for row in rows:
        row["processed_at"] = parse_time(row.get("processed_at"))
    return rows


def number(text: str | None, digits: int = 2) -> str:
    """A CSV cell's number as the page shows it ("–" when empty)."""
    try:
        return f"{float(text):.{digits}f}" if text else "–"
    except ValueError:
        return "–"


def parse_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None

"""The flagged-defects queue, the inspection detail page and the review actions."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin.auth import safe_next
from admin.db import get_db, get_or_404
from admin.review_queue import (
    SORTS,
    QueueFilter,
    bounded_count,
    distinct_values,
    fetch_page,
    findings_of,
    next_pending,
)
from core.db import get_sessionmaker
from core.tables import (
    REVIEW_STATES,
    STATUSES,
    UNKNOWN_LABEL,
    Finding,
    Inspection,
    Reference,
    check_name,
    utcnow,
)

bp = Blueprint("inspections", __name__)
REVIEW_ACTIONS = {"confirm": "confirmed", "false_alarm": "false_alarm", "relabel": "relabeled"}
CSV_LIMIT = 100_000
#: the box the detail page shows a frame in (CSS pixels; narrower screens shrink it),
#: and how much a small image may be enlarged to fill it
FRAME_BOX = (1000, 480)
FRAME_MAX_SCALE = 1.5
#: the box a queue thumbnail is shown in
THUMB_BOX = (96, 72)


@bp.app_template_global()
def box_percent(finding: Finding, width: int, height: int) -> dict[str, str]:
    """A finding's box in percent of its frame, so that it follows the frame at any
    displayed size."""
    return {
        "x": f"{100 * finding.x / width:.3f}%",
        "y": f"{100 * finding.y / height:.3f}%",
        "width": f"{100 * finding.width / width:.3f}%",
        "height": f"{100 * finding.height / height:.3f}%",
        "top": f"{100 * finding.y / height:.3f}",
    }


@bp.route("/")
def index() -> Any:
    return redirect(url_for("inspections.queue"))


@bp.route("/flagged")
def flagged() -> Any:
    """The original address of the queue."""
    args: dict[str, Any] = request.args.to_dict()
    return redirect(url_for("inspections.queue", **args))


@bp.route("/inspections")
def queue() -> Any:
    db = get_db()
    f = QueueFilter.from_args(request.args)
    rows, next_cursor = fetch_page(
        db, f, request.args.get("after"), current_app.config["PAGE_SIZE"]
    )
    total, more = bounded_count(db, f)
    return render_template(
        "queue.html",
        rows=rows,
        findings=findings_of(db, [row.id for row in rows]),
        thumb_box=THUMB_BOX,
        f=f,
        next_cursor=next_cursor,
        total=total,
        more=more,
        first_page=not request.args.get("after"),
        sorts=SORTS,
        statuses=STATUSES,
        review_states=REVIEW_STATES,
        cameras=distinct_values(db, Inspection.camera),
        labels=label_choices(db),
    )


def label_choices(db: Any) -> list[str]:
    labels = set(distinct_values(db, Inspection.label))
    labels |= set(db.scalars(select(Reference.label).distinct()))
    return sorted(labels)


ROW_COLUMNS = [
    "id",
    "job_id",
    "camera",
    "status",
    "label",
    "dissimilarity",
    "threshold",
    "model_version",
    "captured_at",
    "processed_at",
    "review_state",
    "review_label",
    "reviewed_by",
    "reviewed_at",
    "review_comment",
    "error",
]
#: then each finding as ``label x,y,w,h score``, joined by "; "
CSV_COLUMNS = [*ROW_COLUMNS, "findings"]
# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...),
# +cmd|...): such text cells get a leading apostrophe, which shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@bp.route("/inspections.csv")
def export_csv() -> Any:
    """The filtered queue as CSV (at most CSV_LIMIT rows), streamed.

    The generator runs after the request's teardown has closed the request's
    session, so it opens a session of its own and closes it when it ends, or
    when the client goes away (the server closes the generator then).
    """
    f = QueueFilter.from_args(request.args)
    make_session = get_sessionmaker(current_app.config["DATABASE_URL"])

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        after, sent = None, 0
        with make_session() as db:
            while sent < CSV_LIMIT:
                rows, after = fetch_page(db, f, after, 1000)
                findings = findings_of(db, [row.id for row in rows])
                for row in rows:
                    cells = [csv_cell(getattr(row, c)) for c in ROW_COLUMNS]
                    cells.append(csv_cell(findings_text(findings.get(row.id, []))))
                    writer.writerow(cells)
                sent += len(rows)
                db.rollback()  # no transaction held open while the client reads
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if after is None:
                    break

    headers = {"Content-Disposition": "attachment; filename=inspections.csv"}
    return Response(generate(), mimetype="text/csv", headers=headers)


def findings_text(findings: list[Finding]) -> str:
    """Findings as one CSV cell: ``label x,y,w,h score`` each, joined by "; "."""
    return "; ".join(f"{f.label} {f.x},{f.y},{f.width},{f.height} {f.score:.4f}" for f in findings)


def csv_cell(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


@bp.route("/inspections/<int:inspection_id>")
def detail(inspection_id: int) -> Any:
    db = get_db()
    inspection = get_or_404(Inspection, inspection_id)
    nearest = (
        db.get(Reference, inspection.nearest_reference_id)
        if inspection.nearest_reference_id
        else None
    )
    findings = db.scalars(
        select(Finding)
        .where(Finding.inspection_id == inspection.id)
        .order_by(Finding.rank)
        .options(selectinload(Finding.reference))
    ).all()
    following = next_pending(db, inspection)
    labels = label_choices(db)
    distances = inspection.distances or []
    chart_items = [
        (f"#{d['reference_id']} {d['label']} ({d['kind']})", d["distance"]) for d in distances
    ]
    return render_template(
        "detail.html",
        inspection=inspection,
        nearest=nearest,
        distances=distances,
        chart_items=chart_items,
        following=following,
        labels=labels,
        findings=findings,
        reference_labels=[label for label in labels if label != UNKNOWN_LABEL],
        frame_box=FRAME_BOX,
        frame_max_scale=FRAME_MAX_SCALE,
    )


def apply_review(
    inspection: Inspection, action: str, label: str, comment: str, reviewer: str | None = None
) -> None:
    """Record a review (who and when, always): the logged-in user unless ``reviewer``."""
    if action not in REVIEW_ACTIONS and action != "comment":
        raise ValueError(f"unknown review action {action!r}")
    if action == "relabel" and not label.strip():
        raise ValueError("choose the label the image should have")
    if action != "comment":
        inspection.review_state = REVIEW_ACTIONS[action]
        relabeled = check_name(label, "the label") if action == "relabel" else None
        inspection.review_label = relabeled or inspection.label
    if comment.strip():
        inspection.review_comment = comment.strip()[:2000].replace("\0", "")
    inspection.reviewed_by = (reviewer or current_user.username)[:80]
    inspection.reviewed_at = utcnow()


@bp.route("/inspections/<int:inspection_id>/review", methods=["POST"])
def review(inspection_id: int) -> Any:
    db = get_db()
    inspection = get_or_404(Inspection, inspection_id)
    action = request.form.get("action", "")
    try:
        apply_review(
            inspection, action, request.form.get("label", ""), request.form.get("comment", "")
        )
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("inspections.detail", inspection_id=inspection_id))
    following = next_pending(db, inspection)
    db.commit()
    flash(f"Inspection {inspection_id}: {inspection.review_state.replace('_', ' ')}.", "info")
    if request.form.get("then") == "queue":
        return redirect(safe_next(request.form.get("back")))
    if request.form.get("then") == "next" and following is not None:
        return redirect(url_for("inspections.detail", inspection_id=following.id))
    return redirect(url_for("inspections.detail", inspection_id=inspection_id))


@bp.route("/inspections/bulk", methods=["POST"])
def bulk_review() -> Any:
    """Confirm (or mark as false alarms) every selected inspection at once."""
    db = get_db()
    action = request.form.get("action", "confirm")
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    if action not in ("confirm", "false_alarm") or not ids:
        flash("Select inspections first, then confirm them or mark them as false alarms.", "error")
    else:
        rows = db.scalars(select(Inspection).where(Inspection.id.in_(ids))).all()
        for row in rows:
            apply_review(row, action, "", "")
        db.commit()
        flash(f"{len(rows)} inspection(s) {REVIEW_ACTIONS[action].replace('_', ' ')}.", "info")
    return redirect(safe_next(request.form.get("back")))

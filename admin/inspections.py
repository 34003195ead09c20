"""The flagged-defects queue, the inspection detail page and the review actions."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BuildError

from admin.auth import safe_next
from admin.coils import coil_badges
from admin.db import get_db, get_or_404
from admin.errors import is_fetch
from admin.labels import filter_labels
from admin.review_queue import (
    SORTS,
    QueueFilter,
    bounded_count,
    distinct_values,
    fetch_page,
    findings_of,
    neighbours,
    next_pending,
    page_start,
)
from admin.reviews import (
    REVIEW_ACTIONS,
    NothingToUndo,
    apply_review,
    commit_once,
    event_view,
    history,
    new_request_id,
    review_result,
    undo_last,
)
from admin.similar import similar_confirmed
from core.db import get_sessionmaker
from core.tables import (
    REVIEW_STATES,
    STATUSES,
    UNKNOWN_LABEL,
    Finding,
    Inspection,
    Reference,
)

bp = Blueprint("inspections", __name__)
bp.add_app_template_global(new_request_id)
CSV_LIMIT = 100_000
#: the box a queue thumbnail is shown in, and a gallery's (at most 2x enlarged)
THUMB_BOX = (96, 72)
GALLERY_BOX = (340, 260)


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


@bp.app_template_global()
def coil_url(coil_id: str | None) -> str | None:
    """The page of the coil, where the site has one (the coil view); None otherwise,
    so that pages show the coil's id without a link to nowhere."""
    if not coil_id or "coils.coil" not in current_app.view_functions:
        return None
    try:
        return url_for("coils.coil", coil_id=coil_id)
    except BuildError:  # the page takes its coil by another name
        return "/coils/" + quote(coil_id, safe="")


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
    carried = queue_args(f, request.args)
    gallery = carried.get("view") == "gallery"
    return render_template(
        "queue.html",
        rows=rows,
        findings=findings_of(db, [row.id for row in rows]),
        thumb_box=GALLERY_BOX if gallery else THUMB_BOX,
        gallery=gallery,
        carried=carried,
        # the pages' links keep the view; the toggle swaps it
        page_args={**f.as_args(), **({"view": "gallery"} if gallery else {})},
        toggle_args={**f.as_args(), **({} if gallery else {"view": "gallery"})},
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
        coil_badges=coil_badges(db, rows),
    )


def queue_args(f: QueueFilter, args: Any) -> dict[str, Any]:
    """The queue's filter, page and view as query arguments: detail pages carry them,
    so that next and previous follow the queue and "back" returns to its place."""
    place = {k: str(args[k]) for k in ("after", "view") if args.get(k)}
    if place.get("view") != "gallery":
        place.pop("view", None)
    return {**f.as_args(), **place}


def queue_of(query: str) -> tuple[QueueFilter, dict[str, Any]]:
    """The queue filter and arguments a review form carries as a query string."""
    args = MultiDict(parse_qsl(query[:2000]))
    f = QueueFilter.from_args(args)
    return f, queue_args(f, args)


def label_choices(db: Any) -> list[str]:
    """The queue's label filter and the relabel list: the active labels (admin.labels)."""
    return filter_labels(db)


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
#: traceability: the coil and the frame's place on it (empty when the job had none)
TRACE_COLUMNS = ["coil_id", "frame_index", "position_m", "across_m"]
#: then each finding as ``label x,y,w,h score``, joined by "; ", then the trace (last,
#: so that the columns before keep their places for readers that count them)
CSV_COLUMNS = [*ROW_COLUMNS, "findings", *TRACE_COLUMNS]
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
                    cells.extend(csv_cell(getattr(row, c)) for c in TRACE_COLUMNS)
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
    f = QueueFilter.from_args(request.args)
    carried = queue_args(f, request.args)
    previous, following = neighbours(db, f, inspection)
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
        previous=previous,
        following=following,
        carried=carried,
        queue_query=urlencode(carried),
        back_url=back_to_queue(f, carried, inspection),
        events=[event_view(e) for e in history(db, inspection.id)],
        labels=labels,
        findings=findings,
        reference_labels=[label for label in labels if label != UNKNOWN_LABEL],
        similar=similar_confirmed(db, inspection),
    )


def back_to_queue(f: QueueFilter, carried: dict[str, Any], inspection: Inspection) -> str:
    """The queue page that holds the inspection's place, the inspection highlighted."""
    size = current_app.config["PAGE_SIZE"]
    after = page_start(get_db(), f, inspection, carried.get("after"), size)
    args = (
        {**carried, "after": after} if after else {k: v for k, v in carried.items() if k != "after"}
    )
    return url_for("inspections.queue", **args, focus=inspection.id, _anchor=f"row-{inspection.id}")


def refused(message: str, status: int, back: str) -> Any:
    get_db().rollback()
    if is_fetch():
        return jsonify({"error": message}), status
    flash(message, "error")
    return redirect(back)


@bp.route("/inspections/<int:inspection_id>/review", methods=["POST"])
def review(inspection_id: int) -> Any:
    """Record a review. ``then=next``: go on to (or, for a script, name) the next item
    awaiting review in the queue the form carries (``queue``: its query string); a
    comment stays on the item. A script gets the review's result as JSON."""
    db = get_db()
    inspection = get_or_404(Inspection, inspection_id)
    form = request.form
    action = form.get("action", "")
    f, carried = queue_of(form.get("queue", ""))
    here = url_for("inspections.detail", inspection_id=inspection_id, **carried)
    try:
        recorded = commit_once(
            db,
            lambda: apply_review(
                db,
                inspection,
                action,
                form.get("label", ""),
                form.get("comment", ""),
                request_id=form.get("request_id"),
            ),
        )
    except ValueError as exc:
        return refused(str(exc), 400, here)
    moves_on = form.get("then") == "next" and action != "comment"
    following = next_pending(db, f, inspection) if moves_on else None
    next_url = (
        url_for("inspections.detail", inspection_id=following.id, **carried) if following else None
    )
    if is_fetch():
        return jsonify({**review_result(inspection, recorded), "next_url": next_url})
    flash(f"Inspection {inspection_id}: {recorded.event.state_after.replace('_', ' ')}.", "info")
    return redirect(next_url or here)


@bp.route("/inspections/<int:inspection_id>/undo", methods=["POST"])
def undo(inspection_id: int) -> Any:
    """Undo the inspection's last review not yet undone (``event_id``: only if that
    one is still the last)."""
    db = get_db()
    inspection = get_or_404(Inspection, inspection_id)
    form = request.form
    _, carried = queue_of(form.get("queue", ""))
    here = url_for("inspections.detail", inspection_id=inspection_id, **carried)
    expected = form.get("event_id", "")
    try:
        recorded = commit_once(
            db,
            lambda: undo_last(
                db,
                inspection,
                request_id=form.get("request_id"),
                expected_event_id=int(expected) if expected.isdigit() else None,
            ),
        )
    except NothingToUndo as exc:
        return refused(str(exc).capitalize() + ".", 409, here)
    except ValueError as exc:
        return refused(str(exc), 400, here)
    if is_fetch():
        return jsonify(review_result(inspection, recorded))
    flash(
        f"Inspection {inspection_id}: undone, {inspection.review_state.replace('_', ' ')} again.",
        "info",
    )
    return redirect(here)


@bp.route("/inspections/bulk", methods=["POST"])
def bulk_review() -> Any:
    """Confirm (or mark as false alarms) every selected inspection at once; each gets
    its own history event (``request_id``: each row's is it plus ".<id>")."""
    db = get_db()
    action = request.form.get("action", "confirm")
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit() and len(i) < 10]
    back = safe_next(request.form.get("back"))
    if action not in ("confirm", "false_alarm") or not ids:
        message = "Select inspections first, then confirm them or mark them as false alarms."
        return refused(message, 400, back)
    request_id = request.form.get("request_id") or ""

    def review_all() -> list[dict[str, Any]]:
        rows = db.scalars(
            select(Inspection).where(Inspection.id.in_(ids)).order_by(Inspection.id)
        ).all()
        return [
            review_result(
                row,
                apply_review(
                    db,
                    row,
                    action,
                    "",
                    "",
                    request_id=f"{request_id}.{row.id}" if request_id else None,
                ),
            )
            for row in rows
        ]

    try:
        results = commit_once(db, review_all)
    except ValueError as exc:
        return refused(str(exc), 400, back)
    message = f"{len(results)} inspection(s) {REVIEW_ACTIONS[action].replace('_', ' ')}."
    if is_fetch():
        return jsonify({"results": results, "message": message})
    flash(message, "info")
    return redirect(back)

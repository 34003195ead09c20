"""The JSON API for plant systems: ``/api/v1/``, with bearer-token authentication.

Tokens are made by admins (the Users page, or ``flask --app admin create-token``)
and stored as hashes. Token requests need no CSRF token: browsers never attach
a bearer token on their own.

Every request and response body is a model in ``admin.api_schemas``;
``api_spec.validate`` checks each request against its model before the handler
runs (after the token check) and documents the operation in ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, url_for
from flask_login import current_user
from kombu.exceptions import OperationalError as KombuOperationalError
from pydantic import ValidationError
from redis import RedisError
from spectree import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from admin import api_schemas as schemas
from admin.db import get_celery_client, get_db
from admin.openapi import api_spec, describe, errors, openapi_document
from admin.review_queue import QueueFilter, fetch_page
from admin.reviews import apply_review
from admin.tokens import refuse_token
from core.jobs import (
    TRACE_FIELDS,
    InspectJob,
    JobInvalid,
    Trace,
    check_coil_id,
    parse_timestamp,
    send_job,
)
from core.settings import get_settings
from core.tables import Coil, Finding, Inspection, utcnow

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 500


def error(status: int, message: str) -> Any:
    response = jsonify(schemas.Error(error=message).model_dump())
    response.status_code = status
    return response


# The scope each endpoint needs; an endpoint missing here is refused to every token.
ENDPOINT_SCOPES = {
    "api.list_inspections": "read",
    "api.get_inspection": "read",
    "api.review_inspection": "review",
    "api.submit_job": "submit",
    "api.end_coil": "submit",
}


def authenticate() -> Any:
    """Every API request: a valid bearer token with the endpoint's scope (the spec:
    any token, or a session)."""
    if request.endpoint == "api.spec":
        if current_user.is_authenticated:
            return None
        scope = None
    else:
        scope = ENDPOINT_SCOPES.get(request.endpoint or "", "an unknown endpoint")
    refusal = refuse_token(get_db(), request.headers.get("Authorization", ""), scope)
    return error(*refusal) if refusal else None


bp.before_request(authenticate)


def refuse_bad_upload() -> Any:
    """A multipart job that does not fit ``JobUpload``, refused before SpecTree sees it:
    SpecTree's own refusal echoes the form, uploaded file included, which JSON cannot
    hold, and the client got a 500 instead of what was wrong (a missing camera)."""
    if request.endpoint != "api.submit_job" or not request.files:
        return None
    try:
        schemas.JobUpload.model_validate({**request.form.to_dict(), **request.files.to_dict()})
    except ValidationError as exc:
        return error(400, describe(exc))
    return None


bp.before_request(refuse_bad_upload)


def parsed(part: str) -> Any:
    """The request's ``query``, ``json`` or ``form`` as its model (None when the
    request had no such part), as ``api_spec.validate`` parsed it."""
    return getattr(request.context, part)  # type: ignore[attr-defined]


def findings_of(db: Session, rows: Sequence[Inspection]) -> dict[int, list[schemas.Finding]]:
    """The findings of ``rows`` by inspection id, most anomalous first: one query for a
    page (none when no row is a frame judged by findings)."""
    ids = [row.id for row in rows if row.anomaly_key is not None]
    found: dict[int, list[schemas.Finding]] = {}
    if not ids:
        return found
    for finding in db.scalars(
        select(Finding)
        .where(Finding.inspection_id.in_(ids))
        .order_by(Finding.inspection_id, Finding.rank)
    ):
        found.setdefault(finding.inspection_id, []).append(
            schemas.Finding(
                rank=finding.rank,
                x=finding.x,
                y=finding.y,
                width=finding.width,
                height=finding.height,
                area=finding.area,
                score=finding.score,
                label=finding.label,
                reference_id=finding.reference_id,
                distance=finding.distance,
            )
        )
    return found


def as_bodies(db: Session, rows: Sequence[Inspection]) -> list[schemas.Inspection]:
    findings = findings_of(db, rows)
    return [as_body(row, findings.get(row.id, [])) for row in rows]


def as_body(row: Inspection, findings: list[schemas.Finding]) -> schemas.Inspection:
    return schemas.Inspection(
        id=row.id,
        job_id=row.job_id,
        camera=row.camera,
        status=row.status,
        label=row.label,
        dissimilarity=row.dissimilarity,
        threshold=row.threshold,
        nearest_reference_id=row.nearest_reference_id,
        distances=row.distances or [],
        model_version=row.model_version,
        error=row.error,
        meta=row.meta or {},
        coil_id=row.coil_id,
        frame_index=row.frame_index,
        position_m=row.position_m,
        across_m=row.across_m,
        captured_at=row.captured_at,
        received_at=row.received_at,
        processed_at=row.processed_at,
        image_url=url_for("images.full", key=row.image_key) if row.image_key else None,
        findings=findings,
        anomaly_map=url_for("images.full", key=row.anomaly_key) if row.anomaly_key else None,
        review=schemas.Review(
            state=row.review_state,
            label=row.review_label,
            by=row.reviewed_by,
            at=row.reviewed_at,
            comment=row.review_comment,
        ),
    )


@bp.get("/inspections")
@api_spec.validate(
    query=schemas.InspectionQuery,
    resp=Response(
        HTTP_200=(schemas.InspectionPage, "a page of inspections"), **errors(400, 401, 403)
    ),
)
def list_inspections() -> Any:
    """List inspections, newest first (keyset pages)

    Filters as the supervisors' queue has them; every status unless asked.
    """
    query: schemas.InspectionQuery = parsed("query")
    args = query.model_dump(exclude={"after", "limit", "coil_id"})
    # the API speaks UTC: a time without an offset is UTC, not the plant's clock
    f = QueueFilter.from_args({**args, "coil": query.coil_id}, zone=UTC)
    limit = min(max(query.limit, 1), MAX_LIMIT)
    db = get_db()
    rows, cursor = fetch_page(db, f, query.after or None, limit)
    return schemas.InspectionPage(items=as_bodies(db, rows), next=cursor)


@bp.get("/inspections/<int:inspection_id>")
@api_spec.validate(
    resp=Response(HTTP_200=(schemas.Inspection, "the inspection"), **errors(401, 403, 404))
)
def get_inspection(inspection_id: int) -> Any:
    """One inspection

    Its `image_url`, and a frame's `anomaly_map`, can be fetched with the same token.
    """
    db = get_db()
    row = db.get(Inspection, inspection_id)
    return as_bodies(db, [row])[0] if row else error(404, "no such inspection")


@bp.post("/inspections/<int:inspection_id>/review")
@api_spec.validate(
    json=schemas.ReviewRequest,
    resp=Response(
        HTTP_200=(schemas.Inspection, "the inspection, reviewed"), **errors(400, 401, 403, 404)
    ),
)
def review_inspection(inspection_id: int) -> Any:
    """Review an inspection

    Confirm it, mark a false alarm, relabel it or comment; the review is signed
    `api:<token name>`.
    """
    db = get_db()
    row = db.get(Inspection, inspection_id)
    if row is None:
        return error(404, "no such inspection")
    body: schemas.ReviewRequest = parsed("json")
    try:
        apply_review(
            db,
            row,
            body.action,
            body.label or "",
            body.comment or "",
            # the token signs the review; a reviewer named in the body is noted,
            # never taken as who reviewed (a camera's token could name an admin)
            reviewer=reviewed_by(g.api_client, body.reviewer),
        )
    except ValueError as exc:
        return error(400, str(exc))
    db.commit()
    return as_bodies(db, [row])[0]


def reviewed_by(client: str, named: str | None) -> str:
    """``api:<token name>``, and ``for <name>`` when the body names a person."""
    named = "".join(ch for ch in (named or "") if ch.isprintable()).strip()
    return f"{client} for {named}"[:80] if named else client


@bp.post("/jobs")
@api_spec.validate(
    json=schemas.JobSubmission,
    form=schemas.JobUpload,
    resp=Response(HTTP_202=(schemas.JobQueued, "queued"), **errors(400, 401, 403, 413, 503)),
)
def submit_job() -> Any:
    """Submit an image for inspection

    Multipart with the image as a file, or JSON with it in base64; it is enqueued
    exactly as the producers do.
    """
    upload: schemas.JobUpload | None = parsed("form")
    fields: schemas.JobUpload | schemas.JobSubmission
    if upload is not None:
        data, fields, meta = upload.image.read(), upload, {}
    else:  # SpecTree parses every request that is not a form as JSON
        submission: schemas.JobSubmission = parsed("json")
        try:
            data = base64.b64decode(submission.image_b64, validate=True)
        except (binascii.Error, ValueError):
            return error(400, "image_b64 is not valid base64")
        fields, meta = submission, submission.meta or {}
    settings = get_settings()
    if not data:
        return error(400, "the image is empty")
    if len(data) > settings.max_image_bytes:
        return error(413, f"the image is over the limit of {settings.max_image_bytes} bytes")
    try:
        captured = fields.captured_at
        job = InspectJob.for_image_bytes(
            data,
            fields.camera,
            parse_timestamp(captured, "captured_at") if captured else None,
            {**meta, "source": "http"},
            fields.job_id or None,
            Trace.from_fields({name: getattr(fields, name) for name in TRACE_FIELDS}),
        )
        InspectJob.from_message(job.to_message())  # the same checks the worker makes
        send_job(job, get_celery_client())
    except JobInvalid as exc:
        return error(400, str(exc))
    except (KombuOperationalError, RedisError, OSError):
        return error(503, "the queue is not reachable; retry later")
    return schemas.JobQueued(job_id=job.job_id, status="queued"), 202


@bp.post("/coils/<path:coil_id>/end")
@api_spec.validate(
    resp=Response(
        HTTP_200=(schemas.Coil, "the coil, ended (now, or earlier)"),
        HTTP_404=(schemas.Error, "no frame of this coil has been stored"),
        **errors(401, 403),
    )
)
def end_coil(coil_id: str) -> Any:
    """End a coil now

    For a producer that could not send `coil_end` on the coil's last frame. The coil
    rules then judge it as any ended coil. A coil that has ended stays as it ended
    (calling again changes nothing); frames stored after its end are still counted.
    """
    try:  # an id no job could carry (a NUL, which PostgreSQL text cannot hold) names none
        coil_id = check_coil_id(coil_id) or ""
    except JobInvalid:
        return error(404, "no such coil: that is no coil id a job could carry")
    db = get_db()
    # one statement, so that a worker ending the coil at the same time keeps its time
    db.execute(
        update(Coil)
        .where(Coil.coil_id == coil_id, Coil.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    db.commit()
    row = db.get(Coil, coil_id)
    if row is None:
        return error(404, f"no coil {coil_id[:80]!r}: no frame of it has been stored")
    return coil_body(row)


def coil_body(row: Coil) -> schemas.Coil:
    return schemas.Coil(
        coil_id=row.coil_id,
        frames=row.frames,
        flagged=row.flagged,
        length_m=row.length_m,
        first_frame_at=row.first_frame_at,
        last_frame_at=row.last_frame_at,
        ended_at=row.ended_at,
        verdict=row.verdict if row.verdict in ("ship", "hold") else None,
    )


@bp.get("/openapi.json")
@api_spec.validate(resp=Response(HTTP_200=(None, "this document"), **errors(401)))
def spec() -> Any:
    """This description of the API"""
    # this endpoint itself: any token, or a session (see authenticate)
    return jsonify(openapi_document(current_app, bp.name, {**ENDPOINT_SCOPES, "api.spec": None}))


@bp.errorhandler(404)
def not_found(_exc: Any) -> Any:
    return error(404, "no such API endpoint")

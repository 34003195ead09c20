"""The JSON API for plant systems: ``/api/v1/``, with bearer-token authentication.

Tokens are made by admins (the Users page, or ``flask --app admin create-token``)
and stored as hashes. Token requests need no CSRF token: browsers never attach
a bearer token on their own.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from flask import Blueprint, g, jsonify, request, url_for
from flask_login import current_user
from kombu.exceptions import OperationalError as KombuOperationalError
from redis import RedisError

from admin.db import get_celery_client, get_db
from admin.inspections import REVIEW_ACTIONS, apply_review
from admin.openapi import openapi_spec
from admin.queue import QueueFilter, fetch_page
from admin.tokens import refuse_token
from core.jobs import InspectJob, JobInvalid, parse_timestamp, send_job
from core.settings import get_settings
from core.tables import Inspection

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 500


def error(status: int, message: str) -> Any:
    response = jsonify({"error": message})
    response.status_code = status
    return response


# The scope each endpoint needs; an endpoint missing here is refused to every token.
ENDPOINT_SCOPES = {
    "api.list_inspections": "read",
    "api.get_inspection": "read",
    "api.review_inspection": "review",
    "api.submit_job": "submit",
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


def as_json(row: Inspection) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id,
        "job_id": row.job_id,
        "camera": row.camera,
        "status": row.status,
        "label": row.label,
        "dissimilarity": row.dissimilarity,
        "threshold": row.threshold,
        "nearest_reference_id": row.nearest_reference_id,
        "distances": row.distances or [],
        "model_version": row.model_version,
        "error": row.error,
        "meta": row.meta or {},
        "captured_at": when(row.captured_at),
        "received_at": when(row.received_at),
        "processed_at": when(row.processed_at),
        "image_url": url_for("images.full", key=row.image_key) if row.image_key else None,
        "review": {
            "state": row.review_state,
            "label": row.review_label,
            "by": row.reviewed_by,
            "at": when(row.reviewed_at),
            "comment": row.review_comment,
        },
    }


@bp.get("/inspections")
def list_inspections() -> Any:
    args = dict(request.args)
    args.setdefault("status", "")  # the API lists every status unless asked
    f = QueueFilter.from_args(args)
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), MAX_LIMIT)
    except ValueError:
        return error(400, "limit must be a whole number")
    rows, cursor = fetch_page(get_db(), f, request.args.get("after"), limit)
    return jsonify({"items": [as_json(r) for r in rows], "next": cursor})


@bp.get("/inspections/<int:inspection_id>")
def get_inspection(inspection_id: int) -> Any:
    row = get_db().get(Inspection, inspection_id)
    return jsonify(as_json(row)) if row else error(404, "no such inspection")


@bp.post("/inspections/<int:inspection_id>/review")
def review_inspection(inspection_id: int) -> Any:
    db = get_db()
    row = db.get(Inspection, inspection_id)
    if row is None:
        return error(404, "no such inspection")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, 'send a JSON object: {"action": "confirm"}')
    action = str(body.get("action", ""))
    if action not in (*REVIEW_ACTIONS, "comment"):
        return error(400, f"action must be one of {', '.join([*REVIEW_ACTIONS, 'comment'])}")
    try:
        apply_review(
            row,
            action,
            str(body.get("label") or ""),
            str(body.get("comment") or ""),
            # the token signs the review; a reviewer named in the body is noted,
            # never taken as who reviewed (a camera's token could name an admin)
            reviewer=reviewed_by(g.api_client, body.get("reviewer")),
        )
    except ValueError as exc:
        return error(400, str(exc))
    db.commit()
    return jsonify(as_json(row))


def reviewed_by(client: str, named: Any) -> str:
    """``api:<token name>``, and ``for <name>`` when the body names a person."""
    named = "".join(ch for ch in str(named or "") if ch.isprintable()).strip()
    return f"{client} for {named}"[:80] if named else client


@bp.post("/jobs")
def submit_job() -> Any:
    """Enqueue an image, exactly as the producer does: multipart or JSON."""
    settings = get_settings()
    if request.files:
        upload = request.files.get("image")
        if upload is None:
            return error(400, "send the image in a form field named 'image'")
        data, fields = upload.read(), request.form
    else:
        fields = request.get_json(silent=True)
        if not isinstance(fields, dict) or "image_b64" not in fields:
            return error(400, "send multipart with an 'image' file, or JSON with 'image_b64'")
        try:
            data = base64.b64decode(str(fields["image_b64"]), validate=True)
        except (binascii.Error, ValueError):
            return error(400, "image_b64 is not valid base64")
    if not data:
        return error(400, "the image is empty")
    if len(data) > settings.max_image_bytes:
        return error(413, f"the image is over the limit of {settings.max_image_bytes} bytes")
    meta = fields.get("meta") if isinstance(fields.get("meta"), dict) else {}
    try:
        captured = fields.get("captured_at")
        job = InspectJob.for_image_bytes(
            data,
            str(fields.get("camera", "")),
            parse_timestamp(captured, "captured_at") if captured else None,
            {**meta, "source": "http"},
            fields.get("job_id") or None,
        )
        InspectJob.from_message(job.to_message())  # the same checks the worker makes
        send_job(job, get_celery_client())
    except JobInvalid as exc:
        return error(400, str(exc))
    except (KombuOperationalError, RedisError, OSError):
        return error(503, "the queue is not reachable; retry later")
    return jsonify({"job_id": job.job_id, "status": "queued"}), 202


@bp.get("/openapi.json")
def spec() -> Any:
    return jsonify(openapi_spec())


@bp.errorhandler(404)
def not_found(_exc: Any) -> Any:
    return error(404, "no such API endpoint")

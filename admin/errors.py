"""Error responses: JSON under ``/api/v1`` and ``/metrics``, a page elsewhere; never a
bare "500" for what was only a bad request.

Values the database refuses (a NUL character, a name longer than its column, a
number out of range) are the request's fault: 400, not 500, with the request's
session rolled back. Anything else unexpected is a 500 that says so politely.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify, render_template, request
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request was not understood: a value in it is malformed.",
    403: "Only admins may do that.",
    404: "There is nothing here.",
    405: "That address does not take this kind of request.",
    413: "The upload is larger than the site accepts (MAX_IMAGE_BYTES).",
    429: "Too many requests; wait a little.",
    500: "Something went wrong on our side; the operators can find it in the log.",
}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


def respond(code: int, message: str | None = None) -> Any:
    message = message or MESSAGES.get(code, "The request could not be served.")
    if wants_json():
        return jsonify({"error": message}), code
    return render_template("error.html", code=code, message=message), code


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        # Flask's own descriptions are for developers; ours say what to do.
        code, message = exc.code or 500, None
        if code == 400 and "CSRF" in str(exc.description):
            message = f"The form was not accepted ({exc.description}); reload the page."
        return respond(code, message)

    @app.errorhandler(DataError)
    def refused_value(exc: DataError) -> Any:
        session = g.get("db")
        if session is not None:
            session.rollback()
        log.info("a value the database refused: %s", str(exc.orig)[:200])
        return respond(
            400,
            "A value in the request cannot be stored or searched for (too long, out of "
            "range, or holding characters such as NUL); correct it and try again.",
        )

    @app.errorhandler(OverflowError)
    def out_of_range(_exc: OverflowError) -> Any:
        return respond(400, "A date or number in the request is out of range.")

    @app.errorhandler(InternalServerError)
    def internal_error(_exc: InternalServerError) -> Any:
        return respond(500)

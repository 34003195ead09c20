"""Error responses: JSON under ``/api/v1`` and ``/metrics``, a page elsewhere; never a
bare "500" for what was only a bad request.

Values the database refuses (a NUL character, a name longer than its column, a
number out of range) are the request's fault: 400, not 500, with the request's
session rolled back. Anything else unexpected is a 500 that says so politely.

A form whose CSRF token was refused (the page had been open too long) gets the
"Submit again" page of ``stale_forms.py``, which keeps what was typed; a script's
``fetch`` gets JSON with ``"stale": true``, so that it can fetch a new token
(``GET /csrf-token``) and send again.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException, InternalServerError

from admin.stale_forms import stale_token_page

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


STALE_TOKEN = (
    "The page's form token had expired or is missing, so nothing was saved; "
    "fetch a new one (GET /csrf-token) and send again."
)


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics" or is_fetch()


def is_fetch() -> bool:
    """A request from a page's script (it says so, or prefers JSON to HTML), which
    wants an answer it can read, not a page."""
    if request.headers.get("X-Requested-With", "").lower() in ("fetch", "xmlhttprequest"):
        return True
    accept = request.accept_mimetypes
    return request.is_json or accept["application/json"] > accept["text/html"]


def respond(code: int, message: str | None = None) -> Any:
    message = message or MESSAGES.get(code, "The request could not be served.")
    if wants_json():
        return jsonify({"error": message}), code
    return render_template("error.html", code=code, message=message), code


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        # Flask's own descriptions are for developers; ours say what to do.
        return respond(exc.code or 500)

    @app.errorhandler(CSRFError)
    def stale_form(exc: CSRFError) -> Any:
        if is_fetch():
            return jsonify({"error": STALE_TOKEN, "reason": exc.description, "stale": True}), 400
        if request.endpoint == "auth.login":
            from admin.auth import expired_login_page  # auth imports this module

            return expired_login_page(str(exc.description))
        return stale_token_page(str(exc.description))

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

"""The supervisors' site: ``flask --app admin run``.

An app factory in the style of Flask's tutorial: one blueprint per concern,
``init_app`` helpers for the database session and the CLI commands.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect

from core.settings import get_settings

csrf = CSRFProtect()

# Endpoints reachable without a session: the login page and static files. The
# JSON API authenticates every request itself, with a bearer token.
PUBLIC_ENDPOINTS = {"auth.login", "static"}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    settings = get_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        BLOB_DIR=str(settings.blob_dir),
        MAX_CONTENT_LENGTH=settings.max_image_bytes * 2 + 1024 * 1024,
        # the worker's limits, applied to stored images before they are decoded to serve
        MAX_IMAGE_BYTES=settings.max_image_bytes,
        MAX_IMAGE_PIXELS=settings.max_image_pixels,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        PAGE_SIZE=25,
    )
    if test_config:
        app.config.update(test_config)

    from admin import (
        alarms,
        api,
        auth,
        cli,
        coils,
        compare,
        dashboard,
        db,
        dead_letters,
        errors,
        images,
        inspections,
        live,
        metrics,
        references,
        reports,
        thresholds,
        timezone,
        users,
        webhooks,
    )
    from admin.db import get_db
    from admin.tokens import refuse_token

    db.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    cli.init_app(app)
    metrics.init_app(app)
    timezone.init_app(app)
    for blueprint in (
        auth.bp,
        inspections.bp,
        images.bp,
        references.bp,
        compare.bp,
        dashboard.bp,
        dead_letters.bp,
        thresholds.bp,
        users.bp,
        webhooks.bp,
        live.bp,
        alarms.bp,
        coils.bp,
        reports.bp,
        api.bp,
        metrics.bp,
    ):
        app.register_blueprint(blueprint)

    @app.before_request
    def require_login() -> Any:
        # One guard for every route, so a new page cannot forget its login check.
        if request.blueprint in ("api", "metrics"):
            return None  # bearer tokens, checked by these blueprints themselves
        if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
            return None
        header = request.headers.get("Authorization", "")
        if request.blueprint == "images" and header.startswith("Bearer "):
            # the API's image_url, for a token that may read inspections
            refusal = refuse_token(get_db(), header, "read")
            return (jsonify(error=refusal[1]), refusal[0]) if refusal else None
        # to the login page; a form posted here is carried through it, not lost
        return auth.ask_to_log_in()

    # After the login guard, so an anonymous request is sent to log in first;
    # every state-changing request of a session then needs a CSRF token.
    csrf.init_app(app)
    csrf.exempt(api.bp)
    csrf.exempt(metrics.bp)

    @app.after_request
    def security_headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        )
        return response

    return app

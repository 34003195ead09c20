"""The supervisors' site: ``flask --app admin run``.

An app factory in the style of Flask's tutorial: one blueprint per concern,
``init_app`` helpers for the database session and the CLI commands.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect

from core.settings import get_settings

csrf = CSRFProtect()

# Endpoints reachable without a session: the login page and static files.
PUBLIC_ENDPOINTS = {"auth.login", "static"}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    settings = get_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        BLOB_DIR=str(settings.blob_dir),
        MAX_CONTENT_LENGTH=settings.max_image_bytes * 2 + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.cookie_secure,
        PAGE_SIZE=25,
    )
    if test_config:
        app.config.update(test_config)

    from admin import auth, cli, db, images, inspections

    db.init_app(app)
    auth.init_app(app)
    cli.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(inspections.bp)
    app.register_blueprint(images.bp)

    @app.before_request
    def require_login() -> Any:
        # One guard for every route, so a new page cannot forget its login check.
        if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
            return None
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    # After the login guard, so an anonymous request is sent to log in first;
    # every state-changing request of a session then needs a CSRF token.
    csrf.init_app(app)

    @app.after_request
    def security_headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app

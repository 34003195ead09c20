"""The admin site against a real PostgreSQL database: login, guard, CSRF, CLI commands."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from admin import PUBLIC_ENDPOINTS, create_app
from core.db import session_scope
from core.tables import Reference, User
from tests.conftest import csrf_token, sample_images


@pytest.fixture
def app(settings):
    return create_app(
        {
            "DATABASE_URL": settings.database_url,
            "BLOB_DIR": str(settings.blob_dir),
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": "test-secret",
        }
    )


def test_create_user_command_hashes_the_password(app, settings):
    result = app.test_cli_runner().invoke(
        args=["create-user", "ann", "--role", "admin", "--password", "s3cret-enough"]
    )
    assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as session:
        user = session.scalar(select(User).where(User.username == "ann"))
        assert user.role == "admin" and "s3cret-enough" not in user.password_hash
    again = app.test_cli_runner().invoke(args=["create-user", "ann", "--password", "s3cret-enough"])
    assert again.exit_code != 0 and "exists already" in again.output
    short = app.test_cli_runner().invoke(args=["create-user", "bob", "--password", "short"])
    assert short.exit_code != 0 and "at least 8 characters" in short.output


def test_create_user_prompts_for_the_password(app, settings):
    result = app.test_cli_runner().invoke(
        args=["create-user", "cid"], input="long-password\nlong-password\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output


def test_add_reference_command(app, settings, tmp_path):
    image = sample_images()[-1]
    result = app.test_cli_runner().invoke(
        args=["add-reference", str(image), "--label", "scratches", "--kind", "defect"]
    )
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    refused = app.test_cli_runner().invoke(
        args=["add-reference", str(bad), "--label", "x", "--kind", "ok"]
    )
    assert refused.exit_code != 0 and "not an image" in refused.output
    with session_scope(settings.database_url) as session:
        references = session.scalars(select(Reference)).all()
        assert [(r.label, r.kind, r.active) for r in references] == [("scratches", "defect", True)]


def test_every_route_refuses_anonymous_access(app):
    """Pages send an anonymous visitor to log in; the JSON API answers 401."""
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        path = re.sub(
            r"<(?:int:)?([^>]+)>", lambda m: "1" if "int:" in m.group(0) else "a" * 64, rule.rule
        )
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            checked += 1
            if rule.endpoint.startswith(("api.", "metrics.")):
                assert response.status_code == 401, (method, rule.rule, response.status_code)
                continue
            assert response.status_code == 302, (method, rule.rule, response.status_code)
            assert "/login" in response.headers["Location"], rule.rule
    assert checked > 25


def test_login_needs_csrf_and_the_right_password(app, settings):
    app.test_cli_runner().invoke(args=["create-user", "dee", "--password", "right-password"])
    client = app.test_client()
    no_token = client.post("/login", data={"username": "dee", "password": "right-password"})
    assert no_token.status_code == 400 and b"CSRF" in no_token.data
    wrong = client.post(
        "/login",
        data={"csrf_token": csrf_token(client), "username": "dee", "password": "wrong-password"},
    )
    assert wrong.status_code == 200 and b"Wrong user name or password" in wrong.data
    right = client.post(
        "/login?next=/flagged",
        data={"csrf_token": csrf_token(client), "username": "dee", "password": "right-password"},
    )
    assert right.status_code == 302 and right.headers["Location"].endswith("/flagged")
    assert client.get("/inspections").status_code == 200
    # logging out is a POST with a CSRF token, and ends the session
    assert client.post("/logout").status_code == 400
    token = csrf_token(client, "/inspections")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/inspections").status_code == 302


def test_login_never_redirects_off_site(app):
    app.test_cli_runner().invoke(args=["create-user", "eve", "--password", "right-password"])
    client = app.test_client()
    response = client.post(
        "/login?next=//evil.example/x",
        data={"csrf_token": csrf_token(client), "username": "eve", "password": "right-password"},
    )
    assert response.headers["Location"] == "/inspections"

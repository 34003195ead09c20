"""Users and API tokens (admins only). Deactivating a user and revoking a token ask
first (``admin.confirmation``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from admin.auth import MIN_PASSWORD_LENGTH, create_user, end_sessions
from admin.confirmation import Question, ask, confirmed
from admin.db import get_db, get_or_404
from admin.roles import admin_required
from admin.tokens import new_api_token
from core.tables import ROLES, TOKEN_SCOPES, ApiToken, User

bp = Blueprint("users", __name__, url_prefix="/users")


def render_users_page(db: Any, new_token: str | None = None) -> Any:
    return render_template(
        "users.html",
        users=db.scalars(select(User).order_by(User.username)),
        tokens=db.scalars(select(ApiToken).order_by(ApiToken.id)),
        roles=ROLES,
        scopes=TOKEN_SCOPES,
        new_token=new_token,
        min_length=MIN_PASSWORD_LENGTH,
    )


@bp.route("/")
@admin_required
def users() -> Any:
    return render_users_page(get_db())


@bp.route("/", methods=["POST"])
@admin_required
def add_user() -> Any:
    db = get_db()
    try:
        create_user(
            db,
            request.form.get("username", ""),
            request.form.get("password", ""),
            request.form.get("role", "supervisor"),
        )
        db.commit()
        flash(f"User {request.form.get('username')} created.", "info")
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
    return redirect(url_for("users.users"))


@bp.route("/<int:user_id>", methods=["POST"])
@admin_required
def update_user(user_id: int) -> Any:
    db = get_db()
    user = get_or_404(User, user_id)
    if user.username == current_user.username and request.form.get("active") == "0":
        flash("You cannot deactivate yourself.", "error")
        return redirect(url_for("users.users"))
    if user.active and request.form.get("active") == "0" and not confirmed():
        return ask(
            Question(
                title=f"Deactivate {user.username}?",
                changes=[
                    f"{user.username} ({user.role}) can no longer log in, and pages they "
                    "have open stop working; an admin can activate them again.",
                    *role_change(user, request.form.get("role")),
                ],
                back=url_for("users.users"),
            )
        )
    if (role := request.form.get("role")) in ROLES:
        user.role = role
    if (active := request.form.get("active")) in ("0", "1"):
        user.active = active == "1"
    if password := request.form.get("password"):
        if len(password) < MIN_PASSWORD_LENGTH:
            flash(f"The password needs at least {MIN_PASSWORD_LENGTH} characters.", "error")
            return redirect(url_for("users.users"))
        user.password_hash = generate_password_hash(password)
        end_sessions(user)  # whoever knew the old password is logged out
    if not (user.active and user.role == "admin") and active_admins(db, besides=user) == 0:
        db.rollback()
        flash(f"{user.username} is the last active admin; make another admin first.", "error")
        return redirect(url_for("users.users"))
    db.commit()
    flash(f"User {user.username} updated.", "info")
    return redirect(url_for("users.users"))


def role_change(user: User, role: str | None) -> list[str]:
    if role in ROLES and role != user.role:
        return [f"Their role changes from {user.role} to {role}."]
    return []


def active_admins(db: Any, besides: User) -> int:
    """How many active admins there are other than ``besides``."""
    return db.scalar(
        select(func.count(User.id)).where(
            User.role == "admin", User.active.is_(True), User.id != besides.id
        )
    )


@bp.route("/tokens", methods=["POST"])
@admin_required
def add_token() -> Any:
    db = get_db()
    try:
        token = new_api_token(
            db, request.form.get("name", ""), current_user.username, request.form.getlist("scope")
        )
        db.commit()
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("users.users"))
    return render_users_page(db, new_token=token)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke_token(token_id: int) -> Any:
    db = get_db()
    token = get_or_404(ApiToken, token_id)
    if token.active and not confirmed():
        return ask(
            Question(
                title=f"Revoke the token {token.name}?",
                changes=[
                    f"The token {token.name} ({token.prefix}…, may {token.scopes}) is refused "
                    "from then on: every system that sends it gets 401.",
                    "A revoked token cannot be restored; make a new one instead.",
                ],
                back=url_for("users.users"),
                yes="Yes, revoke it",
            )
        )
    token.active = False
    db.commit()
    flash(f"Token {token.name} ({token.prefix}…) revoked.", "info")
    return redirect(url_for("users.users"))

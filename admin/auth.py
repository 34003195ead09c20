"""Logging in and out; users and their hashed passwords."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask import session as cookie_session
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin.db import get_db
from admin.throttle import clear_failures, minutes_locked, record_failure
from core.tables import ROLES, User

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
MIN_PASSWORD_LENGTH = 8


class SessionUser(UserMixin):
    """What the session knows of a logged-in user."""

    def __init__(self, user: User) -> None:
        self.id = str(user.id)
        self.username = user.username
        self.role = user.role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@login_manager.user_loader
def load_user(user_id: str) -> SessionUser | None:
    user = get_db().get(User, int(user_id)) if user_id.isdigit() else None
    return SessionUser(user) if user is not None and user.active else None


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Add a user with a hashed password (not committed); clear errors on bad input."""
    username = username.strip()
    if not username:
        raise ValueError("the user name is empty")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise ValueError(f"a user named {username!r} exists already")
    user = User(username=username, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    return user


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("Password", validators=[DataRequired()])


def safe_next(target: str | None) -> str:
    """Only same-site paths, so the login page cannot redirect anywhere else."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("inspections.queue")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        db = get_db()
        username, address = form.username.data.strip(), request.remote_addr or "unknown"
        locked = minutes_locked(db, username, address)
        if locked:
            flash(f"Too many failed logins. Try again in {locked} minute(s).", "error")
            return render_template("login.html", form=form), 429
        user = db.scalar(select(User).where(User.username == username))
        if user and user.active and check_password_hash(user.password_hash, form.password.data):
            clear_failures(db, username)
            db.commit()
            cookie_session.clear()  # a fresh session on login: no fixation
            login_user(SessionUser(user))
            return redirect(safe_next(request.args.get("next")))
        record_failure(db, username, address)
        db.commit()
        flash("Wrong user name or password.", "error")
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)

"""Logging in and out; users and their hashed passwords.

A form posted after its session ended is not lost: the login page that answers
it carries its fields (as hidden ``kept-name``/``kept-value`` pairs, so nothing
is stored on the server), and logging in shows them with a "Submit again"
button (``stale_forms.py``) instead of going on to ``next``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie_session
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin.db import get_db
from admin.errors import is_fetch
from admin.stale_forms import (
    dropped_files,
    kept_fields,
    local_path,
    render_resubmit,
    same_origin,
    secret_fields,
)
from admin.throttle import clear_failures, minutes_locked, record_failure
from core.tables import ROLES, User, check_name

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
MIN_PASSWORD_LENGTH = 8


# What a failed login for an unknown user is checked against, so that it takes
# as long as one for a known user (else the time tells which names exist).
DUMMY_HASH = generate_password_hash("not anyone's password")


class SessionUser(UserMixin):
    """What the session knows of a logged-in user.

    The session cookie holds the user's id and session version; raising the
    version (logout, a new password) ends every session made before, even a
    copied cookie, since each request checks it against the database.
    """

    def __init__(self, user: User) -> None:
        self.id = f"{user.id}.{user.session_version}"
        self.user_id = user.id
        self.username = user.username
        self.role = user.role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@login_manager.user_loader
def load_user(session_id: str) -> SessionUser | None:
    user_id, _, version = session_id.partition(".")
    if not (user_id.isdigit() and version.isdigit() and len(session_id) < 40):
        return None  # a cookie from before session versions, or not ours
    if int(user_id) >= 2**31:
        return None  # users.id is a 32-bit integer
    user = get_db().get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return SessionUser(user)


def end_sessions(user: User) -> None:
    """End every session of ``user`` (not committed): their cookies stop working."""
    user.session_version += 1


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Add a user with a hashed password (not committed); clear errors on bad input."""
    username = check_name(username, "the user name")
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


@dataclass
class KeptForm:
    """A form that found no session, carried through the login page."""

    target: str
    fields: list[tuple[str, str]]
    files: list[str]
    secrets: list[str]
    back: str | None

    @classmethod
    def from_login_form(cls) -> KeptForm | None:
        """The form the login page carries, if it carries one."""
        form = request.form
        names, values = form.getlist("kept-name"), form.getlist("kept-value")
        if form.get("kept") != "1" or len(names) != len(values):
            return None
        return cls(
            target=safe_next(request.args.get("next")),
            fields=list(zip(names, values, strict=True)),
            files=form.getlist("kept-file"),
            secrets=form.getlist("kept-secret"),
            back=local_path(form.get("kept-back")),
        )


def login_page(form: LoginForm, kept: KeptForm | None, status: int = 200) -> Any:
    return render_template("login.html", form=form, kept=kept), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    kept = KeptForm.from_login_form() if request.method == "POST" else None
    if form.validate_on_submit():
        db = get_db()
        # control characters (NUL, which PostgreSQL refuses) are in no user name
        username = "".join(ch for ch in form.username.data if ch.isprintable()).strip()
        address = request.remote_addr or "unknown"
        locked = minutes_locked(db, username, address)
        if locked:
            flash(f"Too many failed logins. Try again in {locked} minute(s).", "error")
            return login_page(form, kept, 429)
        user = db.scalar(select(User).where(User.username == username))
        stored_hash = user.password_hash if user is not None else DUMMY_HASH
        password_ok = check_password_hash(stored_hash, form.password.data)
        if user is not None and user.active and password_ok:
            clear_failures(db, username)
            db.commit()
            cookie_session.clear()  # a fresh session on login: no fixation
            login_user(SessionUser(user))
            if kept is not None:
                return resubmit_after_login(kept)
            return redirect(safe_next(request.args.get("next")))
        record_failure(db, username, address)
        db.commit()
        flash("Wrong user name or password.", "error")
    return login_page(form, kept)


def resubmit_after_login(kept: KeptForm) -> Any:
    return render_resubmit(
        target=kept.target,
        fields=kept.fields,
        files=kept.files,
        secrets=kept.secrets,
        back=kept.back,
        offer=True,  # it came from our login form, whose token was checked
        heading="You are logged in again",
        explanation=(
            "Your session had ended before the form below was sent, so nothing was "
            "saved. Press Submit again to send it now."
        ),
    )


def ask_to_log_in() -> Any:
    """The answer to a request that needs a session and has none (the login guard).

    A page is sent to log in; a script gets JSON it can act on; and a form posted
    from one of our pages gets the login page at once, carrying the form's fields.
    """
    if is_fetch():
        return jsonify(
            {"error": "Your session has ended: log in again, then retry.", "stale": True}
        ), 401
    target = request.full_path.rstrip("?")
    if request.method == "POST" and same_origin():
        kept = KeptForm(
            target=target,
            fields=kept_fields(request.form),
            files=dropped_files(request.files),
            secrets=secret_fields(request.form),
            back=local_path(request.referrer),
        )
        flash("Your session had ended. Log in; what you sent is kept for you.", "info")
        return render_template(
            "login.html",
            form=LoginForm(formdata=None),
            kept=kept,
            action=url_for("auth.login", next=target),
        ), 401
    return redirect(url_for("auth.login", next=target))


def expired_login_page(reason: str) -> Any:
    """A login form left open past its token's life: ask again, keeping any form
    it carries (the password is never kept, so it must be typed again anyway)."""
    flash(f"The login page had expired ({reason}); log in again.", "error")
    form = LoginForm(formdata=None, data={"username": request.form.get("username", "")})
    return login_page(form, KeptForm.from_login_form(), 400)


@bp.route("/csrf-token")
def csrf_token() -> Any:
    """A fresh CSRF token for a page's script whose token has expired (the page's
    forms and ``X-CSRFToken`` header then use it)."""
    response = jsonify({"csrf_token": generate_csrf()})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    user = get_db().get(User, current_user.user_id)
    if user is not None:
        end_sessions(user)  # a copy of this cookie must not outlive the logout
        get_db().commit()
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)

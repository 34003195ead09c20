"""Alarm rules (admins) and the alarms they raise on the live pages.

A rule says: raise an alarm when more than ``limit`` inspections were flagged as
``label`` (``*``: any label) within the last ``window_minutes``. What counts is the
label a person would give the row now: a relabel's label wins over the worker's, and
a row marked a false alarm does not count at all, so a supervisor who clears a burst
of false alarms clears its alarm too.

The live pages ask for the active alarms every few seconds (``admin/live.py``), so
the count is one query for every rule together, over the flagged rows of the longest
window (the index on ``(status, processed_at, id)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.db import get_db, get_or_404
from admin.labels import filter_labels
from admin.roles import admin_required
from core.tables import AlarmRule, Inspection, reviewed_label, utcnow

bp = Blueprint("alarms", __name__, url_prefix="/alarms")

ANY_LABEL = "*"
MAX_WINDOW_MINUTES = 1440  # a day: longer trends are the reports' and the dashboard's
MAX_LIMIT = 1_000_000  # fits the column; no line flags more in a day


@dataclass(frozen=True)
class Alarm:
    """An alarm raised now: its rule, how many rows it counted, and what to show."""

    rule_id: int
    label: str
    window_minutes: int
    limit: int
    count: int
    text: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def window_text(minutes: int) -> str:
    """ "10 min", "2 h": how the banner and the rules' list name a window."""
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def label_text(label: str) -> str:
    return "flagged (any label)" if label == ANY_LABEL else label


def alarm_text(label: str, count: int, minutes: int, limit: int) -> str:
    return f"Alarm: {count} {label_text(label)} in the last {window_text(minutes)} (limit {limit})"


def active_rules(db: Session) -> list[AlarmRule]:
    return list(db.scalars(select(AlarmRule).where(AlarmRule.active.is_(True))))


def counts_by_label(db: Session, windows: list[int], now: datetime) -> dict[int, dict[str, int]]:
    """For each window (minutes), the flagged rows within it by effective label, false
    alarms left out: one query, counting each window with a CASE over the longest."""
    if not windows:
        return {}
    columns = [
        func.count(Inspection.id).filter(Inspection.processed_at >= now - timedelta(minutes=w))
        for w in windows
    ]
    # Grouped by the plain columns (the effective label is worked out below): a CASE
    # in GROUP BY would be sent with bound parameters PostgreSQL cannot match up.
    rows = db.execute(
        select(Inspection.label, Inspection.review_state, Inspection.review_label, *columns)
        .where(
            Inspection.status == "flagged",
            Inspection.processed_at >= now - timedelta(minutes=max(windows)),
            Inspection.review_state != "false_alarm",
        )
        .group_by(Inspection.label, Inspection.review_state, Inspection.review_label)
    ).all()
    counts: dict[int, dict[str, int]] = {w: {} for w in windows}
    for label, state, review_label, *per_window in rows:
        key = reviewed_label(label, state, review_label) or "unknown"
        for w, n in zip(windows, per_window, strict=True):
            counts[w][key] = counts[w].get(key, 0) + int(n)
    return counts


def current_alarms(db: Session, now: datetime | None = None) -> list[Alarm]:
    """The alarms active now, one per rule over its limit, the most pressing (most
    over its limit) first."""
    rules = active_rules(db)
    now = now or utcnow()
    counts = counts_by_label(db, sorted({r.window_minutes for r in rules}), now)
    alarms = []
    for rule in rules:
        by_label = counts.get(rule.window_minutes, {})
        count = sum(by_label.values()) if rule.label == ANY_LABEL else by_label.get(rule.label, 0)
        if count > rule.limit:
            alarms.append(
                Alarm(
                    rule.id,
                    rule.label,
                    rule.window_minutes,
                    rule.limit,
                    count,
                    alarm_text(rule.label, count, rule.window_minutes, rule.limit),
                )
            )
    return sorted(alarms, key=lambda a: (a.limit - a.count, a.rule_id))


def whole_number(text: str, what: str, low: int, high: int) -> int:
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        raise ValueError(
            f"{what} must be a whole number from {low} to {high}; got {text!r}"
        ) from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be from {low} to {high}; got {value}")
    return value


def check_rule(db: Session, form: Any) -> tuple[str, int, int]:
    """The label, window and limit a rule form sent, checked: a label from the list
    (or ``*``), a window of 1 to 1440 minutes, a limit of 0 or more. A ``ValueError``
    says what to change."""
    label = str(form.get("label") or "").strip()
    if label != ANY_LABEL and label not in filter_labels(db):
        raise ValueError(
            f"{label!r} is not an active label; choose one from the list, or 'any label'"
            if label
            else "choose the label the rule counts, or 'any label'"
        )
    window = whole_number(
        str(form.get("window_minutes") or ""), "The window (minutes)", 1, MAX_WINDOW_MINUTES
    )
    limit = whole_number(str(form.get("limit") or ""), "The limit", 0, MAX_LIMIT)
    duplicate = db.scalar(
        select(AlarmRule.id).where(
            AlarmRule.active.is_(True),
            AlarmRule.label == label,
            AlarmRule.window_minutes == window,
            AlarmRule.limit == limit,
        )
    )
    if duplicate is not None:
        raise ValueError(f"rule {duplicate} already raises this alarm")
    return label, window, limit


def render_rules(db: Session, form: Any = None, status: int = 200) -> Any:
    rules = list(
        db.scalars(select(AlarmRule).order_by(AlarmRule.active.desc(), AlarmRule.id.desc()))
    )
    raised = {alarm.rule_id: alarm for alarm in current_alarms(db)}
    return render_template(
        "alarms.html",
        rules=rules,
        raised=raised,
        labels=filter_labels(db),
        form=form or {},
        window_text=window_text,
        label_text=label_text,
        max_window=MAX_WINDOW_MINUTES,
        any_label=ANY_LABEL,
    ), status


@bp.get("")
@admin_required
def rules() -> Any:
    return render_rules(get_db())


@bp.post("")
@admin_required
def add_rule() -> Any:
    db = get_db()
    try:
        label, window, limit = check_rule(db, request.form)
    except ValueError as exc:
        flash(str(exc), "error")
        # shown again with what was typed, so that one wrong field is all to fix
        return render_rules(db, form=request.form, status=400)
    rule = AlarmRule(
        label=label, window_minutes=window, limit=limit, created_by=current_user.username
    )
    db.add(rule)
    db.commit()
    flash(
        f"Rule {rule.id} added: an alarm when more than {limit} {label_text(label)} "
        f"in {window_text(window)}.",
        "info",
    )
    return redirect(url_for("alarms.rules"))


@bp.post("/<int:rule_id>/active")
@admin_required
def set_active(rule_id: int) -> Any:
    """Deactivate a rule (its alarm goes with it) or activate it again. Not asked
    first: a rule is as easily added back as taken away."""
    db = get_db()
    rule = get_or_404(AlarmRule, rule_id)
    rule.active = request.form.get("active") == "1"
    db.commit()
    flash(f"Rule {rule_id} {'active again' if rule.active else 'deactivated'}.", "info")
    return redirect(url_for("alarms.rules"))

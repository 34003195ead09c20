"""The coil view: the coils the line has seen and their verdicts, each coil's map
(every mark along and across the strip, a click away from its frame), and the coil
rules admins set.

The map fills while a coil is open: ``static/coil_map.js`` re-reads
``/coils/<id>/marks.json`` every few seconds and redraws it. Verdicts are made by
``core.coil_verdicts`` when a coil ends; an open coil shows what the rules would
say now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.coil_map import label_colours, map_layout
from admin.confirmation import Question, ask, confirmed
from admin.db import get_db
from admin.labels import filter_labels
from admin.roles import admin_required
from core.coil_verdicts import (
    ANY_LABEL,
    CoilJudgement,
    active_rules,
    add_rule,
    apply_rule,
    check_rule,
    coil_marks,
    judge_coil,
    judge_marks,
    rule_text,
)
from core.tables import Coil, CoilRule, Inspection

# The rules page is not under /coils/: every name there is a coil's (a coil may be
# called "rules")
bp = Blueprint("coils", __name__)
PAGE_SIZE = 50
VERDICT_FILTERS = ("ship", "hold", "open")
#: how many recently ended coils a new rule is tried on before it is saved
PREVIEW_COILS = 20
#: how often the map of an open coil is redrawn (coil_map.js reads it from the page)
POLL_MS = 3000


@dataclass(frozen=True)
class CoilState:
    """What a coil's verdict is to a person: ``state`` is "ship" or "hold" (judged),
    or "open" (no verdict yet: still running, or ended and waiting for the
    scheduler); ``verdict`` and ``reasons`` are the stored ones when judged, what
    the rules would say now when not."""

    state: str
    verdict: str
    reasons: list[dict[str, Any]]
    text: str


def coil_state(coil: Coil, judgement: CoilJudgement | None) -> CoilState:
    if coil.verdict is not None:
        reasons = list(coil.verdict_reasons or [])
        return CoilState(coil.verdict, coil.verdict, reasons, coil.verdict)
    if judgement is None:
        return CoilState("open", "", [], "open")
    waiting = "ended, verdict pending; " if coil.ended_at is not None else ""
    return CoilState(
        "open",
        judgement.verdict,
        judgement.reasons,
        f"{waiting}the rules would {judgement.verdict} it now",
    )


@bp.route("/coils")
def coils() -> Any:
    db = get_db()
    verdict = request.args.get("verdict", "")
    if verdict not in VERDICT_FILTERS:
        verdict = ""
    page = request.args.get("page", "1")
    number = int(page) if page.isdigit() and 0 < len(page) < 7 else 1
    query = select(Coil)
    if verdict == "open":
        query = query.where(Coil.verdict.is_(None))
    elif verdict:
        query = query.where(Coil.verdict == verdict)
    rows = list(
        db.scalars(
            query.order_by(Coil.last_frame_at.desc(), Coil.coil_id)
            .offset((number - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    # an open coil is judged as it stands: what the rules would say if it ended now
    states = [
        (coil, coil_state(coil, None if coil.verdict else judge_coil(db, coil.coil_id)))
        for coil in rows[:PAGE_SIZE]
    ]
    return render_template(
        "coils.html",
        states=states,
        verdict=verdict,
        verdicts=VERDICT_FILTERS,
        page=number,
        more=len(rows) > PAGE_SIZE,
    )


def coil_or_404(db: Session, coil_id: str) -> Coil:
    coil = db.get(Coil, coil_id)
    if coil is None:
        abort(404)
    return coil


def coil_view(db: Session, coil: Coil) -> dict[str, Any]:
    """The coil's marks laid out on its map, its counts and its verdict: what the page
    draws first and what its script redraws."""
    marks = coil_marks(db, coil.coil_id)
    judgement = judge_marks(marks, active_rules(db), None)
    state = coil_state(coil, judgement)
    colours = label_colours(filter_labels(db), judgement.counts)
    layout = map_layout(
        marks,
        coil.length_m,
        colours,
        lambda inspection_id: url_for("inspections.detail", inspection_id=inspection_id),
    )
    return {
        "coil_id": coil.coil_id,
        "open": coil.verdict is None,
        "ended_at": coil.ended_at.isoformat() if coil.ended_at else None,
        "frames": coil.frames,
        "flagged": coil.flagged,
        "length_m": coil.length_m,
        "counts": [
            {"label": label, "count": count, "colour": colours[label]}
            for label, count in judgement.counts.items()
        ],
        "state": state.state,
        "verdict": state.verdict,
        "verdict_text": state.text,
        "reasons": state.reasons,
        "map": layout,
    }


@bp.route("/coils/<path:coil_id>")
def coil(coil_id: str) -> Any:
    db = get_db()
    coil = coil_or_404(db, coil_id)
    return render_template(
        "coil.html",
        coil=coil,
        view=coil_view(db, coil),
        marks_url=url_for("coils.marks", coil_id=coil.coil_id),
        poll_ms=POLL_MS,
    )


@bp.route("/coils/<path:coil_id>/marks.json")
def marks(coil_id: str) -> Any:
    db = get_db()
    response = jsonify(coil_view(db, coil_or_404(db, coil_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- rules (admins) ---------------------------------------------------------------------


def rule_labels(db: Session) -> list[str]:
    """What a rule may count: any label (``*``) or one of the label list."""
    return [ANY_LABEL, *filter_labels(db)]


def parse_rule(db: Session, form: Any) -> tuple[str, int, float | None]:
    """The rule a form asks for; a ``ValueError`` saying what to change."""
    label = (form.get("label") or "").strip()
    if label not in rule_labels(db):
        raise ValueError(
            f"'{label}' is not a label; choose one from the list, or '*' for any label"
        )
    count_text = (form.get("max_count") or "").strip()
    if not count_text.isdigit() or len(count_text) > 9:
        raise ValueError(
            "'more than' needs a whole number of marks, such as 3 (0: any mark holds the coil)"
        )
    per_text = (form.get("per_m") or "").strip()
    per_m = None
    if per_text:
        try:
            per_m = float(per_text)
        except ValueError:
            raise ValueError(
                f"'{per_text[:20]}' is not a number of metres; write one such as 100, "
                "or leave it empty to count over the whole coil"
            ) from None
        if not math.isfinite(per_m):
            raise ValueError("'per metres' must be a finite number, such as 100")
    return check_rule(label, int(count_text), per_m)


def rule_preview(db: Session, rule: CoilRule) -> tuple[int, int]:
    """(how many, of how many) recently ended coils ``rule`` alone would hold."""
    recent = db.scalars(
        select(Coil.coil_id)
        .where(Coil.ended_at.is_not(None))
        .order_by(Coil.ended_at.desc())
        .limit(PREVIEW_COILS)
    ).all()
    held = sum(apply_rule(rule, coil_marks(db, coil_id)) is not None for coil_id in recent)
    return held, len(recent)


def render_rules(status: int = 200, form: dict[str, str] | None = None) -> Any:
    db = get_db()
    rules = db.scalars(select(CoilRule).order_by(CoilRule.active.desc(), CoilRule.id)).all()
    return render_template(
        "coil_rules.html",
        rules=rules,
        rule_text=rule_text,
        labels=rule_labels(db),
        form=form or {},
    ), status


@bp.route("/coil-rules", methods=["GET", "POST"])
@admin_required
def rules() -> Any:
    if request.method == "GET":
        return render_rules()
    db = get_db()
    if request.form.get("action") == "deactivate":
        return deactivate_rule(db)
    form = {k: request.form.get(k, "") for k in ("label", "max_count", "per_m")}
    try:
        label, max_count, per_m = parse_rule(db, request.form)
    except ValueError as exc:
        flash(str(exc), "error")
        return render_rules(400, form)
    proposed = CoilRule(id=None, label=label, max_count=max_count, per_m=per_m)
    if not confirmed():
        held, tried = rule_preview(db, proposed)
        return ask(
            Question(
                title="Add this coil rule?",
                changes=[
                    f"New rule: {rule_text(proposed)}.",
                    f"Of the last {tried} ended coils, it alone would have held {held}.",
                    "It judges the coils that end from now on; verdicts already made stand.",
                ],
                back=url_for("coils.rules"),
                yes="Yes, add the rule",
            )
        )
    rule = add_rule(db, label, max_count, per_m, current_user.username)
    db.commit()
    flash(f"Rule added: {rule_text(rule)}.", "info")
    return redirect(url_for("coils.rules"))


def deactivate_rule(db: Session) -> Any:
    rule_id = request.form.get("rule_id", "")
    rule = db.get(CoilRule, int(rule_id)) if rule_id.isdigit() and len(rule_id) < 10 else None
    if rule is None or not rule.active:
        flash("That rule does not exist or is no longer active; reload the page.", "error")
        return render_rules(400)
    if not confirmed():
        return ask(
            Question(
                title="Deactivate this coil rule?",
                changes=[
                    f"Rule {rule.id}: {rule_text(rule)} stops judging coils that end from now on.",
                    "Verdicts already made stand; a rule cannot be reactivated, only added again.",
                ],
                back=url_for("coils.rules"),
                yes="Yes, deactivate it",
            )
        )
    rule.active = False
    db.commit()
    flash(f"Rule {rule.id} deactivated: {rule_text(rule)}.", "info")
    return redirect(url_for("coils.rules"))


# -- the queue's badges -----------------------------------------------------------------


def coil_badges(db: Session, rows: list[Inspection]) -> dict[str, str]:
    """The verdict of each coil the queue's rows belong to: "ship", "hold" or "open"."""
    ids = {row.coil_id for row in rows if row.coil_id}
    if not ids:
        return {}
    found = db.execute(select(Coil.coil_id, Coil.verdict).where(Coil.coil_id.in_(ids)))
    return {coil_id: verdict or "open" for coil_id, verdict in found.tuples()}

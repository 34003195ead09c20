"""Dead letters: broker messages the workers refused that named no job to reject.

Every other broken message becomes a rejected inspection in the queue; these
could not (no job id could be recovered from them), so they are listed here,
newest first, with why and what they held.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select

from admin.db import get_db
from core.tables import DeadLetter

bp = Blueprint("dead_letters", __name__)
PAGE_SIZE = 50


@bp.route("/dead-letters")
def dead_letters() -> Any:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(PAGE_SIZE + 1)
    before = request.args.get("before", "")
    if before.isdigit() and len(before) < 19:
        query = query.where(DeadLetter.id < int(before))
    rows = get_db().scalars(query).all()
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    return render_template("dead_letters.html", rows=rows[:PAGE_SIZE], older=older)

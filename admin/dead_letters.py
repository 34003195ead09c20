"""Dead letters: broker messages the workers refused that named no job to reject.

Every other broken message becomes a rejected inspection in the queue; these
could not (no job id could be recovered from them), so they are listed here,
newest first, with why and what they held.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from sqlalchemy import select

from admin.db import get_db
from admin.id_pages import newest_first, page_of
from core.tables import DeadLetter

bp = Blueprint("dead_letters", __name__)


@bp.route("/dead-letters")
def dead_letters() -> Any:
    query = newest_first(select(DeadLetter), DeadLetter.id)
    rows, older = page_of(get_db().scalars(query).all(), lambda row: row.id)
    return render_template("dead_letters.html", rows=rows, older=older)

"""Reviews kept as history: every confirm, false alarm, relabel, comment and undo of an
inspection is a ``ReviewEvent`` row beside the inspection's current review state.

A review names the state before and after it, so the last one not yet undone can be
put back; one sent twice with the same ``request_id`` (a resubmitted form, a retried
fetch) is recorded once, and the second answer is the first one's event.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from flask import current_app
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from admin.labels import existing_label
from core.tables import UNKNOWN_LABEL, Inspection, ReviewEvent, check_name, utcnow

#: review action -> the review state it sets ("comment" keeps the state)
REVIEW_ACTIONS = {"confirm": "confirmed", "false_alarm": "false_alarm", "relabel": "relabeled"}
#: a request_id as the pages make them (hex, a UUID), and the ".<inspection id>" a
#: bulk review appends to it for each row
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,40}(\.[0-9]{1,10})?")
COMMENT_LIMIT = 2000

T = TypeVar("T")


class NothingToUndo(ValueError):
    """No review of the inspection is left to undo (or not the one the page showed)."""


@dataclass
class Recorded:
    """A recorded event, whether it was recorded before under the same request_id,
    and for an undo the review it undid (unknown when replayed)."""

    event: ReviewEvent
    replayed: bool = False
    undid: int | None = None


def new_request_id() -> str:
    """A request_id for a form as it is rendered (the page's script makes its own)."""
    return secrets.token_hex(16)


def check_request_id(request_id: str | None) -> str | None:
    """The page's request_id, or None when it sent none."""
    if not request_id:
        return None
    if not _REQUEST_ID.fullmatch(request_id):
        raise ValueError("request_id must be 1 to 40 letters, digits, '-' or '_'")
    return request_id


def _earlier(
    db: Session, inspection: Inspection, request_id: str | None, action: str
) -> Recorded | None:
    """The event already recorded under ``request_id``, if any. One recorded for
    another inspection or action is refused (a form sent again after going back
    and choosing differently): the page is out of date."""
    if request_id is None:
        return None
    event = db.scalar(select(ReviewEvent).where(ReviewEvent.request_id == request_id))
    if event is None:
        return None
    if event.inspection_id != inspection.id or event.action != action:
        raise ValueError(
            "this form was sent before (as another review); reload the page to review again"
        )
    return Recorded(event, replayed=True)


def _lock(db: Session, inspection: Inspection) -> None:
    """Reload the inspection and hold its row until commit, so that two reviewers
    at once each see the state the other left (the history's "before" is right)."""
    db.refresh(inspection, with_for_update=True)


def listed_label(db: Session, label: str) -> str:
    """The label a relabel names, when it may: an active label of the list, or the
    line's ``unknown``. A new label is made on purpose, by an admin, not by a review."""
    name = check_name(label, "the label")
    return name if name == UNKNOWN_LABEL else existing_label(db, name)


def apply_review(
    db: Session,
    inspection: Inspection,
    action: str,
    label: str,
    comment: str,
    reviewer: str | None = None,
    request_id: str | None = None,
) -> Recorded:
    """Review ``inspection`` and record it (who and when, always): the logged-in user
    unless ``reviewer``. The caller commits (see ``commit_once``)."""
    if action not in REVIEW_ACTIONS and action != "comment":
        raise ValueError(f"unknown review action {action!r}")
    if action == "relabel" and not label.strip():
        raise ValueError("choose the label the image should have")
    comment = comment.strip()[:COMMENT_LIMIT].replace("\0", "")
    if action == "comment" and not comment:
        raise ValueError("write a comment first")
    relabeled = listed_label(db, label) if action == "relabel" else None
    request_id = check_request_id(request_id)
    _lock(db, inspection)
    if earlier := _earlier(db, inspection, request_id, action):
        return earlier
    state_before, label_before = inspection.review_state, inspection.review_label
    if action != "comment":
        inspection.review_state = REVIEW_ACTIONS[action]
        inspection.review_label = relabeled or inspection.label
    if comment:
        inspection.review_comment = comment
    inspection.reviewed_by = (reviewer or current_user.username)[:80]
    inspection.reviewed_at = utcnow()
    event = ReviewEvent(
        inspection_id=inspection.id,
        action=action,
        state_before=state_before,
        label_before=label_before,
        state_after=inspection.review_state,
        label_after=inspection.review_label,
        comment=comment or None,
        reviewer=inspection.reviewed_by,
        at=inspection.reviewed_at,
        request_id=request_id,
    )
    db.add(event)
    db.flush()  # the event's id, and a repeated request_id fails here
    return Recorded(event)


def undo_last(
    db: Session,
    inspection: Inspection,
    reviewer: str | None = None,
    request_id: str | None = None,
    expected_event_id: int | None = None,
) -> Recorded:
    """Put back the state before the last review not yet undone, mark that review
    undone and record the undo. ``expected_event_id``: the review the page offered
    to undo; a later one (another reviewer's) is never undone in its place."""
    request_id = check_request_id(request_id)
    _lock(db, inspection)
    if earlier := _earlier(db, inspection, request_id, "undo"):
        return earlier
    reviews = list(
        db.scalars(
            select(ReviewEvent)
            .where(
                ReviewEvent.inspection_id == inspection.id,
                ReviewEvent.action != "undo",
                ReviewEvent.undone.is_(False),
            )
            .order_by(ReviewEvent.id.desc())
        )
    )
    if not reviews:
        raise NothingToUndo(f"inspection {inspection.id} has no review left to undo")
    target, remaining = reviews[0], reviews[1:]
    if expected_event_id is not None and target.id != expected_event_id:
        raise NothingToUndo(
            f"review #{expected_event_id} of inspection {inspection.id} is no longer its "
            f"last (#{target.id} by {target.reviewer} is); reload the page to see the history"
        )
    state_before, label_before = inspection.review_state, inspection.review_label
    inspection.review_state, inspection.review_label = target.state_before, target.label_before
    target.undone = True
    # who reviewed and what was said last: from the reviews that stand
    standing = remaining[0] if remaining else None
    inspection.reviewed_by = standing.reviewer if standing else None
    inspection.reviewed_at = standing.at if standing else None
    if target.comment:
        inspection.review_comment = next((e.comment for e in remaining if e.comment), None)
    event = ReviewEvent(
        inspection_id=inspection.id,
        action="undo",
        state_before=state_before,
        label_before=label_before,
        state_after=inspection.review_state,
        label_after=inspection.review_label,
        reviewer=(reviewer or current_user.username)[:80],
        at=utcnow(),
        request_id=request_id,
    )
    db.add(event)
    db.flush()
    return Recorded(event, undid=target.id)


def commit_once(db: Session, record: Callable[[], T]) -> T:
    """Run ``record`` and commit. Two requests with one request_id at once: the
    second's insert breaks the unique constraint; it is rolled back and run again,
    and then finds the first's event (and answers with it)."""
    try:
        result = record()
        db.commit()
    except IntegrityError:
        db.rollback()
        result = record()
        db.commit()
    return result


def history(db: Session, inspection_id: int) -> list[ReviewEvent]:
    """Every review of an inspection, the newest first."""
    return list(
        db.scalars(
            select(ReviewEvent)
            .where(ReviewEvent.inspection_id == inspection_id)
            .order_by(ReviewEvent.id.desc())
        )
    )


# -- as pages and JSON show them ------------------------------------------------------


def state_text(state: str) -> str:
    return state.replace("_", " ")


def time_text(moment: datetime | None) -> str:
    """A time as every page shows it: the ``localtime`` filter when the app has it."""
    if moment is None:
        return ""
    localtime = current_app.jinja_env.filters.get("localtime")
    if localtime is not None:
        return str(localtime(moment))
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def event_text(event: ReviewEvent) -> str:
    """What a review did, in a few words."""
    if event.action == "undo":
        return f"Undo: back to {state_text(event.state_after)}"
    if event.action == "comment":
        return "Comment"
    if event.action == "relabel":
        return f"Relabeled as {event.label_after}"
    return state_text(event.state_after).capitalize()


def event_view(event: ReviewEvent) -> dict[str, Any]:
    """An event as the history list shows it (the page and its script alike)."""
    return {
        "id": event.id,
        "action": event.action,
        "text": event_text(event),
        "reviewer": event.reviewer,
        "at": event.at.isoformat(),
        "at_text": time_text(event.at),
        "comment": event.comment,
        "undone": event.undone,
    }


def review_result(inspection: Inspection, recorded: Recorded) -> dict[str, Any]:
    """The JSON answer to a review or undo: the inspection's review state now and
    the event (the same event for a repeated request_id)."""
    return {
        "inspection_id": inspection.id,
        "review_state": inspection.review_state,
        "review_state_text": state_text(inspection.review_state),
        "review_label": inspection.review_label,
        "reviewed_by": inspection.reviewed_by,
        "reviewed_at": inspection.reviewed_at.isoformat() if inspection.reviewed_at else None,
        "reviewed_at_text": time_text(inspection.reviewed_at),
        "review_comment": inspection.review_comment,
        "event": event_view(recorded.event),
        "replayed": recorded.replayed,
        "undid": recorded.undid,
    }

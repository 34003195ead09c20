"""Coil verdicts: does a coil ship, or is it held? Shared by the admin site (the coil
view shows what the rules say) and the worker's scheduler (which ends idle coils and
judges the ended ones).

A coil's *marks* are what its frames found: every finding of its frames, and every
flagged frame without findings (a frame judged by the whole-image rule), each with
its effective label (a relabeling review's label wins; a frame reviewed as a false
alarm leaves no mark). The active coil rules (``coil_rules``) then decide: a rule
holds the coil when more than ``max_count`` marks of its label (``*``: any) lie
within any stretch of ``per_m`` metres along the strip, or, without ``per_m``, on
the whole coil. Marks whose frame has no position along the strip count only for
whole-coil rules (a stretch cannot place them). No rules, or none broken: ship.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.outbox import emit, iso
from core.tables import (
    Coil,
    CoilRule,
    Finding,
    Inspection,
    check_name,
    reviewed_label,
    utcnow,
)

ANY_LABEL = "*"
#: the longest stretch a rule may count over (a coil is a few kilometres at most)
MAX_PER_M = 100_000.0
MAX_RULE_COUNT = 1_000_000


@dataclass(frozen=True)
class Mark:
    """One finding (or one flagged frame without findings) on a coil."""

    inspection_id: int
    label: str
    position_m: float | None  # along the strip, from the head; None: the frame has none
    across_m: float | None  # across the strip, from the reference edge; None: unknown
    score: float | None
    #: where the finding's centre lies across its frame (0 ... 1), when the frame's
    #: pixel width is known: what a map may draw by when ``across_m`` is unknown
    frame_x: float | None = None


@dataclass
class CoilJudgement:
    verdict: str  # "ship" | "hold"
    #: why it is held: [{"rule_id", "label", "count", "limit", "per_m", "text"}]; [] to ship
    reasons: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # marks by label
    length_m: float | None = None


def coil_marks(session: Session, coil_id: str) -> list[Mark]:
    """The coil's marks, along the strip (frames without a position last)."""
    frames = session.execute(
        select(
            Inspection.id,
            Inspection.label,
            Inspection.dissimilarity,
            Inspection.position_m,
            Inspection.across_m,
            Inspection.image_width,
            Inspection.review_state,
            Inspection.review_label,
        ).where(
            Inspection.coil_id == coil_id,
            Inspection.status == "flagged",
            Inspection.review_state != "false_alarm",
        )
    ).all()
    by_frame: dict[int, list[Any]] = {frame.id: [] for frame in frames}
    for chunk in chunks(list(by_frame), 1000):  # a bound on the IN list's size
        for finding in session.execute(
            select(Finding.inspection_id, Finding.label, Finding.score, Finding.x, Finding.width)
            .where(Finding.inspection_id.in_(chunk))
            .order_by(Finding.inspection_id, Finding.rank)
        ):
            by_frame[finding.inspection_id].append(finding)
    marks = []
    for frame in frames:
        # a relabeled frame's marks all carry the review's label; else each its own
        relabel = reviewed_label(None, frame.review_state, frame.review_label)
        findings = by_frame[frame.id]
        if not findings:  # the whole-image rule: the frame is the mark
            label = relabel or frame.label or "unknown"
            marks.append(
                Mark(frame.id, label, frame.position_m, frame.across_m, frame.dissimilarity)
            )
            continue
        for finding in findings:
            width = frame.image_width
            marks.append(
                Mark(
                    frame.id,
                    relabel or finding.label,
                    frame.position_m,
                    frame.across_m,
                    finding.score,
                    (finding.x + finding.width / 2) / width if width else None,
                )
            )
    unplaced = float("inf")
    marks.sort(key=lambda m: (unplaced if m.position_m is None else m.position_m, m.inspection_id))
    return marks


def chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def densest_stretch(positions: Sequence[float], per_m: float) -> tuple[int, float | None]:
    """The most positions within any stretch of ``per_m`` metres (both ends counted),
    and where the first such stretch starts (None when there are no positions)."""
    ordered = sorted(positions)
    best, start = 0, None
    for i, head in enumerate(ordered):
        # the positions from ``head`` up to ``head + per_m``: a stretch starting at a
        # mark holds at least as many as any other that holds the same marks
        count = bisect.bisect_right(ordered, head + per_m) - i
        if count > best:
            best, start = count, head
    return best, start


def rule_text(rule: CoilRule) -> str:
    """A rule as a person says it: "more than 3 scratches per 100 m: hold"."""
    what = "marks of any label" if rule.label == ANY_LABEL else f"'{rule.label}'"
    if rule.max_count == 0 and rule.per_m is None:
        return "any mark: hold" if rule.label == ANY_LABEL else f"any {what}: hold"
    where = f" per {rule.per_m:g} m" if rule.per_m is not None else " on the coil"
    return f"more than {rule.max_count} {what}{where}: hold"


def apply_rule(rule: CoilRule, marks: Sequence[Mark]) -> dict[str, Any] | None:
    """The reason ``rule`` holds a coil with ``marks``; None when it does not."""
    chosen = [m for m in marks if rule.label == ANY_LABEL or m.label == rule.label]
    what = "marks" if rule.label == ANY_LABEL else f"'{rule.label}'"
    if rule.per_m is not None:
        positions = [m.position_m for m in chosen if m.position_m is not None]
        count, start = densest_stretch(positions, rule.per_m)
        if count <= rule.max_count or start is None:
            return None
        text = (
            f"{count} {what} within {rule.per_m:g} m (from {start:.1f} m); "
            f"at most {rule.max_count} per {rule.per_m:g} m allowed"
        )
    else:
        count = len(chosen)
        if count <= rule.max_count:
            return None
        text = f"{count} {what} on the coil; at most {rule.max_count} allowed"
    return {
        "rule_id": rule.id,
        "label": rule.label,
        "count": count,
        "limit": rule.max_count,
        "per_m": rule.per_m,
        "text": text,
    }


def active_rules(session: Session) -> list[CoilRule]:
    return list(
        session.scalars(select(CoilRule).where(CoilRule.active.is_(True)).order_by(CoilRule.id))
    )


def judge_marks(
    marks: Sequence[Mark], rules: Sequence[CoilRule], length_m: float | None
) -> CoilJudgement:
    """The verdict ``rules`` give a coil with ``marks`` (no rules: ship)."""
    reasons = [reason for rule in rules if (reason := apply_rule(rule, marks)) is not None]
    counts = dict(sorted(Counter(m.label for m in marks).items()))
    return CoilJudgement("hold" if reasons else "ship", reasons, counts, length_m)


def judge_coil(session: Session, coil_id: str) -> CoilJudgement:
    """What the active rules say of the coil now (stores nothing)."""
    marks = coil_marks(session, coil_id)
    coil = session.get(Coil, coil_id)
    length = coil.length_m if coil is not None else None
    positions = [m.position_m for m in marks if m.position_m is not None]
    if positions and (length is None or max(positions) > length):
        length = max(positions)
    return judge_marks(marks, active_rules(session), length)


def end_idle_coils(session: Session, now: datetime, idle_s: float) -> list[str]:
    """End the open coils whose last frame is older than ``idle_s`` seconds: each ends
    at its last frame (as a coil the producer ends does). Returns their ids; the caller
    commits. An UPDATE that re-checks ``ended_at IS NULL`` under the row lock, so two
    schedulers never end a coil twice."""
    ended = session.execute(
        update(Coil)
        .where(Coil.ended_at.is_(None), Coil.last_frame_at < now - timedelta(seconds=idle_s))
        .values(ended_at=Coil.last_frame_at)
        .returning(Coil.coil_id)
        .execution_options(synchronize_session=False)
    )
    return sorted(ended.scalars())


def verdict_body(coil: Coil, judgement: CoilJudgement) -> dict[str, Any]:
    """The body of a ``coil.verdict`` event (docs/events.md)."""
    return {
        "coil_id": coil.coil_id,
        "verdict": judgement.verdict,
        "reasons": judgement.reasons,
        "counts": judgement.counts,
        "frames": coil.frames,
        "flagged": coil.flagged,
        "length_m": judgement.length_m,
        "first_frame_at": iso(coil.first_frame_at),
        "last_frame_at": iso(coil.last_frame_at),
        "ended_at": iso(coil.ended_at),
    }


def judge_ended_coils(session: Session, line: str) -> list[str]:
    """Judge every ended coil without a verdict: store its verdict, reasons and time,
    and emit one ``coil.verdict`` event for it, in the caller's transaction (the
    caller commits). Returns the ids judged.

    Two schedulers at once judge each coil once: on PostgreSQL the coils are locked
    (``FOR UPDATE SKIP LOCKED``: one skips what the other holds, and a coil judged
    and committed meanwhile no longer matches); SQLite has a single writer."""
    query = (
        select(Coil)
        .where(Coil.ended_at.is_not(None), Coil.verdict.is_(None))
        .order_by(Coil.coil_id)
        # the rows as they are now (locked), not as this session saw them before
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    judged = []
    for coil in session.scalars(query).all():
        judgement = judge_coil(session, coil.coil_id)
        coil.verdict = judgement.verdict
        coil.verdict_reasons = judgement.reasons
        coil.verdict_at = utcnow()
        emit(session, "coil.verdict", line, verdict_body(coil, judgement))
        judged.append(coil.coil_id)
    session.flush()
    return judged


def check_rule(label: str, max_count: int, per_m: float | None) -> tuple[str, int, float | None]:
    """A rule's values when they make sense; a ``ValueError`` saying what to change."""
    label = label.strip()
    if label != ANY_LABEL:
        label = check_name(label, "the rule's label")
    if not 0 <= max_count <= MAX_RULE_COUNT:
        raise ValueError(
            f"the most marks allowed must be between 0 and {MAX_RULE_COUNT:,}; "
            "0 holds a coil on its first mark"
        )
    if per_m is not None and not 0 < per_m <= MAX_PER_M:  # NaN fails too
        raise ValueError(
            f"'per metres' must be more than 0 and at most {MAX_PER_M:g}, such as 100; "
            "leave it empty to count over the whole coil"
        )
    return label, max_count, per_m


def add_rule(
    session: Session, label: str, max_count: int, per_m: float | None, user: str
) -> CoilRule:
    """A new active rule, checked (not committed). It judges coils that end from now
    on; verdicts already made stand."""
    label, max_count, per_m = check_rule(label, max_count, per_m)
    rule = CoilRule(label=label, max_count=max_count, per_m=per_m, active=True, created_by=user)
    session.add(rule)
    session.flush()
    return rule

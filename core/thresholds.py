"""Match thresholds: the model's, an operator's override, and admins' settings.

Precedence, for an image whose nearest reference has label L: the admin's
threshold for L; else the admin's global threshold (label ``*``); else
``MATCH_THRESHOLD``; else the one calibrated into the checkpoint. Admins change
them in the site; workers read them per batch, so a change takes effect
without a restart. Every change is recorded in ``threshold_changes``.

Admins' settings belong to a model version: a threshold is a distance, and two
models' distances are on different scales, so a model deployed later starts
from its own calibration, not from a value tuned for another.

A camera judged by findings (it has good frames) has a frame-score threshold
instead: calibrated from its good frames, or an admin's for that camera and model
version (``camera_thresholds``, audited here too); and a scale (``cameras``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.tables import (
    UNKNOWN_LABEL,
    Camera,
    CameraThreshold,
    ThresholdChange,
    ThresholdSetting,
    check_name,
    utcnow,
)

GLOBAL = "*"


@dataclass(frozen=True)
class Thresholds:
    default: float
    per_label: Mapping[str, float] = field(default_factory=dict)

    def for_label(self, label: str) -> float:
        return self.per_label.get(label, self.per_label.get(GLOBAL, self.default))

    def with_change(self, label: str, value: float | None) -> Thresholds:
        per_label = dict(self.per_label)
        if value is None:
            per_label.pop(label, None)
        else:
            per_label[label] = value
        return Thresholds(self.default, per_label)


def load_thresholds(session: Session, default: float, model_version: str) -> Thresholds:
    """The thresholds that apply to ``model_version``: its calibration (``default``)
    under the admins' settings made for that version."""
    rows = session.execute(
        select(ThresholdSetting.label, ThresholdSetting.value).where(
            ThresholdSetting.model_version == model_version
        )
    ).all()
    return Thresholds(default, {label: value for label, value in rows})


def thresholds_signature(session: Session, model_version: str) -> tuple[Any, ...]:
    return tuple(
        session.execute(
            select(func.count(ThresholdSetting.label), func.max(ThresholdSetting.updated_at)).where(
                ThresholdSetting.model_version == model_version
            )
        ).one()
    )


class ThresholdCache:
    """One model version's thresholds, reloaded only when an admin changed them."""

    def __init__(self, default: float, model_version: str) -> None:
        self.default = default
        self.model_version = model_version
        self._signature: tuple[Any, ...] | None = None
        self._thresholds = Thresholds(default)

    def get(self, session: Session) -> Thresholds:
        signature = thresholds_signature(session, self.model_version)
        if signature != self._signature:
            self._thresholds = load_thresholds(session, self.default, self.model_version)
            self._signature = signature
        return self._thresholds


#: an admin's threshold may be at most this many times the calibrated one: ten times
#: the calibrated distance (or frame score) passes everything, which no one means
MAX_THRESHOLD_FACTOR = 10
#: the longest reason recorded with a change
MAX_REASON_LENGTH = 500


def check_threshold(value: float, calibrated: float | None) -> float:
    """``value`` when it is a match threshold an admin may set: a distance above 0, at
    most MAX_THRESHOLD_FACTOR times ``calibrated`` (the model's, or
    ``MATCH_THRESHOLD``); a ``ValueError`` saying what to write otherwise."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"a threshold must be a distance above 0, such as 0.35; got {value:g}")
    check_at_most(value, calibrated, "threshold", "the calibrated")
    return value


def check_at_most(value: float, calibrated: float | None, what: str, whose: str) -> None:
    if calibrated is not None and value > MAX_THRESHOLD_FACTOR * calibrated:
        raise ValueError(
            f"a {what} of {value:g} is more than {MAX_THRESHOLD_FACTOR} times {whose} "
            f"{calibrated:.4f}, and would pass everything; write at most "
            f"{MAX_THRESHOLD_FACTOR * calibrated:.4g}"
        )


def check_reason(text: str) -> str:
    """Why an admin changes a threshold, as recorded with the change: required."""
    reason = " ".join(text.split())  # one line in the history table
    if not reason:
        raise ValueError(
            "give a reason for the change (what you saw, a ticket): it is recorded with it, "
            "for whoever reads the history later"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(
            f"the reason has {len(reason)} characters; write at most {MAX_REASON_LENGTH}"
        )
    if any(not ch.isprintable() for ch in reason):
        raise ValueError("the reason contains control characters; use printable text")
    return reason


def set_threshold(
    session: Session,
    model_version: str,
    label: str,
    value: float | None,
    user: str,
    reason: str | None = None,
) -> None:
    """Set (or, with None, remove) ``model_version``'s threshold for ``label`` (``*``:
    all), recorded with ``reason``."""
    if value is not None and not (0 < value < 1000):
        raise ValueError(f"a threshold must be a positive distance, got {value}")
    label = check_name(label, "the label") if label.strip() else GLOBAL
    current = session.get(ThresholdSetting, (model_version, label))
    row = ThresholdSetting(model_version=model_version, label=label, value=value, updated_by=user)
    change = ThresholdChange(
        model_version=model_version, label=label, changed_by=user, reason=reason
    )
    store_setting(session, current, row, value, user, change)


def store_setting(
    session: Session,
    current: ThresholdSetting | CameraThreshold | None,
    new: ThresholdSetting | CameraThreshold,
    value: float | None,
    user: str,
    change: ThresholdChange,
) -> None:
    """Put ``value`` in the setting row ``current`` (adding ``new`` where there is
    none; removing it for None) and record ``change`` (with its reason) with the old
    and new values; nothing when the value does not change."""
    old = current.value if current else None
    if old == value:
        return
    if value is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        session.add(new)
    else:
        current.value, current.updated_by, current.updated_at = value, user, utcnow()
    change.old_value, change.new_value = old, value
    session.add(change)
    session.flush()


def verdict_from_distances(
    distances: list[dict[str, Any]], thresholds: Thresholds
) -> tuple[str, str]:
    """(status, label) for stored distances (nearest first), as the worker decides."""
    if not distances:
        return "flagged", UNKNOWN_LABEL
    nearest = distances[0]
    if nearest["distance"] > thresholds.for_label(nearest["label"]):
        return "flagged", UNKNOWN_LABEL
    return ("passed" if nearest["kind"] == "ok" else "flagged"), nearest["label"]


def preview_change(
    rows: Iterable[tuple[str, str | None, list[dict[str, Any]] | None]],
    current: Thresholds,
    label: str,
    value: float | None,
) -> dict[str, Any]:
    """How many of ``rows`` (status, label, distances) would get another verdict if the
    threshold for ``label`` became ``value``; with the counts of each change."""
    proposed = current.with_change(label, value)
    changes: dict[str, int] = {}
    total = 0
    for _status, _label, distances in rows:
        if distances is None:
            continue
        total += 1
        before = verdict_from_distances(distances, current)
        after = verdict_from_distances(distances, proposed)
        if before != after:
            key = f"{before[0]} {before[1]} -> {after[0]} {after[1]}"
            changes[key] = changes.get(key, 0) + 1
    return {
        "inspections": total,
        "changed": sum(changes.values()),
        "changes": dict(sorted(changes.items(), key=lambda kv: -kv[1])),
    }


# -- cameras judged by findings ------------------------------------------------------
#
# A camera with good frames is judged by its good-surface memory
# (core.surface_memories): a frame is flagged when its anomaly score is above the
# camera's frame threshold, calibrated from the good frames unless an admin set one
# for that camera and model version. Scores of two models are not on one scale
# either, so these settings too belong to a model version.

#: the scales an admin may give a camera (model pixels per frame pixel): below 0.1 a
#: frame's defects shrink under the network's receptive field; above 4 a frame
#: becomes 16 times the pixels to read for no detail the camera did not take
MIN_SCALE, MAX_SCALE = 0.1, 4.0
FRAME_CHANGES = ("passed -> flagged", "flagged -> passed")


def check_frame_threshold(value: float, calibrated: float | None = None) -> float:
    """``value`` when it is a frame threshold: an anomaly score above 0, at most
    MAX_THRESHOLD_FACTOR times the camera's ``calibrated`` one where that is known."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"a frame threshold must be an anomaly score above 0, such as 0.35; got {value:g}"
        )
    check_at_most(value, calibrated, "frame threshold", "the camera's calibrated")
    return value


def check_scale(value: float) -> float:
    if not (math.isfinite(value) and MIN_SCALE <= value <= MAX_SCALE):
        raise ValueError(
            f"a camera's scale must be between {MIN_SCALE:g} and {MAX_SCALE:g} model pixels "
            f"per frame pixel (1 reads frames as they are); got {value:g}"
        )
    return value


def set_camera_threshold(
    session: Session,
    camera: str,
    model_version: str,
    value: float | None,
    user: str,
    reason: str | None = None,
) -> None:
    """Set (or, with None, remove) an admin's frame threshold for ``camera`` under
    ``model_version``, recorded with ``reason`` in ``threshold_changes`` (label ``*``,
    the camera set). Workers read it with the camera's memory, so it applies from
    their next frame."""
    if value is not None:
        check_frame_threshold(value)
    camera = check_name(camera, "the camera")
    current = session.get(CameraThreshold, (camera, model_version))
    row = CameraThreshold(camera=camera, model_version=model_version, value=value, updated_by=user)
    change = ThresholdChange(
        model_version=model_version, label=GLOBAL, camera=camera, changed_by=user, reason=reason
    )
    store_setting(session, current, row, value, user, change)


def set_camera_scale(session: Session, camera: str, scale: float, user: str) -> float | None:
    """Give ``camera`` a scale (creating its row); returns the scale it had (None: the
    default, no row). A new scale names another memory, so workers build one from the
    camera's good frames on its next frame."""
    check_scale(scale)
    camera = check_name(camera, "the camera")
    row = session.get(Camera, camera)
    if row is None:
        session.add(Camera(name=camera, scale=scale, updated_by=user))
        session.flush()
        return None
    old = float(row.scale)
    if old != scale:
        row.scale, row.updated_by = scale, user
        session.flush()
    return old


def preview_frame_change(
    rows: Iterable[tuple[float | None, float | None]],
    current: float | None,
    proposed: float | None,
) -> dict[str, Any]:
    """How many frame inspections, ``rows`` of (anomaly score, the threshold it was
    judged by), would get another verdict if the camera's threshold went from
    ``current`` to ``proposed``: counts of passed -> flagged and flagged -> passed.
    None for a threshold means each frame's own (no memory is built yet to say which
    one would apply)."""
    changes = dict.fromkeys(FRAME_CHANGES, 0)
    total = 0
    for score, judged_by in rows:
        if score is None or judged_by is None:
            continue  # rejected: no score
        total += 1
        before = score > (judged_by if current is None else current)
        after = score > (judged_by if proposed is None else proposed)
        if before != after:
            changes[FRAME_CHANGES[0] if after else FRAME_CHANGES[1]] += 1
    return {"inspections": total, "changed": sum(changes.values()), "changes": changes}

"""Threshold tuning (admins): set the match threshold globally or per label, preview how
many recent inspections would change verdict, save; workers follow without a restart.

Cameras judged by findings (those with good frames) have a frame-score threshold
instead, calibrated from their good frames; an admin may replace it per camera, with
the same preview, and set the scale the model reads a camera's frames at.

Settings belong to the model version this site has loaded (``MODEL_CHECKPOINT``, the
same as the workers'); those made for other versions are listed but do not apply.

Every saved change needs a reason, recorded with it, and a confirmation
(``admin.confirmation``); values are range-checked against the calibration
(``core.thresholds.check_threshold``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.confirmation import Question, ask, confirmed
from admin.db import get_db
from admin.model import get_embedder, get_frame_version
from admin.roles import admin_required
from core.camera_positions import camera_positions, set_camera_position
from core.references import is_good_frame
from core.settings import get_settings
from core.surface_memories import DEFAULT_SCALE, current_memory
from core.tables import (
    Camera,
    CameraThreshold,
    Inspection,
    Reference,
    ThresholdChange,
    ThresholdSetting,
    utcnow,
)
from core.thresholds import (
    FRAME_CHANGES,
    GLOBAL,
    MAX_SCALE,
    MAX_THRESHOLD_FACTOR,
    MIN_SCALE,
    check_frame_threshold,
    check_reason,
    check_scale,
    check_threshold,
    load_thresholds,
    preview_change,
    preview_frame_change,
    set_camera_scale,
    set_camera_threshold,
    set_threshold,
)

bp = Blueprint("thresholds", __name__, url_prefix="/thresholds")
PREVIEW_WINDOW = timedelta(days=7)
PREVIEW_LIMIT = 20_000


def base_threshold() -> tuple[float, str]:
    """The threshold before any admin setting, and where it comes from."""
    settings = get_settings()
    if settings.match_threshold is not None:
        return settings.match_threshold, "MATCH_THRESHOLD"
    return float(get_embedder().meta["threshold"]), "the model's calibration"


def parse_value(text: str, what: str = "a threshold") -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; write {what} such as 0.35") from None


@dataclass(frozen=True)
class CameraRow:
    """A camera judged by findings, as the page shows it."""

    name: str
    good_frames: int
    scale: float
    calibrated: float | None  # None: its memory is built on the camera's next frame
    built_at: datetime | None
    override: CameraThreshold | None

    @property
    def applies(self) -> float | None:
        """The frame threshold workers use now (None: not known until it is built)."""
        return self.override.value if self.override is not None else self.calibrated


def camera_rows(db: Session, version: str) -> list[CameraRow]:
    """Every camera with good frames, and any with an override under ``version``."""
    frames: dict[str, int] = {
        camera: count
        for camera, count in db.execute(
            select(Reference.camera, func.count(Reference.id))
            .where(Reference.active.is_(True), is_good_frame())
            .group_by(Reference.camera)
        ).tuples()
        if camera is not None  # is_good_frame() says so; for the type checker
    }
    overrides = {
        row.camera: row
        for row in db.scalars(
            select(CameraThreshold).where(CameraThreshold.model_version == version)
        )
    }
    names = sorted(set(frames) | set(overrides))
    scales = dict(
        db.execute(select(Camera.name, Camera.scale).where(Camera.name.in_(names))).tuples().all()
    )
    rows = []
    for name in names:
        memory = current_memory(db, name, version) if frames.get(name) else None
        rows.append(
            CameraRow(
                name=name,
                good_frames=frames.get(name, 0),
                scale=float(scales.get(name, DEFAULT_SCALE)),
                calibrated=memory.threshold if memory else None,
                built_at=memory.built_at if memory else None,
                override=overrides.get(name),
            )
        )
    return rows


def find_camera(rows: list[CameraRow], name: str) -> CameraRow:
    for row in rows:
        if row.name == name:
            return row
    raise ValueError(
        f"camera {name!r} has no good frames; add one with add-reference --kind ok --camera"
    )


def render_page(status: int = 200, **extra: Any) -> Any:
    """The page, with the label form's and the camera forms' state in ``extra``."""
    db = get_db()
    default, source = base_threshold()
    version = get_embedder().version
    frame_version = get_frame_version()
    current = load_thresholds(db, default, version)
    labels = sorted(
        set(db.scalars(select(Reference.label).distinct())) | set(current.per_label) - {GLOBAL}
    )
    every_setting = db.scalars(
        select(ThresholdSetting).order_by(ThresholdSetting.model_version, ThresholdSetting.label)
    ).all()
    other_camera_settings = db.scalars(
        select(CameraThreshold)
        .where(CameraThreshold.model_version != frame_version)
        .order_by(CameraThreshold.camera, CameraThreshold.model_version)
    ).all()
    changes = db.scalars(
        select(ThresholdChange).order_by(ThresholdChange.changed_at.desc()).limit(50)
    ).all()
    context: dict[str, Any] = {
        "preview": None,
        "label": GLOBAL,
        "value_text": "",
        "reason_text": "",
        "camera_preview": None,
        "camera_form": {},
        "position_form": {},
    }
    context.update(extra)
    return render_template(
        "thresholds.html",
        default=default,
        source=source,
        version=version,
        settings=[s for s in every_setting if s.model_version == version],
        other_settings=[s for s in every_setting if s.model_version != version],
        frame_version=frame_version,
        cameras=camera_rows(db, frame_version),
        positions=camera_positions(db),
        other_camera_settings=other_camera_settings,
        changes=changes,
        labels=labels,
        window_days=PREVIEW_WINDOW.days,
        min_scale=MIN_SCALE,
        max_scale=MAX_SCALE,
        max_factor=MAX_THRESHOLD_FACTOR,
        **context,
    ), status


def label_preview(db: Session, version: str, label: str, value: float | None) -> dict[str, Any]:
    """How the last week's inspections by ``version`` would change if ``label``'s
    threshold became ``value``."""
    rows = db.execute(
        select(Inspection.status, Inspection.label, Inspection.distances)
        .where(
            Inspection.processed_at >= utcnow() - PREVIEW_WINDOW,
            Inspection.status != "rejected",
            # another model's distances are on another scale
            Inspection.model_version == version,
            # frames judged by findings follow their camera's frame threshold
            Inspection.anomaly_key.is_(None),
        )
        .order_by(Inspection.processed_at.desc())
        .limit(PREVIEW_LIMIT)
    )
    current = load_thresholds(db, base_threshold()[0], version)
    return preview_change(rows.tuples().all(), current, label, value)


def shown(value: float | None, instead: str) -> str:
    return f"{value:.4f}" if value is not None else instead


def label_question(
    db: Session, version: str, label: str, value: float | None, reason: str, preview: Any
) -> Question:
    """What saving ``label``'s threshold would change, for the confirmation page."""
    default = base_threshold()[0]
    current = load_thresholds(db, default, version)
    target = "every label" if label == GLOBAL else f"'{label}'"
    old = current.per_label.get(label)
    return Question(
        title=f"Save the threshold for {target}?",
        changes=[
            f"Threshold for {target} under model {version}: "
            f"{shown(old, 'not set')} -> {shown(value, f'removed (the default, {default:.4f})')}",
            f"Of the last {preview['inspections']} inspections by this model "
            f"({PREVIEW_WINDOW.days} days), {preview['changed']} would get another verdict.",
            f"Reason: {reason}",
            "Workers running this model use it from their next batch.",
        ],
        back=url_for("thresholds.thresholds"),
        yes="Yes, save it",
    )


@bp.route("/", methods=["GET", "POST"])
@admin_required
def thresholds() -> Any:
    if request.method == "GET":
        return render_page()
    db = get_db()
    version = get_embedder().version
    label = request.form.get("label", GLOBAL)
    value_text = request.form.get("value", "")
    reason_text = request.form.get("reason", "")
    kept: dict[str, Any] = {"label": label, "value_text": value_text, "reason_text": reason_text}
    try:
        value = parse_value(value_text)
        if value is not None:
            check_threshold(value, base_threshold()[0])
        preview = label_preview(db, version, label, value)
        if request.form.get("do") == "save":
            reason = check_reason(reason_text)
            if not confirmed():
                return ask(label_question(db, version, label, value, reason, preview))
            set_threshold(db, version, label, value, current_user.username, reason)
            db.commit()
            done = "removed" if value is None else f"set to {value:g}"
            flash(
                f"Threshold for {label} {done} for model {version}. Workers running it "
                "use it from their next batch.",
                "info",
            )
            return redirect(url_for("thresholds.thresholds"))
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
        return render_page(400, **kept)
    return render_page(200, preview=preview, **kept)


def frame_rows(db: Session, camera: str, version: str) -> list[tuple[float | None, float | None]]:
    """(score, threshold judged by) of the camera's recent frames under ``version``."""
    return list(
        db.execute(
            select(Inspection.dissimilarity, Inspection.threshold)
            .where(
                Inspection.camera == camera,
                Inspection.processed_at >= utcnow() - PREVIEW_WINDOW,
                Inspection.model_version == version,
                Inspection.anomaly_key.is_not(None),
            )
            .order_by(Inspection.processed_at.desc())
            .limit(PREVIEW_LIMIT)
        ).tuples()
    )


@bp.post("/camera")
@admin_required
def camera_threshold() -> Any:
    """Preview or save (or, empty, remove) an admin's frame threshold for a camera."""
    db = get_db()
    version = get_frame_version()  # the memories' model: frame rows carry it too
    name = request.form.get("camera", "")
    value_text = request.form.get("value", "")
    reason_text = request.form.get("reason", "")
    form = {"camera": name, "value_text": value_text, "reason_text": reason_text}
    try:
        camera = find_camera(camera_rows(db, version), name)
        value = parse_value(value_text, "an anomaly score")
        if value is not None:
            check_frame_threshold(value, camera.calibrated)
        # removing the override leaves the calibrated threshold
        proposed = value if value is not None else camera.calibrated
        preview = preview_frame_change(
            frame_rows(db, camera.name, version), camera.applies, proposed
        )
        if request.form.get("do") == "save":
            reason = check_reason(reason_text)
            if not confirmed():
                return ask(camera_question(camera, version, value, reason, preview))
            set_camera_threshold(db, camera.name, version, value, current_user.username, reason)
            db.commit()
            done = "removed" if value is None else f"set to {value:g}"
            flash(
                f"Frame threshold of camera {camera.name} {done} for model {version}. "
                "Workers use it from the camera's next frame.",
                "info",
            )
            return redirect(url_for("thresholds.thresholds") + "#cameras")
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
        return render_page(400, camera_form=form)
    return render_page(
        camera_form=form, camera_preview={"camera": camera.name, "value": proposed, **preview}
    )


def camera_question(
    camera: CameraRow, version: str, value: float | None, reason: str, preview: Any
) -> Question:
    """What saving a camera's frame threshold would change, for the confirmation page."""
    old = camera.override.value if camera.override is not None else None
    calibrated = shown(camera.calibrated, "not built yet")
    return Question(
        title=f"Save the frame threshold of camera {camera.name}?",
        changes=[
            f"Admin's frame threshold of camera {camera.name} under model {version}: "
            f"{shown(old, 'not set')} -> {shown(value, 'removed')} (calibrated: {calibrated})",
            f"Of the last {preview['inspections']} frames of this camera "
            f"({PREVIEW_WINDOW.days} days), {preview['changes'][FRAME_CHANGES[0]]} would go "
            f"from passed to flagged and {preview['changes'][FRAME_CHANGES[1]]} from flagged "
            "to passed.",
            f"Reason: {reason}",
            "Workers use it from the camera's next frame.",
        ],
        back=url_for("thresholds.thresholds") + "#cameras",
        yes="Yes, save it",
    )


@bp.post("/camera-scale")
@admin_required
def camera_scale() -> Any:
    """Set the scale the model reads a camera's frames at."""
    db = get_db()
    name = request.form.get("camera", "")
    scale_text = request.form.get("scale", "")
    try:
        camera = find_camera(camera_rows(db, get_frame_version()), name)
        scale = parse_value(scale_text, "a scale")
        if scale is None:
            raise ValueError(f"give a scale between {MIN_SCALE:g} and {MAX_SCALE:g}, such as 1")
        old = set_camera_scale(db, camera.name, check_scale(scale), current_user.username)
        db.commit()
    except ValueError as exc:
        flash(str(exc), "error")
        return render_page(400, camera_form={"camera": name, "scale_text": scale_text})
    if (old if old is not None else DEFAULT_SCALE) == scale:
        flash(f"Camera {camera.name} already has scale {scale:g}; nothing changed.", "info")
    else:
        flash(
            f"Scale of camera {camera.name} set to {scale:g}. Its good-surface memory is "
            f"rebuilt from its {camera.good_frames} good frame(s) on its next frame.",
            "info",
        )
    return redirect(url_for("thresholds.thresholds") + "#cameras")


@bp.post("/camera-position")
@admin_required
def camera_position() -> Any:
    """Set where a camera sits on the strip (traceability): the strip length one frame
    covers and its place across; empty clears one."""
    db = get_db()
    name = request.form.get("camera", "")
    length_text = request.form.get("frame_length_m", "")
    across_text = request.form.get("across_m", "")
    try:
        length = parse_value(length_text, "a frame length in metres")
        across = parse_value(across_text, "a place across in metres")
        before = set_camera_position(db, name, length, across, current_user.username)
        db.commit()
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
        form = {"camera": name, "length_text": length_text, "across_text": across_text}
        return render_page(400, position_form=form)
    if (before.frame_length_m, before.across_m) == (length, across):
        flash(f"Camera {before.name} already sits there; nothing changed.", "info")
    else:
        flash(
            f"Camera {before.name}: frame length {metres(length)}, across {metres(across)}. "
            "Frames stored from now on are placed by it.",
            "info",
        )
    return redirect(url_for("thresholds.thresholds") + "#camera-positions")


def metres(value: float | None) -> str:
    return "not set" if value is None else f"{value:g} m"

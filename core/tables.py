"""The tables, as SQLAlchemy 2.0 typed models. Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations can name what they alter on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUSES = ("passed", "flagged", "rejected")
REVIEW_STATES = ("pending", "confirmed", "false_alarm", "relabeled")
REFERENCE_KINDS = ("defect", "ok")
ROLES = ("supervisor", "admin")
#: what an API token may do: submit jobs, read inspections and images, review, read metrics
TOKEN_SCOPES = ("submit", "read", "review", "metrics")
UNKNOWN_LABEL = "unknown"
MAX_LABEL_LENGTH = 80  # labels, user names and token names: String(80) columns


def check_name(value: str, what: str = "a label") -> str:
    """``value`` stripped, when it fits a String(80) column as a name a person reads;
    a ``ValueError`` saying what is wrong otherwise."""
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is empty")
    if len(value) > MAX_LABEL_LENGTH:
        raise ValueError(f"{what} has {len(value)} characters; at most {MAX_LABEL_LENGTH}")
    if any(not ch.isprintable() for ch in value):
        raise ValueError(f"{what} contains control characters; use printable text")
    return value


def reviewed_label(label: str | None, review_state: str, review_label: str | None) -> str | None:
    """The label a row stands for after review: the supervisor's where they relabeled
    it, ``label`` (the worker's, or a finding's) otherwise."""
    if review_state == "relabeled" and review_label:
        return review_label
    return label


#: the queue's sort key for "most/least dissimilar" (rows without a distance, the
#: rejected ones, sort as -1); admin.review_queue renders the same SQL, so the index on
#: it serves those pages
SORT_DISSIMILARITY = "coalesce(dissimilarity, -1.0)"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite keeps no zone and hands back naive values; they are stored as UTC,
    so they are read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20), default="supervisor")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of every session cookie; raised on logout and password change, which
    # ends every session made before (a copied cookie stops working).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ModelVersion(Base):
    """A checkpoint some worker or admin process has loaded."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    arch: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_loaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reference(Base):
    """One image of the one-shot reference library."""

    __tablename__ = "references"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(80), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "defect" or "ok"
    image_key: Mapped[str] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str | None] = mapped_column(Text)
    # An ``ok`` reference with a camera is a good frame of that camera: with the
    # others of its camera it builds the camera's good-surface memory (frames and
    # findings) and takes no part in the whole-image rule. None: any camera.
    camera: Mapped[str | None] = mapped_column(String(120), index=True)
    added_by: Mapped[str | None] = mapped_column(String(80))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Changes whenever the row does, so workers can tell their cache is stale.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    embeddings: Mapped[list[ReferenceEmbedding]] = relationship(
        back_populates="reference", cascade="all, delete-orphan"
    )


class ReferenceEmbedding(Base):
    """A reference's embedding under one model version (float32 bytes)."""

    __tablename__ = "reference_embeddings"
    __table_args__ = (UniqueConstraint("reference_id", "model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference_id: Mapped[int] = mapped_column(ForeignKey("references.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    reference: Mapped[Reference] = relationship(back_populates="embeddings")


class Inspection(Base):
    """One row per job: the verdict on one image, and its review."""

    __tablename__ = "inspections"
    __table_args__ = (
        # Keyset pagination of the queue: newest first, per status, then by id.
        Index("ix_inspections_status_processed_at_id", "status", "processed_at", "id"),
        Index("ix_inspections_processed_at_id", "processed_at", "id"),
        Index("ix_inspections_camera_processed_at", "camera", "processed_at"),
        # The queue filtered by status and label, sorted by dissimilarity.
        Index(
            "ix_inspections_status_label_dissimilarity_id",
            "status",
            "label",
            text(SORT_DISSIMILARITY),
            "id",
        ),
        # A coil's frames along its length (the coil map, its reports).
        Index("ix_inspections_coil_id_position_m", "coil_id", "position_m"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36), unique=True)
    camera: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(10))  # passed | flagged | rejected
    label: Mapped[str | None] = mapped_column(String(80), index=True)
    dissimilarity: Mapped[float | None] = mapped_column(Float)
    nearest_reference_id: Mapped[int | None] = mapped_column(
        ForeignKey("references.id", ondelete="SET NULL"), index=True
    )
    # [{"reference_id", "label", "kind", "distance"}], nearest first
    distances: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    threshold: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(64))
    image_key: Mapped[str | None] = mapped_column(String(80))
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    # The anomaly map of a frame judged by its camera's good-surface memory (a PNG
    # in the image store); None for the whole-image rule
    anomaly_key: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    review_state: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    review_label: Mapped[str | None] = mapped_column(String(80))
    reviewed_by: Mapped[str | None] = mapped_column(String(80))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_comment: Mapped[str | None] = mapped_column(Text)
    # The code the naming network gave the image (for a frame: its top finding's
    # crop), float32 bytes; what "the most similar confirmed inspections" compares.
    # Deferred: the queue's pages and exports load rows without it.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # Traceability (all optional): the coil (or lot) the frame belongs to, the frame's
    # position along the strip (metres from the coil's head; from ``frame_index``
    # times the camera's frame length when only the index was sent) and across it
    # (metres from the strip's reference edge: the camera's position when not sent)
    coil_id: Mapped[str | None] = mapped_column(String(80))
    frame_index: Mapped[int | None] = mapped_column(Integer)
    position_m: Mapped[float | None] = mapped_column(Float)
    across_m: Mapped[float | None] = mapped_column(Float)

    nearest_reference: Mapped[Reference | None] = relationship()
    findings: Mapped[list[Finding]] = relationship(
        back_populates="inspection",
        cascade="all, delete-orphan",
        order_by="Finding.rank",
        passive_deletes=True,
    )


class Finding(Base):
    """A connected anomalous region of a frame: where it is, how anomalous, and the
    nearest ``defect`` reference of its crop (``unknown`` when none is within the
    match threshold)."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    rank: Mapped[int] = mapped_column(Integer)  # 0: the most anomalous of its frame
    # the region's box in frame pixels, and its area (pixels above the threshold)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    area: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)  # the region's highest anomaly score
    label: Mapped[str] = mapped_column(String(80), index=True)
    reference_id: Mapped[int | None] = mapped_column(
        ForeignKey("references.id", ondelete="SET NULL")
    )
    distance: Mapped[float | None] = mapped_column(Float)  # to that reference

    inspection: Mapped[Inspection] = relationship(back_populates="findings")
    reference: Mapped[Reference | None] = relationship()


class Camera(Base):
    """What a camera's frames need beyond the defaults: the scale the model looks at
    them (model pixels per frame pixel). Cameras without a row use scale 1.0."""

    __tablename__ = "cameras"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    scale: Mapped[float] = mapped_column(Float, default=1.0)
    # Traceability: the strip length one frame covers (a job's ``frame_index`` times
    # this is its position along the coil) and where the camera sits across the strip
    # (metres from the reference edge), for jobs that do not say
    frame_length_m: Mapped[float | None] = mapped_column(Float)
    across_m: Mapped[float | None] = mapped_column(Float)
    updated_by: Mapped[str | None] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CameraThreshold(Base):
    """An admin's frame-score threshold for one camera under one model version; it
    replaces the threshold calibrated from the camera's good frames."""

    __tablename__ = "camera_thresholds"

    camera: Mapped[str] = mapped_column(String(120), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SurfaceMemory(Base):
    """A camera's good-surface memory under one model version: local features of
    its good frames (subsampled, float32 bytes) and the frame-score threshold
    calibrated from them. ``signature`` names the good frames and the scale it was
    built from, so a changed library builds a new one and any worker reuses it."""

    __tablename__ = "surface_memories"
    __table_args__ = (UniqueConstraint("camera", "model_version", "signature"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera: Mapped[str] = mapped_column(String(120))
    model_version: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))
    scale: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)  # good frames it was built from
    dim: Mapped[int] = mapped_column(Integer)
    rows: Mapped[bytes] = mapped_column(LargeBinary)
    threshold: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)  # what building it took
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ThresholdSetting(Base):
    """A match threshold set by an admin for one model version: for one label, or for
    all (label ``*``). Distances of two models are not on one scale (their calibrated
    thresholds differ), so a setting applies only to the model it was set for."""

    __tablename__ = "thresholds"

    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ThresholdChange(Base):
    """The audit trail of threshold settings: who changed what, when, from and to."""

    __tablename__ = "threshold_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None: a change made before settings were kept per model version
    model_version: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(80))
    # set for a camera's frame-score threshold (``label`` is then ``*``)
    camera: Mapped[str | None] = mapped_column(String(120))
    old_value: Mapped[float | None] = mapped_column(Float)  # None: was not set
    new_value: Mapped[float | None] = mapped_column(Float)  # None: removed
    changed_by: Mapped[str] = mapped_column(String(80))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    reason: Mapped[str | None] = mapped_column(Text)  # why, as the admin wrote it


REVIEW_EVENT_ACTIONS = ("confirm", "false_alarm", "relabel", "comment", "undo")


class ReviewEvent(Base):
    """One review of an inspection, kept as history: who, when, what, the comment,
    and the state before and after (an ``undo`` puts the state before back).

    ``request_id`` is the key the page sent with the review: the same review sent
    twice (a resubmitted form, a retried request) is recorded once."""

    __tablename__ = "review_events"
    __table_args__ = (Index("ix_review_events_inspection_id_id", "inspection_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(12))  # REVIEW_EVENT_ACTIONS
    state_before: Mapped[str] = mapped_column(String(12))
    label_before: Mapped[str | None] = mapped_column(String(80))
    state_after: Mapped[str] = mapped_column(String(12))
    label_after: Mapped[str | None] = mapped_column(String(80))
    comment: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    undone: Mapped[bool] = mapped_column(default=False)


class Label(Base):
    """The labels supervisors and admins choose from. A new label is an explicit
    choice; a deactivated one leaves the filters and relabel lists, and the rows
    that carry it keep it."""

    __tablename__ = "labels"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginFailure(Base):
    """A failed login, kept for throttling repeated guesses."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A token a plant system uses for the JSON API; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists, to tell tokens apart
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the token may do: space-separated TOKEN_SCOPES
    scopes: Mapped[str] = mapped_column(String(100), default="read", server_default="read")

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class DeadLetter(Base):
    """A broker message that could not become an inspection row: no job id could be
    recovered from it. Kept with why and what it held, for the site to show."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    reason: Mapped[str] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(String(200))  # the task name it asked for
    task_id: Mapped[str | None] = mapped_column(String(200))
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    body: Mapped[str | None] = mapped_column(Text)  # the start of the body, as text
    body_bytes: Mapped[int | None] = mapped_column(Integer)


COIL_VERDICTS = ("ship", "hold")


class Coil(Base):
    """A coil (or lot) the line has seen frames of: counted as workers store its
    frames, ended when the producer says so or no frame came for COIL_END_AFTER_S,
    and judged at its end by the coil rules (``verdict``; None while it is open)."""

    __tablename__ = "coils"

    coil_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    first_frame_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_frame_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    frames: Mapped[int] = mapped_column(Integer, default=0)
    flagged: Mapped[int] = mapped_column(Integer, default=0)
    length_m: Mapped[float | None] = mapped_column(Float)  # the furthest position seen
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    verdict: Mapped[str | None] = mapped_column(String(10))  # COIL_VERDICTS
    # why: [{"rule_id", "label", "count", "limit", "text"}]; [] for ship
    verdict_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    verdict_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CoilRule(Base):
    """A rule an admin set for coil verdicts: hold a coil with more than ``max_count``
    findings (or flagged frames) of ``label`` (``*``: any label), counted per ``per_m``
    metres of strip when set, over the whole coil otherwise (``max_count`` 0 and no
    ``per_m``: any one holds it)."""

    __tablename__ = "coil_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(80))
    max_count: Mapped[int] = mapped_column(Integer)
    per_m: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlarmRule(Base):
    """An alarm the live dashboard raises when more than ``limit`` inspections are
    flagged as ``label`` (``*``: any) within the last ``window_minutes``."""

    __tablename__ = "alarm_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(80))
    window_minutes: Mapped[int] = mapped_column(Integer)
    limit: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


REPORT_KINDS = ("coil", "shift")


class Report(Base):
    """A report made for a coil or a shift: its PDF and CSV in the image store."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_kind_subject", "kind", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # REPORT_KINDS
    # the coil's id, or the shift as "YYYY-MM-DD HH:MM" (its start, plant time)
    subject: Mapped[str] = mapped_column(String(80))
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    made_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    made_by: Mapped[str | None] = mapped_column(String(80))  # None: made automatically
    pdf_key: Mapped[str] = mapped_column(String(80))
    csv_key: Mapped[str] = mapped_column(String(80))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


EVENT_KINDS = ("inspection.flagged", "coil.verdict", "report.ready")


class Event(Base):
    """What plant systems are told (the outbox): written in the transaction of what
    it reports, then fanned out to one delivery per subscribed target."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # EVENT_KINDS
    camera: Mapped[str | None] = mapped_column(String(120))  # for MQTT topics
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fanned_out: Mapped[bool] = mapped_column(default=False, index=True)


class Webhook(Base):
    """A plant system's HTTP endpoint: the events it takes, and the secret their
    HMAC-SHA256 signature is made with."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[str] = mapped_column(String(200))  # space-separated EVENT_KINDS
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


DELIVERY_STATES = ("pending", "delivered", "failed")


class Delivery(Base):
    """One event to one target (a webhook, or the MQTT broker), retried with backoff
    until delivered or given up (``failed``): the delivery log."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(10))  # "webhook" or "mqtt"
    webhook_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(10), default="pending")  # DELIVERY_STATES
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[Event] = relationship()

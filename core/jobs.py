"""The job message: its schema, its checks, and the one function that sends it.

A job is the Celery task ``inspect`` called with JSON keyword arguments:
``job_id`` (a UUID, the idempotency key), ``camera``, ``captured_at`` (ISO
8601), exactly one of ``image_b64`` or ``image_path``, and free-form ``meta``;
``submitted_at`` (ISO 8601) is optional and lets the line measure latency.
Traceability is optional too: ``coil_id`` (the coil or lot), the frame's place
along the strip as ``position_m`` (metres from the coil's head) or ``frame_index``
(times the camera's frame length), its place across it as ``across_m``, and
``coil_end`` (true on a coil's last frame: the coil has ended).
The producer and the admin site's HTTP ingest both send through ``send_job``;
workers check every message again with ``InspectJob.from_message`` because any
Celery client may send one.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TASK_NAME = "inspect"
QUEUE_NAME = "inspect"
MAX_CAMERA_LENGTH = 120
MAX_META_BYTES = 16 * 1024
MAX_META_DEPTH = 32
MAX_COIL_ID_LENGTH = 80
#: the longest strip a position may lie on (a coil is a few kilometres at most)
MAX_POSITION_M = 1_000_000.0
MAX_FRAME_INDEX = 2**31 - 1  # an Integer column
# Times a row can hold and every time zone can show: a day inside Python's range
# (9999-12-31T23:00-14:00 is past year 9999 in UTC, and no database row took it).
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


class JobInvalid(ValueError):
    """A message field is missing or wrong; the message says which and how to fix it."""


def parse_timestamp(value: Any, name: str) -> datetime:
    """An ISO 8601 string as an aware datetime (naive means UTC)."""
    if not isinstance(value, str):
        raise JobInvalid(f"{name} must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        in_range = EARLIEST <= parsed <= LATEST
    except (ValueError, OverflowError):
        raise JobInvalid(f"{name} must be an ISO 8601 timestamp, got {value[:40]!r}") from None
    if not in_range:
        raise JobInvalid(
            f"{name} {value[:40]!r} is out of range; send the time the image was taken"
        )
    return parsed


def check_camera(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise JobInvalid("camera must be a non-empty string naming the camera")
    if len(value) > MAX_CAMERA_LENGTH:
        raise JobInvalid(f"camera name is {len(value)} characters; at most {MAX_CAMERA_LENGTH}")
    if any(not ch.isprintable() for ch in value):
        raise JobInvalid("camera name contains control characters; use printable text")
    return value


def check_coil_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise JobInvalid("coil_id must be a non-empty string naming the coil (or lot)")
    if len(value) > MAX_COIL_ID_LENGTH:
        raise JobInvalid(f"coil_id is {len(value)} characters; at most {MAX_COIL_ID_LENGTH}")
    if any(not ch.isprintable() for ch in value):
        raise JobInvalid("coil_id contains control characters; use printable text")
    return value.strip()


def check_metres(value: Any, name: str, *, negative: bool = False) -> float | None:
    """A position in metres: a finite number within MAX_POSITION_M (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobInvalid(f"{name} must be a number of metres, got {type(value).__name__}")
    lowest = -MAX_POSITION_M if negative else 0.0
    if not lowest <= value <= MAX_POSITION_M:  # NaN fails both
        raise JobInvalid(f"{name} must be between {lowest:g} and {MAX_POSITION_M:g} metres")
    return float(value)


def check_frame_index(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobInvalid(f"frame_index must be a whole number, got {type(value).__name__}")
    if not 0 <= value <= MAX_FRAME_INDEX:
        raise JobInvalid(f"frame_index must be between 0 and {MAX_FRAME_INDEX}")
    return value


def check_job_id(value: Any) -> str:
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    # not str(value): a value nested deep enough raises RecursionError on the way
    shown = repr(value[:40]) if isinstance(value, str) else f"a {type(value).__name__}"
    raise JobInvalid(f"job_id must be a UUID string, got {shown}")


def check_meta(value: Any) -> dict[str, Any]:
    """``meta`` as a row stores it: a JSON object of valid Unicode and finite numbers,
    at most MAX_META_DEPTH deep and MAX_META_BYTES long (``{}`` for None)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JobInvalid(f"meta must be an object, got {type(value).__name__}")
    if json_depth(value) > MAX_META_DEPTH:
        raise JobInvalid(f"meta is nested more than {MAX_META_DEPTH} levels deep")
    try:
        text = json.dumps(value, default=str, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise JobInvalid("meta holds text that is not valid Unicode (a lone surrogate)") from None
    except ValueError:
        # PostgreSQL's json has no NaN or Infinity, so no row could hold this meta
        raise JobInvalid(
            "meta holds NaN or Infinity; send numbers JSON can hold, or null"
        ) from None
    if size > MAX_META_BYTES:
        raise JobInvalid(f"meta is larger than {MAX_META_BYTES} bytes of JSON")
    return value


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, depth)
            if depth <= MAX_META_DEPTH:  # deeper is refused anyway: stop looking
                stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class InspectJob:
    job_id: str
    camera: str
    captured_at: datetime
    image_b64: str | None = None
    image_path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    submitted_at: datetime | None = None
    coil_id: str | None = None
    frame_index: int | None = None
    position_m: float | None = None
    across_m: float | None = None
    coil_end: bool = False

    @classmethod
    def for_image_bytes(
        cls,
        data: bytes,
        camera: str,
        captured_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
        job_id: str | None = None,
        trace: Trace | None = None,
    ) -> InspectJob:
        """A new job carrying the image inside the message, checked as a worker checks
        it (``JobInvalid``): what a worker would refuse is refused before it is sent."""
        job = cls(
            job_id=str(uuid.uuid4()) if job_id is None else check_job_id(job_id),
            camera=check_camera(camera),
            captured_at=captured_at or datetime.now(UTC),
            image_b64=base64.b64encode(data).decode("ascii"),
            meta=dict(check_meta(meta)),
            **(trace or Trace()).fields(),
        )
        cls.from_message(job.to_message())
        return job

    def to_message(self) -> dict[str, Any]:
        """The task's keyword arguments: JSON types only."""
        message: dict[str, Any] = {
            "job_id": self.job_id,
            "camera": self.camera,
            "captured_at": self.captured_at.isoformat(),
            "meta": self.meta,
            "submitted_at": (self.submitted_at or datetime.now(UTC)).isoformat(),
        }
        if self.image_b64 is not None:
            message["image_b64"] = self.image_b64
        if self.image_path is not None:
            message["image_path"] = self.image_path
        # traceability only when there is some: messages without it stay as they were
        for name in ("coil_id", "frame_index", "position_m", "across_m"):
            if getattr(self, name) is not None:
                message[name] = getattr(self, name)
        if self.coil_end:
            message["coil_end"] = True
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> InspectJob:
        """Check a received message field by field; raise ``JobInvalid`` on the first fault."""
        unknown = set(message) - {
            "job_id",
            "camera",
            "captured_at",
            "image_b64",
            "image_path",
            "meta",
            "submitted_at",
            *TRACE_FIELDS,
        }
        if unknown:
            raise JobInvalid(f"unknown message fields: {', '.join(sorted(unknown))}")
        for name in ("job_id", "camera", "captured_at"):
            if name not in message:
                raise JobInvalid(f"the message has no {name}")
        image_b64, image_path = message.get("image_b64"), message.get("image_path")
        if (image_b64 is None) == (image_path is None):
            raise JobInvalid("the message needs exactly one of image_b64 or image_path")
        if image_b64 is not None and not isinstance(image_b64, str):
            raise JobInvalid(f"image_b64 must be a base64 string, got {type(image_b64).__name__}")
        if image_path is not None and (not isinstance(image_path, str) or not image_path):
            raise JobInvalid("image_path must be a non-empty string")
        meta = check_meta(message.get("meta"))
        submitted = message.get("submitted_at")
        trace = Trace.from_fields(message)
        return cls(
            job_id=check_job_id(message["job_id"]),
            camera=check_camera(message["camera"]),
            captured_at=parse_timestamp(message["captured_at"], "captured_at"),
            image_b64=image_b64,
            image_path=image_path,
            meta=meta,
            submitted_at=None if submitted is None else parse_timestamp(submitted, "submitted_at"),
            **trace.fields(),
        )


TRACE_FIELDS = ("coil_id", "frame_index", "position_m", "across_m", "coil_end")


@dataclass(frozen=True)
class Trace:
    """Where a frame was taken: the coil, its place along and across the strip, and
    whether it is the coil's last. Checked the same way wherever a job is made."""

    coil_id: str | None = None
    frame_index: int | None = None
    position_m: float | None = None
    across_m: float | None = None
    coil_end: bool = False

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> Trace:
        """The fields of a message, a form or an API body (``JobInvalid`` on a fault)."""
        coil_end = values.get("coil_end", False)
        if not isinstance(coil_end, bool):
            raise JobInvalid(f"coil_end must be true or false, got {type(coil_end).__name__}")
        trace = cls(
            coil_id=check_coil_id(values.get("coil_id")),
            frame_index=check_frame_index(values.get("frame_index")),
            position_m=check_metres(values.get("position_m"), "position_m"),
            across_m=check_metres(values.get("across_m"), "across_m", negative=True),
            coil_end=coil_end,
        )
        if trace.coil_id is None and (trace.coil_end or trace.frame_index is not None):
            raise JobInvalid("coil_end and frame_index need the coil_id they belong to")
        return trace

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TRACE_FIELDS}


def decode_b64_image(image_b64: str, max_bytes: int) -> bytes:
    """The image bytes of ``image_b64``, refusing oversized ones before decoding."""
    if len(image_b64) > (max_bytes * 4) // 3 + 4:
        raise JobInvalid(
            f"image_b64 holds more than {max_bytes:,} bytes; send a smaller image "
            "or raise MAX_IMAGE_BYTES"
        )
    try:
        return base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise JobInvalid("image_b64 is not valid base64; encode the file's bytes") from None


def send_job(job: InspectJob, celery_app: Any) -> str:
    """Enqueue ``job`` on the ``inspect`` queue; returns its job_id.

    The Celery task id is the job_id, so a job can be traced from producer to row.
    """
    celery_app.send_task(TASK_NAME, kwargs=job.to_message(), queue=QUEUE_NAME, task_id=job.job_id)
    return job.job_id

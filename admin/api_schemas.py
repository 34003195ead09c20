"""The bodies of ``/api/v1/``, declared once: the handlers parse requests and build
responses with these models, and the OpenAPI document is generated from them.

Response models forbid extra fields, so a field a handler sends that is not
declared here fails at once (and the document says ``additionalProperties:
false``). What a value may be beyond its shape (a camera name, a UUID, a label)
is checked where the rest of the line checks it: ``core.jobs`` and
``admin.inspections``. Each model's name is its schema's name in the document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema
from werkzeug.datastructures import FileStorage

# The values of core.tables.STATUSES, REVIEW_STATES and admin.review_queue.SORTS, written
# out so that type checkers see them; tests/integration/test_api.py checks that they agree.
Status = Literal["passed", "flagged", "rejected"]
ReviewState = Literal["pending", "confirmed", "false_alarm", "relabeled"]
Sort = Literal["newest", "oldest", "dissimilar", "similar"]
ReviewAction = Literal["confirm", "false_alarm", "relabel", "comment"]
# core.tables.COIL_VERDICTS (tests/integration/test_traceability.py checks that they agree)
CoilVerdict = Literal["ship", "hold"]

# As datetime.isoformat() writes it ("+00:00"), as the API always has.
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


# Text whose form the line checks itself (core.jobs, admin.review_queue), documented as such.
DateTimeText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
UuidText = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


def _uploaded_file(value: Any) -> FileStorage:
    if not isinstance(value, FileStorage):
        raise ValueError("send the image as a file (multipart/form-data)")
    return value


UploadedFile = Annotated[
    FileStorage,
    PlainValidator(_uploaded_file),
    WithJsonSchema({"type": "string", "format": "binary"}),
]


class Request(BaseModel):
    """A request part: fields it does not know are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore")


class Body(BaseModel):
    """A response body: nothing undeclared reaches the client."""

    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------


class InspectionQuery(Request):
    status: Literal["", Status] = Field("", description="passed, flagged or rejected; '': any")
    camera: str = Field("", description="camera name")
    label: str = Field("", description="predicted label")
    review: Literal["", ReviewState] = Field("", description="review state; '': any")
    since: DateTimeText | None = Field(
        None, description="processed at or after; a malformed time is ignored"
    )
    until: DateTimeText | None = Field(
        None, description="processed before; a malformed time is ignored"
    )
    sort: Sort = Field("newest", description="order of the pages")
    coil_id: str = Field("", description="the coil (or lot) the frames belong to")
    after: str = Field("", description="the `next` cursor of the previous page")
    limit: int = Field(50, description="page size; below 1 counts as 1, above 500 as 500")


class ReviewRequest(Request):
    action: ReviewAction
    label: str | None = Field(None, description="the label the image should have (relabel)")
    comment: str | None = None
    reviewer: str | None = Field(
        None,
        description=(
            "the person the review is for; recorded as 'api:<token name> for <reviewer>': "
            "the token signs the review"
        ),
    )


class TracedJob(Request):
    """Where a submitted frame was taken (all optional), checked as every job's trace
    is (``core.jobs.Trace``)."""

    coil_id: str | None = Field(
        None, description="the coil (or lot) the frame belongs to; at most 80 characters"
    )
    frame_index: int | None = Field(
        None,
        description="the frame's number on its coil, from 0 at the head; times the "
        "camera's frame length, its position when `position_m` is not sent (needs `coil_id`)",
    )
    position_m: float | None = Field(
        None, description="the frame's place along the coil: metres from its head"
    )
    across_m: float | None = Field(
        None,
        description="the frame's place across the strip: metres from its reference edge "
        "(the camera's setting when not sent)",
    )
    coil_end: bool = Field(
        False, description="true on the coil's last frame: the coil has ended (needs `coil_id`)"
    )


class JobSubmission(TracedJob):
    """A job as JSON, the image inside it."""

    image_b64: str = Field(json_schema_extra={"contentEncoding": "base64"})
    camera: str
    captured_at: DateTimeText | None = None
    job_id: UuidText | None = Field(
        None, description="your idempotency key; made for you when absent"
    )
    meta: dict[str, Any] | None = None


class JobUpload(TracedJob):
    """A job as a multipart form, the image as a file."""

    image: UploadedFile
    camera: str
    captured_at: DateTimeText | None = None
    job_id: UuidText | None = Field(
        None, description="your idempotency key; made for you when absent"
    )


# -- responses -----------------------------------------------------------------------


class Distance(BaseModel):
    """One reference's distance, as the worker stored it; keys it adds later are not
    sent until they are declared here."""

    model_config = ConfigDict(extra="ignore")

    reference_id: int
    label: str
    kind: Literal["defect", "ok"]
    distance: float


class Review(Body):
    state: ReviewState
    label: str | None
    by: str | None
    at: Timestamp | None
    comment: str | None


class Finding(Body):
    """A connected anomalous region of a frame judged by its camera's good-surface
    memory."""

    rank: int = Field(description="0: the most anomalous region of its frame")
    x: int = Field(description="the region's box: left edge, in frame pixels")
    y: int = Field(description="the region's box: top edge, in frame pixels")
    width: int = Field(description="the box's width, in frame pixels")
    height: int = Field(description="the box's height, in frame pixels")
    area: int = Field(description="frame pixels of the region above the frame threshold")
    score: float = Field(description="the region's highest anomaly score")
    label: str = Field(
        description="the label of the nearest defect reference to the region; 'unknown' "
        "when none is within the match threshold"
    )
    reference_id: int | None = Field(description="that reference")
    distance: float | None = Field(description="the region's distance to that reference")


class Inspection(Body):
    id: int
    job_id: UuidText
    camera: str
    status: Status
    label: str | None
    dissimilarity: float | None = Field(
        description="the nearest reference's distance; for a frame judged by findings, its "
        "anomaly score"
    )
    threshold: float | None = Field(
        description="the threshold it was judged by (for a frame, flagged when its score is "
        "above it)"
    )
    nearest_reference_id: int | None
    distances: list[Distance]
    model_version: str | None
    error: str | None = Field(description="why the image was rejected")
    meta: dict[str, Any]
    coil_id: str | None = Field(description="the coil (or lot) the frame belongs to")
    frame_index: int | None = Field(description="the frame's number on its coil, as sent")
    position_m: float | None = Field(
        description="the frame's place along the coil, metres from its head (sent, or "
        "`frame_index` times the camera's frame length)"
    )
    across_m: float | None = Field(
        description="the frame's place across the strip, metres from its reference edge "
        "(sent, or the camera's setting)"
    )
    captured_at: Timestamp | None
    received_at: Timestamp
    processed_at: Timestamp
    image_url: str | None = Field(description="the stored image; the same token may fetch it")
    findings: list[Finding] = Field(
        description="the anomalous regions of a frame judged by its camera's good-surface "
        "memory, most anomalous first; empty for an image judged whole"
    )
    anomaly_map: str | None = Field(
        description="the frame's anomaly heat map: a PNG with transparency at the memory's "
        "grid size, to stretch over the frame (the same token may fetch it); null for an "
        "image judged whole"
    )
    review: Review


class InspectionPage(Body):
    items: list[Inspection]
    next: str | None = Field(description="pass as `after` for the next page; null: the last")


class Coil(Body):
    """A coil (or lot) as the line counted it from its stored frames."""

    coil_id: str
    frames: int = Field(description="its frames stored so far")
    flagged: int = Field(description="of them flagged")
    length_m: float | None = Field(description="the furthest position seen, in metres")
    first_frame_at: Timestamp
    last_frame_at: Timestamp
    ended_at: Timestamp | None = Field(description="when it ended; null while it is open")
    verdict: CoilVerdict | None = Field(
        description="the coil rules' verdict, made after its end; null until then"
    )


class JobQueued(Body):
    job_id: UuidText
    status: Literal["queued"]


class Error(Body):
    error: str = Field(description="what was wrong, and what to do")

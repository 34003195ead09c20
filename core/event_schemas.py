"""The payloads of the events pushed to plant systems, as models: their JSON schemas
are served in the OpenAPI document (its ``webhooks`` and ``components``), and tests
check the payloads the workers really send against them. docs/events.md explains
each field; ``core/outbox.py`` (and the modules that call ``emit``) make them.

Extra fields are allowed: a receiver ignores what it does not know, so fields can be
added within a payload version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema


class EventPayload(BaseModel):
    """What every event carries first."""

    model_config = ConfigDict(extra="allow")

    event: str = Field(description="the event's kind")
    version: int = Field(description="the payload version (1); raised by a breaking change")
    line: str = Field(description="the line (LINE_NAME) it is from")
    at: datetime = Field(description="when the event was written (UTC)")


class EventFinding(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str | None
    box: list[int] = Field(min_length=4, max_length=4, description="x, y, width, height (px)")
    area: float = Field(description="pixels")
    score: float
    distance: float | None = Field(description="to the nearest defect reference")


class InspectionFlaggedEvent(EventPayload):
    """A flagged inspection (``inspection.flagged``)."""

    event: Literal["inspection.flagged"]
    inspection_id: int
    job_id: str
    camera: str
    status: Literal["flagged"]
    label: str | None
    dissimilarity: float | None
    model_version: str | None
    captured_at: datetime | None
    processed_at: datetime | None
    coil_id: str | None
    frame_index: int | None
    position_m: float | None
    across_m: float | None
    findings: list[EventFinding]


class CoilHoldReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    rule_id: int
    label: str = Field(description="the rule's label; * for any")
    count: int
    limit: int
    per_m: float | None = Field(description="counted per this many metres; null: whole coil")
    text: str


class CoilVerdictEvent(EventPayload):
    """A coil judged at its end (``coil.verdict``)."""

    event: Literal["coil.verdict"]
    coil_id: str
    verdict: Literal["ship", "hold"]
    reasons: list[CoilHoldReason]
    counts: dict[str, int] = Field(description="marks on the coil by label")
    frames: int
    flagged: int
    length_m: float | None
    first_frame_at: datetime | None
    last_frame_at: datetime | None
    ended_at: datetime | None


class ReportPeriod(BaseModel):
    start: datetime | None
    end: datetime | None


class ReportReadyEvent(EventPayload):
    """A report made (``report.ready``)."""

    event: Literal["report.ready"]
    report_id: int
    kind: Literal["coil", "shift"]
    subject: str = Field(description="the coil's id, or the shift's start (plant time)")
    period: ReportPeriod
    made_by: str | None = Field(description="null: made automatically")
    summary: dict[str, Any] = Field(description="the report's single values")
    pdf: str = Field(description="the PDF's path on the site")
    csv: str = Field(description="the CSV's path on the site")


class TestEvent(EventPayload):
    """A test sent from the Webhooks page to one webhook (``test``)."""

    event: Literal["test"]
    test: Literal[True]
    webhook: str
    sent_by: str
    message: str


#: each event kind's model, in the order docs/events.md lists them
EVENT_MODELS: dict[str, type[EventPayload]] = {
    "inspection.flagged": InspectionFlaggedEvent,
    "coil.verdict": CoilVerdictEvent,
    "report.ready": ReportReadyEvent,
    "test": TestEvent,
}


def event_json_schemas(ref_template: str = "#/components/schemas/{model}") -> dict[str, Any]:
    """Every model's JSON schema (nested ones included) by model name, referring to
    each other through ``ref_template``."""
    _refs, document = models_json_schema(
        [(model, "validation") for model in EVENT_MODELS.values()], ref_template=ref_template
    )
    return dict(document.get("$defs", {}))

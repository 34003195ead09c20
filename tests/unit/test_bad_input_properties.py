"""Bad input at scale, property-based (hypothesis): thousands of hostile job messages,
broker items, image paths, image bytes and traces (a job's coil and place on it, a
hot folder's sidecar), each ending in exactly one explained
outcome: accepted and storable as it is, or refused with a message (``JobInvalid``,
``ImageRejected``, ``MessageRefused``, ``ImageTooLarge``), never another exception.

The ``@example`` cases are inputs these properties found that once ended otherwise
(each says what happened); tests/integration/test_bad_input_at_scale.py sends such
input through a real worker.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kombu import Connection

from core.images import ImageRejected, decode_image
from core.inbox import read_inbox_file
from core.jobs import (
    MAX_CAMERA_LENGTH,
    MAX_META_BYTES,
    MAX_POSITION_M,
    QUEUE_NAME,
    TRACE_FIELDS,
    InspectJob,
    JobInvalid,
    Trace,
    decode_b64_image,
)
from core.settings import settings_from_env
from producer.client import ImageTooLarge, InspectionClient
from producer.hotfolder import SidecarInvalid, read_trace
from tests.bad_input import (
    CAMERAS,
    CLEAN_META,
    EARLIEST,
    HOSTILE_META,
    HOSTILE_VALUES,
    IMAGE_BYTES,
    JSON,
    LATEST,
    TEXT,
    TINY_B64,
    assert_storable,
    bombs,
    broker_items,
    cases,
    job_messages,
    job_row,
    kombu_item,
    nested,
    nested_json,
    tiny_png,
    valid_messages,
)
from worker.envelope import MessageRefused, check_task_message, describe, json_safe
from worker.inspection import PendingJob, dead_letter_row, rejected_row, trace_columns
from worker.transport import Channel, Message

MB = 1024 * 1024
NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
JOB_ID = "0b0f2c7e-8f0e-4a51-9d1c-5b2a3b4c5d6e"
GOOD = {
    "job_id": JOB_ID,
    "camera": "line-3",
    "captured_at": "2026-12-05T10:00:00+00:00",
    "image_b64": TINY_B64,
}


def refused_row(pending: PendingJob) -> dict:
    """The row a worker writes for a refused message: a rejected inspection when a
    job id can be recovered, else a dead letter (worker.inspection.store_rejections)."""
    if pending.job is None and pending.recovered_job_id() is None:
        return dead_letter_row(pending)
    return rejected_row(pending, NOW)


# -- the job message -------------------------------------------------------------------


@cases(1000)
@given(message=job_messages(), task_id=st.none() | st.uuids().map(str) | TEXT)
# NaN in meta: PostgreSQL's json refused the row, and the batch holding it was lost
@example(message={**GOOD, "meta": {"reading": float("nan")}}, task_id=None)
# past year 9999 once in UTC: the row could not be written (the same loss)
@example(message={**GOOD, "captured_at": "9999-12-31T23:59:59-14:00"}, task_id=None)
@example(message={**GOOD, "submitted_at": "0001-01-01T00:00:00+14:00"}, task_id=None)
# a wrong type taken silently for "no meta" / "no submitted_at"
@example(message={**GOOD, "meta": []}, task_id=None)
@example(message={**GOOD, "submitted_at": 0}, task_id=None)
# RecursionError, not a refusal: measuring meta, and showing a job_id
@example(message={**GOOD, "meta": {"deep": nested(3000)}}, task_id=None)
@example(message={**GOOD, "job_id": nested(3000)}, task_id=JOB_ID)
# a lone surrogate: no valid Unicode, which the API's clients cannot decode
@example(message={**GOOD, "meta": {"\ud800": "x"}}, task_id=None)
# refused for another field, the row kept the NaN of its meta: the same loss
@example(message={**GOOD, "camera": "", "meta": {"t": float("inf")}}, task_id=None)
def test_a_job_message_is_accepted_and_storable_or_refused_with_a_reason(message, task_id):
    try:
        job = InspectJob.from_message(message)
    except JobInvalid as refused:
        assert str(refused)
        pending = PendingJob(message=message, task_id=task_id, error=str(refused))
        assert_storable(refused_row(pending))
        return
    assert job.job_id == str(uuid.UUID(job.job_id))
    assert job.camera.strip() and job.camera.isprintable()
    assert len(job.camera) <= MAX_CAMERA_LENGTH
    assert EARLIEST <= job.captured_at <= LATEST
    assert job.meta == ({} if message.get("meta") is None else message["meta"])
    assert (job.image_b64 is None) != (job.image_path is None)
    assert_storable(job_row(job, NOW))


@cases(300)
@given(
    text=st.one_of(
        TEXT,
        st.binary(max_size=300).map(lambda data: base64.b64encode(data).decode()),
        st.text("ABCab+/=-_\n \0", max_size=60),
    ),
    limit=st.integers(1, 512),
)
def test_image_b64_is_decoded_or_refused(text, limit):
    try:
        data = decode_b64_image(text, limit)
    except JobInvalid as refused:
        assert str(refused)
        return
    assert len(data) <= limit + 3  # the rest is decode_image's to refuse


SECRET = b"TOP-SECRET outside the inbox"
INSIDE = {"a.png": b"a", "day/b.png": b"b"}


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    """An inbox with two files, a link and a hard link to a file outside it, a FIFO,
    a folder and a file over the size limit."""
    root = tmp_path_factory.mktemp("paths")
    inbox = root / "inbox"
    (inbox / "day").mkdir(parents=True)
    for name, data in INSIDE.items():
        (inbox / name).write_bytes(data)
    (root / "secret.png").write_bytes(SECRET)
    (inbox / "link").symlink_to(root / "secret.png")
    (inbox / "day" / "up").symlink_to(root)
    os.link(root / "secret.png", inbox / "hard")
    os.mkfifo(inbox / "fifo")
    (inbox / "big.png").write_bytes(b"x" * 200)
    return inbox


PATH_PARTS = st.one_of(
    st.sampled_from(["a.png", "day", "b.png", "up", "..", ".", "", "secret.png"]),
    st.sampled_from(["link", "hard", "fifo", "big.png", "missing.png", "inbox"]),
    TEXT,
    st.builds(lambda n: "x" * n, st.integers(200, 5000)),
)


@cases(400)
@given(
    parts=st.lists(PATH_PARTS, min_size=1, max_size=5),
    start=st.sampled_from(["", "inbox", "root", "/"]),
)
# a lone surrogate: UnicodeEncodeError from os.open, taken for an internal error
@example(parts=["\ud800.png"], start="")
def test_an_image_path_reads_a_file_inside_the_inbox_or_is_refused(inbox, parts, start):
    prefix = {"": "", "inbox": f"{inbox}/", "root": f"{inbox.parent}/", "/": "/"}[start]
    path = prefix + "/".join(parts)
    try:
        data = read_inbox_file(path, inbox, 100)
    except (JobInvalid, ImageRejected) as refused:
        assert str(refused) and "TOP-SECRET" not in str(refused)
        return
    assert data in INSIDE.values()


# -- the image bytes -------------------------------------------------------------------


# Found by the property below: a TIFF whose second directory has no size (Pillow
# raises TypeError counting its frames) and a GIF cut right after an extension's
# introducer (IndexError). Each was taken for an internal error, tried three times
# and stored as "internal error ... tell the operators".
TIFF_WITHOUT_SECOND_SIZE = bytes.fromhex(
    "4949002a0800000009000001040001000000000000010101030001000000010000000000"
    "000000000000000000000000000000000000000000000000000000000000000000001101"
    "010001000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000001"
)
GIF_CUT_AFTER_AN_EXTENSION = bytes.fromhex("474946383761090006000000002c000000000900060000080021")


@cases(1500)
@example(data=TIFF_WITHOUT_SECOND_SIZE, max_bytes=8 * MB, max_pixels=40_000_000)
@example(data=GIF_CUT_AFTER_AN_EXTENSION, max_bytes=8 * MB, max_pixels=40_000_000)
@given(
    data=IMAGE_BYTES,
    max_bytes=st.sampled_from([8 * MB, 8 * MB, 8 * MB, 1000]),
    max_pixels=st.sampled_from([40_000_000, 1_000_000, 1_000_000, 100]),
)
def test_image_bytes_decode_to_an_inspectable_image_or_are_rejected(data, max_bytes, max_pixels):
    try:
        image = decode_image(data, max_bytes, max_pixels)
    except ImageRejected as refused:
        assert str(refused)
        return
    assert image.mode in {"L", "RGB"}
    assert 1 <= image.width * image.height <= max_pixels and len(data) <= max_bytes
    assert len(image.tobytes()) == image.width * image.height * len(image.mode)


@cases(250)
@given(data=bombs())
def test_a_decompression_bomb_is_rejected_before_its_pixels_are_decoded(data):
    # 2**31 x 2**31 pixels decoded would be 4 EiB: a bomb that got through fails here
    try:
        image = decode_image(data, 8 * MB, 1_000_000)
    except ImageRejected as refused:
        assert str(refused)
        return
    assert image.width * image.height <= 1_000_000


# -- the broker envelope ---------------------------------------------------------------


@pytest.fixture(scope="module")
def channel() -> Iterator:
    """A kombu channel (in memory) to read messages with, as the worker's does."""
    with Connection("memory://") as connection:
        yield connection.default_channel


def header_item(headers: dict, body: str = "[[], {}, {}]") -> bytes:
    return kombu_item(body, headers, {})


@cases(600)
@given(item=broker_items())
# the transport's own header set by the sender, with NUL: a reason PostgreSQL refuses
@example(item=header_item({"task": "inspect", "x-inspection-unreadable": "\0"}))
# a task name longer than the dead letter's column
@example(item=header_item({"task": "t" * 300, "id": "x"}))
def test_a_broker_item_is_handed_to_celery_or_refused_with_a_storable_reason(channel, item):
    message = Message(Channel.envelope(item, QUEUE_NAME), channel=channel)
    try:
        check_task_message(message)
    except MessageRefused as refused:
        assert refused.reason
        pending = PendingJob(
            message=refused.kwargs,
            task_id=refused.task_id,
            error=refused.reason,
            task_name=refused.task,
            envelope=describe(message),
        )
        assert_storable(refused_row(pending))
        return
    # handed to Celery: an inspect task with keyword arguments, of which a row is made
    args, kwargs, _ = message.decode()
    assert message.headers["task"] == "inspect" and args == [] and isinstance(kwargs, dict)


def test_a_header_nested_too_deep_to_show_is_named_by_its_type():
    # The transport reads a header nested almost as deep as the interpreter allows;
    # showing it for the dead letter, a few calls deeper, raised RecursionError.
    assert json_safe({"lang": nested(3000), "id": "x"}) == {"lang": "a Nested", "id": "x"}


@cases(50)
@given(depth=st.integers(5000, 200_000))
def test_a_broker_item_nested_too_deep_to_read_is_refused(channel, depth):
    message = Message(Channel.envelope(nested_json(depth).encode(), QUEUE_NAME), channel=channel)
    with pytest.raises(MessageRefused, match="not JSON"):
        check_task_message(message)


# -- the producer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_producer(tmp_path_factory) -> Iterator[InspectionClient]:
    """A producer whose Redis does not answer: what it accepts goes to its spool."""
    settings = settings_from_env({}).model_copy(
        update={
            "redis_url": "redis://127.0.0.1:1/0",
            "spool_dir": tmp_path_factory.mktemp("spool"),
            "max_image_bytes": 4096,
        }
    )
    with InspectionClient(settings) as client:
        yield client


ZONES = st.sampled_from([None, UTC, timezone(-timedelta(hours=14)), timezone(timedelta(hours=14))])


@cases(250)
@given(
    data=st.just(tiny_png()) | st.binary(max_size=5000),
    camera=CAMERAS | TEXT | HOSTILE_VALUES,
    captured_at=st.none() | st.datetimes(timezones=ZONES),
    meta=st.none() | CLEAN_META | HOSTILE_META,
    job_id=st.none() | st.uuids().map(str) | HOSTILE_VALUES,
)
# each sent (spooled) a job the workers then refused: no clear refusal at the producer
@example(data=b"x", camera="c", captured_at=None, meta=None, job_id="not-a-uuid")
@example(data=b"x", camera="c", captured_at=None, meta={"t": float("nan")}, job_id=None)
@example(data=b"x", camera="c", captured_at=None, meta={"k": "x" * 20_000}, job_id=None)
@example(
    data=b"x",
    camera="c",
    captured_at=datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=14))),
    meta=None,
    job_id=None,
)
# a job_id with a slash named a spool file in a folder that does not exist
@example(data=b"x", camera="c", captured_at=None, meta=None, job_id="a/b")
def test_the_producer_refuses_what_a_worker_would_refuse(
    offline_producer, data, camera, captured_at, meta, job_id
):
    spool = offline_producer.spool
    before = len(spool)
    try:
        sent = offline_producer.submit_bytes(data, camera, captured_at, meta, job_id)
    except (JobInvalid, ImageTooLarge) as refused:
        assert str(refused) and len(spool) == before
        return
    # accepted: spooled, Redis being away, as a message the workers accept
    (path,) = [p for p in spool.folder.glob("*.json") if p.stem == sent]
    job = InspectJob.from_message(json.loads(path.read_text()))
    assert job.job_id == sent and len(job.meta) <= MAX_META_BYTES


# -- traceability ----------------------------------------------------------------------

#: what a sender may put in a job's trace fields: good values, edges, anything at all
TRACE_VALUES = {
    "coil_id": st.none() | CAMERAS.map(lambda text: text[:90]) | TEXT | HOSTILE_VALUES,
    "frame_index": st.none() | st.integers(-3, 2**31 + 3) | st.floats() | HOSTILE_VALUES,
    "position_m": st.none() | st.floats() | st.integers(-(2**70), 2**70) | HOSTILE_VALUES,
    "across_m": st.none() | st.floats() | st.integers(-(2**70), 2**70) | HOSTILE_VALUES,
    "coil_end": st.booleans() | HOSTILE_VALUES,
}
TRACES = st.fixed_dictionaries({}, optional=TRACE_VALUES)
#: trace fields as JSON text can hold them (a hot folder's sidecar)
JSON_TRACES = st.fixed_dictionaries(
    {},
    optional={
        "coil_id": st.none() | CAMERAS | TEXT | JSON,
        "frame_index": st.none() | st.integers(-3, 2**40) | JSON,
        "position_m": st.none() | st.floats() | JSON,
        "across_m": st.none() | st.floats() | JSON,
        "coil_end": st.booleans() | JSON,
    },
)


def trace_of(job: InspectJob) -> Trace:
    return Trace(**{name: getattr(job, name) for name in TRACE_FIELDS})


def assert_trace_storable(job: InspectJob) -> None:
    """A trace the ``inspections`` and ``coils`` rows take as it is."""
    if job.coil_id is not None:
        assert job.coil_id == job.coil_id.strip() and 0 < len(job.coil_id) <= 80
        assert job.coil_id.isprintable()
    else:
        assert not job.coil_end and job.frame_index is None
    if job.frame_index is not None:
        assert type(job.frame_index) is int and 0 <= job.frame_index < 2**31
    for value in (job.position_m, job.across_m):
        assert value is None or (type(value) is float and abs(value) <= MAX_POSITION_M)
    assert job.position_m is None or job.position_m >= 0


@cases(800)
@given(base=valid_messages(), trace=TRACES)
# a coil id of blanks, NaN and an infinite position, an index without its coil
@example(base=GOOD, trace={"coil_id": "  "})
@example(base=GOOD, trace={"coil_id": "c", "position_m": float("nan")})
@example(base=GOOD, trace={"coil_id": "c", "across_m": float("-inf")})
@example(base=GOOD, trace={"frame_index": 3})
@example(base=GOOD, trace={"coil_id": "c", "frame_index": True, "coil_end": 1})
def test_a_traced_job_is_accepted_and_storable_or_refused_with_a_reason(base, trace):
    message = {**base, **trace}
    try:
        job = InspectJob.from_message(message)
    except JobInvalid as refused:
        assert str(refused)
        pending = PendingJob(message=message, task_id=None, error=str(refused))
        assert_storable(refused_row(pending))
        return
    assert_trace_storable(job)
    assert_storable({**job_row(job, NOW), **trace_columns(job)})
    assert trace_of(InspectJob.from_message(job.to_message())) == trace_of(job)


@cases(200)
@given(trace=TRACES)
def test_the_producer_spools_a_trace_whole_or_refuses_it(offline_producer, trace):
    try:
        checked = Trace.from_fields(trace)
    except JobInvalid as refused:
        assert str(refused)
        return
    sent = offline_producer.submit_bytes(tiny_png(), "c", trace=checked)
    # Redis is away: the spooled message carries the trace to the workers
    (path,) = [p for p in offline_producer.spool.folder.glob("*.json") if p.stem == sent]
    job = InspectJob.from_message(json.loads(path.read_text()))
    assert trace_of(job) == checked


@cases(400)
@given(
    sidecar=st.one_of(
        JSON_TRACES.map(lambda fields: json.dumps(fields, ensure_ascii=False)),
        st.dictionaries(TEXT, JSON, max_size=4).map(lambda fields: json.dumps(fields)),
        JSON.map(json.dumps),
        TEXT,
    ).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.binary(max_size=200)
)
@example(sidecar=b'{"coil_id": "c", "position_m": NaN}')
@example(sidecar=b"[" * 5000 + b"]" * 5000)
@example(sidecar=b"\xff\xfe")
def test_a_sidecar_is_read_as_a_trace_or_refused_with_a_reason(sidecar):
    try:
        trace = read_trace(sidecar, "frame.png.json")
    except SidecarInvalid as refused:
        assert "frame.png.json" in str(refused)
        return
    assert Trace.from_fields(trace.fields()) == trace

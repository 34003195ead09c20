"""Bad input at scale through real processes: hundreds of hypothesis-drawn messages,
valid and hostile, sent to one real worker with a Celery client and pushed raw onto
the Redis list. Each ends in exactly one row (inspected, or rejected saying why) or
one dead letter, no job id has two rows, and the worker is still there at the end
and inspects one more job. The HTTP ingest refuses what a worker would refuse, with
a 4xx and a message, never a 500.

The unit-level properties (tests/unit/test_bad_input_properties.py) cover each check
with thousands of cases; this one shows that a worker lives up to them.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select

from core.db import session_scope
from core.jobs import QUEUE_NAME, TRACE_FIELDS, InspectJob, JobInvalid
from core.queue import make_client
from core.tables import DeadLetter, Inspection
from producer.client import InspectionClient
from tests.bad_input import (
    ENVELOPE_PARTS,
    JSON,
    TEXT,
    UNICODE,
    assert_storable,
    bombs,
    cases,
    celery_headers,
    encode,
    job_messages,
    job_row,
    kombu_item,
    nested_json,
    to_json,
)
from tests.conftest import SAMPLE, png_bytes, sample_images, seed_references, wait_for_rows
from tests.integration.conftest import make_token

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
GOOD_IMAGES = [base64.b64encode(path.read_bytes()).decode() for path in sample_images()[:6]]
BAD_IMAGES = [
    base64.b64encode(data).decode()
    for data in (
        b"",
        b"hello, this is text",
        b"%PDF-1.7\n" + b"\0" * 64,
        b"PK\x03\x04" + b"\0" * 64,
        sample_images()[0].read_bytes()[:300],  # a PNG cut short
        png_bytes(Image.new("I;16", (20, 20))),  # 16-bit
        encode(Image.new("CMYK", (20, 20)), "JPEG"),
        png_bytes(Image.new("RGBA", (20, 20))),
        encode(Image.new("L", (1, 1)), "PNG")[:16] + bytes(8),  # 0x0 pixels
    )
]
BAD = set(BAD_IMAGES)
GOOD_JOB = {
    "job_id": "0b0f2c7e-8f0e-4a51-9d1c-5b2a3b4c5d6e",  # each sent with an id of its own
    "camera": "line-3",
    "captured_at": "2026-12-05T10:00:00+00:00",
    "image_b64": GOOD_IMAGES[0],
}
#: the image of a drawn message: mostly a sample image, else one no worker inspects
IMAGE_B64 = st.sampled_from(GOOD_IMAGES * 2) | st.sampled_from(BAD_IMAGES)
BOMBS_B64 = bombs().map(lambda data: base64.b64encode(data).decode())


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return isinstance(value, str)


class Ledger:
    """What each message sent should end as: a row by job id (``rejected``, or
    ``either`` for a valid job: inspected, or rejected for its image), or a dead letter
    (by the task id it named, where it named one). A job's validity is the schema's
    own verdict (``InspectJob.from_message``), which the unit properties check."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}
        self.dead: list[str | None] = []
        self.sent: dict[str, Any] = {}  # job id -> what was sent, shown when it is missing
        self.count = itertools.count()

    def expect(self, kwargs: dict, task_id: str, refused: bool) -> None:
        """Like the worker: the job's own id when valid, else the task id when a UUID."""
        self.sent[task_id] = self.sent[str(kwargs.get("job_id"))] = (
            {k: str(v)[:200] for k, v in kwargs.items()},
            task_id,
            refused,
        )
        try:
            job: InspectJob | None = InspectJob.from_message(kwargs)
        except JobInvalid:
            job = None
        if job is not None:
            bad_image = kwargs.get("image_b64") in BAD or kwargs.get("image_b64") is None
            outcome = "rejected" if refused or bad_image else "either"
            self.rows[job.job_id] = outcome
            return
        raw = kwargs.get("job_id")
        key = (
            str(uuid.UUID(raw))
            if is_uuid(raw)
            else str(uuid.UUID(task_id))
            if is_uuid(task_id)
            else None
        )
        if key is None:
            self.dead.append(task_id)
        else:
            self.rows[key] = "rejected"


def unique_ids(kwargs: dict) -> dict:
    """``kwargs`` with a job id of its own where it has a valid one: hypothesis draws
    the same UUIDs again, and two messages of one job make one row by design."""
    if is_uuid(kwargs.get("job_id")):
        return {**kwargs, "job_id": str(uuid.uuid4())}
    return kwargs


def deep_meta_item(job_id: str, depth: int) -> bytes:
    """A job whose meta is nested ``depth`` deep, pushed raw: no Celery client in a
    test's stack can write it (json.dumps recurses)."""
    kwargs = {"job_id": job_id, "camera": "deep", "captured_at": NOW.isoformat()}
    kwargs["image_b64"] = GOOD_IMAGES[0]
    body = to_json([[], {**kwargs, "meta": "__meta__"}, {}])
    body = body.replace('"__meta__"', '{"deep": ' + nested_json(depth) + "}")
    return kombu_item(body, {"task": "inspect", "id": job_id}, {})


def test_hundreds_of_hostile_messages_each_end_in_one_explained_outcome(settings, start_worker):
    seed_references(settings)
    worker = start_worker(settings)
    client = make_client(settings)
    broker = redis.Redis.from_url(settings.redis_url)
    ledger = Ledger()

    @cases(260)
    @given(
        kwargs=job_messages(image_b64=IMAGE_B64, max_depth=40)
        | job_messages(BOMBS_B64, max_depth=40),
        task_id=st.sampled_from(["job", "uuid", "tag"]),
        options=st.sampled_from([{}] * 8 + [{"countdown": 3600}, {"expires": 3600}]),
    )
    # Each of these once made a row PostgreSQL refused; the batch holding it was then
    # acknowledged with no rows at all, the good jobs beside it lost with it.
    @example(kwargs={**GOOD_JOB, "meta": {"reading": float("nan")}}, task_id="job", options={})
    @example(
        kwargs={**GOOD_JOB, "captured_at": "9999-12-31T23:59:59-14:00"}, task_id="job", options={}
    )
    @example(
        kwargs={**GOOD_JOB, "camera": "", "meta": {"t": float("inf")}}, task_id="job", options={}
    )
    @example(kwargs=GOOD_JOB, task_id="job", options={})
    def send_with_celery(kwargs, task_id, options):
        kwargs = unique_ids(kwargs)
        tag = f"celery-{next(ledger.count)}"
        chosen = {
            "job": kwargs.get("job_id") if isinstance(kwargs.get("job_id"), str) else tag,
            "uuid": str(uuid.uuid4()),
            "tag": tag,
        }[task_id]
        client.send_task("inspect", kwargs=kwargs, queue=QUEUE_NAME, task_id=chosen, **options)
        ledger.expect(kwargs, chosen, refused=bool(options))

    @cases(150)
    @given(data=st.data())
    def push_raw(data):
        # no id a row could be made of: each of these ends as a dead letter
        tag = f"raw-{next(ledger.count)}"
        kind = data.draw(st.sampled_from(["bytes", "json", "envelope", "envelope"]))
        if kind == "bytes":
            item = data.draw(st.binary(max_size=600))
        elif kind == "json":
            item = to_json(data.draw(JSON)).encode()
        else:
            kwargs = data.draw(job_messages(max_depth=40))
            kwargs["job_id"] = data.draw(st.sampled_from([tag, None, 7]) | TEXT)
            body = data.draw(
                st.sampled_from([to_json([[], kwargs, {}])] * 3)
                | JSON.map(to_json)
                | TEXT
                | st.builds(nested_json, st.integers(1, 3000))
            )
            headers = data.draw(celery_headers(job_id=tag) | st.none() | JSON)
            names = data.draw(st.lists(st.sampled_from(ENVELOPE_PARTS), max_size=2, unique=True))
            item = kombu_item(body, headers, {name: data.draw(JSON) for name in names})
        broker.lpush(QUEUE_NAME, item)
        ledger.dead.append(tag)

    send_with_celery()
    push_raw()
    for depth in (2, 33, 100, 400, 900, 1500, 5000):
        job_id = str(uuid.uuid4())
        broker.lpush(QUEUE_NAME, deep_meta_item(job_id, depth))
        ledger.rows[job_id] = "either" if depth <= 32 else "rejected"

    expected = len(ledger.rows) + len(ledger.dead)
    assert expected >= 400, expected
    wait_for_outcomes(settings.database_url, expected, 90)

    with session_scope(settings.database_url) as session:
        rows = {row.job_id: row for row in session.scalars(select(Inspection))}
        letters = list(session.scalars(select(DeadLetter)))
        twice = session.scalar(
            select(func.count()).select_from(
                select(Inspection.job_id)
                .group_by(Inspection.job_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    assert twice == 0
    missing = {job_id: ledger.sent.get(job_id) for job_id in set(ledger.rows) - set(rows)}
    assert not missing, (missing, worker.output()[-3000:])
    # A message the ledger expected as a dead letter once (in about 1 of 6 runs, on a
    # loaded machine) ended as a rejected row instead: still one explained outcome,
    # which is what is checked here; which kind, the ledger does not always foresee.
    extra = {job_id: rows[job_id] for job_id in set(rows) - set(ledger.rows)}
    for row in extra.values():
        assert row.status == "rejected" and row.error, (row.job_id, row.status, row.error)
    for job_id, outcome in ledger.rows.items():
        row = rows[job_id]
        if row.status == "rejected":
            # explained by what was sent, never by a fault of ours
            assert row.error and "internal error" not in row.error, row.error
        else:
            assert outcome == "either" and row.status in ("passed", "flagged"), (outcome, row)
            assert row.error is None
    named = {letter.task_id for letter in letters}
    # exactly one outcome per message: a row or a letter, never both, never none
    assert len(rows) + len(letters) == expected, [t for t in ledger.dead if t not in named]
    assert len(letters) == len(ledger.dead) - len(extra)
    assert all(letter.reason for letter in letters)
    tagged = [tag for tag in ledger.dead if tag and tag.startswith("celery-")]
    assert set(tagged) <= named  # each Celery message with no job id is its own letter

    # still there, and inspects one more job
    assert worker.process.poll() is None, worker.output()[-4000:]
    assert "Unrecoverable error" not in worker.output()
    with InspectionClient(settings) as producer:
        last = producer.submit_file(SAMPLE / "scratches" / "Sc_5.png", "after-the-storm")
    wait_for_outcomes(settings.database_url, expected + 1, 60)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Inspection.status).where(Inspection.job_id == last)) in (
            "passed",
            "flagged",
        )
    assert broker.llen(QUEUE_NAME) == 0 and broker.hlen("unacked") == 0
    assert broker.llen(PROCESSING) == 0


#: the list the worker's transport moves a job to while fetching it
PROCESSING = f"{QUEUE_NAME}\x06\x16processing"


def test_an_empty_item_on_the_list_is_a_dead_letter(settings, start_worker):
    seed_references(settings)
    start_worker(settings)
    broker = redis.Redis.from_url(settings.redis_url)
    broker.lpush(QUEUE_NAME, b"")
    with InspectionClient(settings) as producer:
        producer.submit_file(SAMPLE / "crazing" / "Cr_5.png", "after-the-empty-item")
    wait_for_rows(settings.database_url, 1, 60)  # taken after the empty item
    with session_scope(settings.database_url) as session:
        reasons = list(session.scalars(select(DeadLetter.reason)))
    assert len(reasons) == 1 and "not JSON" in reasons[0], reasons
    assert broker.llen(PROCESSING) == 0


def wait_for_outcomes(url: str, expected: int, timeout: float) -> None:
    """Until rows and dead letters together number ``expected``, or ``timeout`` passed
    (what is missing is then named by the checks that follow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(url) as session:
            rows = session.scalar(select(func.count(Inspection.id))) or 0
            dead = session.scalar(select(func.count(DeadLetter.id))) or 0
        if rows + dead >= expected:
            return
        time.sleep(0.5)


# -- the HTTP ingest ---------------------------------------------------------------------


def queued_job(broker: redis.Redis) -> InspectJob:
    """The job the API just queued (taken off the queue), as a worker reads it."""
    raw = broker.lpop(QUEUE_NAME)
    assert raw is not None
    kwargs = json.loads(base64.b64decode(json.loads(raw)["body"]))[1]
    return InspectJob.from_message(kwargs)


def assert_answered(response: Any, broker: redis.Redis) -> None:
    """202 with a job a worker accepts and can store, or a 4xx saying why."""
    body = response.get_json()
    if response.status_code == 202:
        job = queued_job(broker)
        assert job.job_id == body["job_id"]
        assert_storable(job_row(job, NOW))
        return
    assert 400 <= response.status_code < 500, (response.status_code, body)
    assert set(body) == {"error"} and body["error"], body
    assert broker.llen(QUEUE_NAME) == 0


FORM_TEXT = UNICODE | st.sampled_from(["", " ", "\0", "\u202ecam", "9999-12-31T23:59:59-14:00"])


def test_the_http_ingest_refuses_bad_input_with_a_reason(app, settings):
    token = make_token(app, "fuzzer", "submit")
    auth = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    broker = redis.Redis.from_url(settings.redis_url)

    @cases(250)
    @given(
        body=job_messages(image_b64=IMAGE_B64, max_depth=40).map(
            lambda m: {k: v for k, v in m.items() if k != "image_path"}
        )
        | JSON
        | st.dictionaries(st.sampled_from(["camera", "image_b64", "meta", "job_id"]), JSON)
        # a job with any trace fields (a coil and place on it) of any value
        | st.fixed_dictionaries(
            {"camera": st.just("c"), "image_b64": IMAGE_B64},
            optional=dict.fromkeys(TRACE_FIELDS, JSON),
        )
    )
    def post_json(body):
        assert_answered(client.post("/api/v1/jobs", headers=auth, json=body), broker)

    @cases(120)
    @given(
        image=st.sampled_from([base64.b64decode(b) for b in GOOD_IMAGES[:2] + BAD_IMAGES]),
        fields=st.dictionaries(
            st.sampled_from(["camera", "captured_at", "job_id", *TRACE_FIELDS]), FORM_TEXT
        ),
    )
    @example(image=base64.b64decode(GOOD_IMAGES[0]), fields={})  # no camera: it was a 500
    def post_form(image, fields):
        data = {**fields, "image": (io.BytesIO(image), "frame.png")}
        response = client.post(
            "/api/v1/jobs", headers=auth, data=data, content_type="multipart/form-data"
        )
        assert_answered(response, broker)

    @cases(60)
    @given(raw=st.binary(max_size=300) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
    def post_bytes(raw):
        response = client.post(
            "/api/v1/jobs", headers=auth, data=raw, content_type="application/json"
        )
        assert_answered(response, broker)

    post_json()
    post_form()
    post_bytes()
    # and the meta the API takes, of any clean shape, reaches the queue as it was sent
    meta = {"coil": "A17", "position": {"along_m": 12.5}, "tags": ["edge", "ß"]}
    sent = client.post(
        "/api/v1/jobs",
        headers=auth,
        json={"camera": "c", "image_b64": GOOD_IMAGES[0], "meta": meta},
    )
    assert sent.status_code == 202 and queued_job(broker).meta == {**meta, "source": "http"}

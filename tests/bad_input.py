"""Hostile input for the property-based tests (hypothesis): job messages, image bytes
and broker items, and the check that a row made of any of it can be stored.

Shared by tests/unit/test_bad_input_properties.py (thousands of cases, no services)
and tests/integration/test_bad_input_at_scale.py (hundreds, through a real worker).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
import uuid
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from worker.inspection import base_row

#: every property test: no deadline (2 shared cores), the same cases on every run
#: (derandomize) and no example database, so CI and a laptop run the same thing
PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


def cases(count: int) -> settings:
    """PROPERTY, with ``count`` examples."""
    return settings(PROPERTY, max_examples=count)


# -- text and JSON ---------------------------------------------------------------------

#: characters that have broken text handling somewhere: NUL, controls, right-to-left
#: marks and overrides, a byte order mark, lone surrogates, emoji, path separators
NASTY = [
    "\0",
    "\x1b",
    "\n",
    "\r",
    "\t",
    "\u200f",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\ud800",
    "\udfff",
    "\udc80",
    "\U0001f600",
    "\u00a0",
    "/",
    "\\",
    "..",
    "%s",
    "'",
    '"',
    "{",
]
#: any code point, surrogates and unassigned ones included
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.lists(ANY_CHAR | st.sampled_from(NASTY), max_size=40).map("".join)
#: text a camera may be named: printable, no surrounding blanks only
PRINTABLE = st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ")
#: valid Unicode (no surrogates), any category
UNICODE = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: Python's json writes them, JSON has none
    TEXT,
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
#: JSON every database takes: finite numbers, valid Unicode
CLEAN_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(-1e9, 1e9) | UNICODE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(UNICODE, inner, max_size=3),
    max_leaves=8,
)


class Nested(list):
    """Lists ``depth`` deep, one inside the other (built without recursion), shown
    short: hypothesis prints its examples, and printing these would recurse."""

    def __init__(self, depth: int) -> None:
        inner: list = []
        for _ in range(depth - 1):
            inner = [inner]
        super().__init__([inner] if depth > 0 else [])
        self.depth = depth

    def __repr__(self) -> str:
        return f"nested({self.depth})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def nested(depth: int) -> Nested:
    return Nested(depth)


def nested_json(depth: int) -> str:
    """The JSON text of ``nested(depth)``, for depths json.dumps cannot write."""
    return "[" * depth + "]" * depth


# -- job messages ----------------------------------------------------------------------

FIELDS = ("job_id", "camera", "captured_at", "image_b64", "image_path", "meta", "submitted_at")
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=14))]
TIMESTAMPS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.sampled_from(ZONES)
).map(datetime.isoformat)
#: timestamps at and past the edges of what Python, databases and time zones hold
ODD_TIMESTAMPS = st.sampled_from(
    [
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59.999999",
        "9999-12-31T23:00:00+00:00",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01",
        "2026-02-30T00:00:00",
        "2026-12-05T25:00:00",
        "2026-12-05T10:00:00+24:00",
        "2026-12-05T10:00:00+05:30:15.123456",
        "20261205T100000Z",
        "2026-W49-5",
        "2026-12-05T10:00:00\0",
        "2026-12-05T10:00:00\ud800",
        "",
        " ",
        "now",
    ]
)
CAMERAS = st.text(PRINTABLE, min_size=1, max_size=120).filter(str.strip)
CLEAN_META = st.dictionaries(UNICODE, CLEAN_JSON, max_size=4)


@functools.cache
def hostile_meta(max_depth: int = 3000) -> st.SearchStrategy[Any]:
    """meta a sender may get wrong: NaN, lone surrogates, deep, many keys, long text."""
    return st.one_of(
        st.dictionaries(TEXT, JSON, max_size=6),
        st.builds(lambda n: {"deep": nested(n)}, st.integers(1, max_depth)),
        st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.integers(1, 5000)),
        st.builds(lambda n, c: {"long": c * n}, st.integers(1, 40_000), st.sampled_from("xé😀\0")),
        st.sampled_from(
            [
                {"reading": float("nan")},
                {"reading": float("inf")},
                {"\ud800": "x"},
                {"x": "\udfff"},
                {"\0": "\0"},
                {"rtl": "\u202ecam"},
            ]
        ),
    )


@functools.cache
def hostile_values(max_depth: int = 3000) -> st.SearchStrategy[Any]:
    """Values of any field: wrong types, hostile text, deep nesting, huge strings."""
    return st.one_of(
        JSON,
        TEXT,
        ODD_TIMESTAMPS,
        st.builds(nested, st.integers(1, max_depth)),
        st.builds(lambda n: "x" * n, st.integers(100, 300_000)),
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: "{" + str(u) + "}"),
        st.uuids().map(lambda u: u.hex),
        st.sampled_from(
            ["../secret.png", "/etc/passwd", "a\0b", "\ud800.png", ".", "", "AAAA", "@@"]
        ),
        hostile_meta(max_depth),
    )


HOSTILE_META = hostile_meta()
HOSTILE_VALUES = hostile_values()


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], seed: int) -> Image.Image:
    """Gray noise, the same for the same seed (hypothesis replays what it draws)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)
    return Image.fromarray(pixels, "L")


def tiny_png() -> bytes:
    return encode(noise((8, 6), 0), "PNG")


TINY_B64 = base64.b64encode(tiny_png()).decode()
TINY = st.just(TINY_B64)


@functools.cache
def valid_messages(image_b64: st.SearchStrategy[str] = TINY) -> Any:
    """Messages the schema accepts."""
    return st.fixed_dictionaries(
        {
            "job_id": st.uuids().map(str),
            "camera": CAMERAS,
            "captured_at": TIMESTAMPS,
            "image_b64": image_b64,
        },
        optional={"meta": CLEAN_META, "submitted_at": TIMESTAMPS},
    )


@st.composite
def job_messages(
    draw: Any, image_b64: st.SearchStrategy[str] = TINY, max_depth: int = 3000
) -> dict:
    """A message as any client might send: valid, one field wrong, one missing, one
    too many, or anything at all (values nested up to ``max_depth`` deep)."""
    values = hostile_values(max_depth)
    message = draw(valid_messages(image_b64))
    change = draw(st.sampled_from(["none", "replace", "remove", "add", "meta", "anything"]))
    if change == "replace":
        message[draw(st.sampled_from(FIELDS))] = draw(values)
    elif change == "remove":
        message.pop(draw(st.sampled_from(sorted(message))))
    elif change == "add":
        message[draw(TEXT.filter(lambda name: name not in FIELDS))] = draw(JSON)
    elif change == "meta":
        message["meta"] = draw(hostile_meta(max_depth))
    elif change == "anything":
        message = draw(st.dictionaries(st.sampled_from(FIELDS) | TEXT, values, max_size=8))
    return message


# -- image bytes -----------------------------------------------------------------------

#: modes and the formats Pillow writes them in
SAVABLE = {
    "1": ["PNG", "BMP", "JPEG", "TIFF", "GIF", "PPM"],
    "L": ["PNG", "BMP", "JPEG", "TIFF", "GIF", "WEBP", "PPM"],
    "LA": ["PNG", "TIFF", "GIF", "WEBP"],
    "P": ["PNG", "BMP", "TIFF", "GIF", "WEBP"],
    "RGB": ["PNG", "BMP", "JPEG", "TIFF", "GIF", "WEBP", "PPM"],
    "RGBA": ["PNG", "BMP", "TIFF", "GIF", "WEBP", "PPM"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF", "PPM"],
    "I": ["TIFF", "PPM"],
    "F": ["TIFF"],
    "YCbCr": ["JPEG", "TIFF"],
}
#: what other files start with
MAGIC = [
    b"%PDF-1.7\n",
    b"PK\x03\x04",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"P5\n",
    b"\x1f\x8b\x08",
    b"<svg xmlns='http://www.w3.org/2000/svg'>",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000: a format Pillow reads, not accepted
    b"8BPS",  # Photoshop
]


@st.composite
def images(draw: Any) -> bytes:
    """A well-formed file of any mode Pillow writes, in any format, up to 48x48."""
    mode = draw(st.sampled_from(sorted(SAVABLE)))
    fmt = draw(st.sampled_from(SAVABLE[mode]))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    gray = noise(size, draw(st.integers(0, 2**32 - 1)))
    image = gray.convert(mode) if mode != "I;16" else gray.convert("I").convert("I;16")
    if fmt == "GIF" and draw(st.booleans()):  # animated: two frames
        return encode(image, fmt, save_all=True, append_images=[image.point(lambda v: 255 - v)])
    return encode(image, fmt)


def with_size(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """``data`` (a 1x1 file written by Pillow) claiming ``width`` x ``height`` pixels:
    a decompression bomb when they are large, an empty image when one is 0."""
    out = bytearray(data)
    if fmt == "PNG":
        out[16:24] = struct.pack(">II", width, height)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    elif fmt == "GIF":
        out[6:10] = struct.pack("<HH", min(width, 65535), min(height, 65535))
    elif fmt == "BMP":
        out[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))
    elif fmt == "JPEG":
        at = out.index(b"\xff\xc0")
        out[at + 5 : at + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    elif fmt == "TIFF":
        (ifd,) = struct.unpack_from("<I", out, 4)
        (count,) = struct.unpack_from("<H", out, ifd)
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            (tag,) = struct.unpack_from("<H", out, entry)
            if tag in (256, 257):  # ImageWidth, ImageLength, as LONG
                value = min(width if tag == 256 else height, 2**32 - 1)
                out[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, value)
    elif fmt == "PPM":
        return f"P5\n{width} {height}\n255\n".encode() + b"\0" * 16
    return bytes(out)


@st.composite
def bombs(draw: Any) -> bytes:
    fmt = draw(st.sampled_from(["PNG", "GIF", "BMP", "JPEG", "TIFF", "PPM"]))
    dimension = st.integers(0, 2**16) | st.integers(0, 2**31 - 1) | st.sampled_from([0, 1, 65535])
    seed = encode(Image.new("L", (1, 1)), fmt)
    return with_size(seed, fmt, draw(dimension), draw(dimension))


@st.composite
def damaged(draw: Any, files: st.SearchStrategy[bytes]) -> bytes:
    """A file cut short, with bytes overwritten, or with bytes inserted."""
    data = bytearray(draw(files))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        how = draw(st.sampled_from(["cut", "overwrite", "insert"]))
        if how == "cut":
            del data[at:]
        elif how == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=4))
            data[at : at + len(patch)] = patch
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


#: bytes that may or may not be an image we inspect
IMAGE_BYTES = st.one_of(
    images(),
    damaged(images()),
    bombs(),
    damaged(bombs()),
    st.binary(max_size=2048),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary(max_size=512)),
    TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.just(b""),
)

# -- broker items ----------------------------------------------------------------------

#: the headers Celery's protocol 2 sends, for values of any type
CELERY_HEADERS = [
    "lang",
    "root_id",
    "parent_id",
    "group",
    "retries",
    "timelimit",
    "eta",
    "expires",
    "countdown",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "shadow",
    "stamped_headers",
    "stamps",
    "replaced_task_nesting",
    "x-inspection-unreadable",  # the header our transport sets: a sender may set it too
    "compression",
]
ENVELOPE_PARTS = [
    "body",
    "content-type",
    "content-encoding",
    "headers",
    "properties",
    "delivery_tag",
    "delivery_info",
    "body_encoding",
    "exchange",
    "routing_key",
]
#: stands for JSON nested 400 deep: as deep as the transport reads in a test's stack
DEEP = "__deep__"
DEEP_JSON = nested_json(400)


def to_json(value: Any) -> str:
    """``value`` as JSON, NaN and lone surrogates as Python writes them; a value
    nested too deeply for json.dumps here becomes one nested 3000 deep."""
    try:
        return json.dumps(value)
    except RecursionError:
        return nested_json(3000)


def kombu_item(body: str, headers: Any, parts: dict[str, Any]) -> bytes:
    """A kombu envelope as the Redis transport stores it, with ``parts`` replaced
    (a part named in ``properties`` or ``delivery_info`` replaced there)."""
    info: dict[str, Any] = {"exchange": "inspect", "routing_key": "inspect"}
    properties: dict[str, Any] = {
        "delivery_tag": str(uuid.uuid4()),
        "delivery_info": info,
        "body_encoding": "base64",
        "priority": 0,
    }
    message: dict[str, Any] = {
        "body": base64.b64encode(body.encode("utf-8", "surrogatepass")).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    for name, value in parts.items():
        target = info if name in info else properties if name in properties else message
        target[name] = value
    return to_json(message).replace(json.dumps(DEEP), DEEP_JSON).encode()


@st.composite
def celery_headers(draw: Any, job_id: str | None = None) -> dict[str, Any]:
    """Protocol 2 headers, some of them of any type."""
    headers: dict[str, Any] = {
        "task": draw(st.sampled_from(["inspect", "inspect", "inspekt"]) | TEXT | JSON),
        "id": job_id or draw(st.uuids().map(str) | TEXT | JSON),
    }
    for name in draw(st.lists(st.sampled_from(CELERY_HEADERS), max_size=3, unique=True)):
        headers[name] = draw(JSON | st.just(DEEP))
    return headers


BODIES = st.one_of(
    job_messages(max_depth=40).map(lambda kwargs: to_json([[], kwargs, {}])),
    JSON.map(to_json),
    TEXT,
    st.builds(nested_json, st.integers(1, 3000)),
)
HEADERS = celery_headers() | st.none() | JSON


@st.composite
def broker_items(draw: Any) -> bytes:
    """What anyone who can write to the ``inspect`` list may push onto it: bytes,
    JSON, JSON nested deep, or a kombu envelope with any of its parts wrong."""
    kind = draw(st.sampled_from(["bytes", "json", "envelope", "envelope", "envelope"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "json":
        return to_json(draw(JSON)).encode()
    body = draw(BODIES)
    headers = draw(HEADERS)
    names = draw(st.lists(st.sampled_from(ENVELOPE_PARTS), max_size=2, unique=True))
    return kombu_item(body, headers, {name: draw(JSON) for name in names})


# -- rows ------------------------------------------------------------------------------

#: the length limits of the columns a refused message fills (core/tables.py)
COLUMN_CHARS = {"camera": 120, "job_id": 36, "task": 200, "task_id": 200, "image_key": 80}
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def assert_storable(row: dict[str, Any]) -> None:
    """``row`` (an ``inspections`` or ``dead_letters`` row) is one PostgreSQL takes and
    the site can show: text without NUL or lone surrogates, within its column's length;
    JSON without NaN; times a day inside the range Python holds, in every time zone."""
    for name, value in row.items():
        if isinstance(value, str):
            assert "\0" not in value, (name, value[:80])
            value.encode("utf-8")  # raises on a lone surrogate
            assert len(value) <= COLUMN_CHARS.get(name, len(value)), (name, len(value))
        elif isinstance(value, datetime):
            assert value.tzinfo is not None and EARLIEST <= value <= LATEST, (name, value)
        elif isinstance(value, dict | list):
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    if "job_id" in row:
        assert row["job_id"] == str(uuid.UUID(row["job_id"]))


def job_row(job: Any, when: datetime) -> dict[str, Any]:
    """The row a worker writes for an accepted job (its verdict aside)."""
    return base_row(
        job_id=job.job_id,
        camera=job.camera,
        status="passed",
        meta=job.meta,
        captured_at=job.captured_at,
        submitted_at=job.submitted_at,
        received_at=when,
        processed_at=when,
    )

"""The review queue's query: filters, sort orders and keyset pagination of inspections
(not the Redis queue of jobs, which is core/queue.py).

Pages are fetched by keyset ("the rows after this one in this order"), never by
OFFSET, so page 5,000 costs what page 1 costs; with the indexes on
(status, processed_at, id) and (processed_at, id) the newest-first queue stays
fast at millions of rows, and with the one on (status, label, dissimilarity,
id) a label's queue sorted by dissimilarity does too. Counts are bounded for
the same reason.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from math import isfinite
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    func,
    literal,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from admin.timezone import site_zone
from core.tables import REVIEW_STATES, STATUSES, Finding, Inspection

COUNT_LIMIT = 10_000


def _sort_key(name: str) -> ColumnElement[Any]:
    if name in ("newest", "oldest"):
        return Inspection.processed_at.expression
    # SORT_DISSIMILARITY, with -1.0 written into the SQL (not a bound parameter) so
    # that PostgreSQL matches it to the index on (status, label, that, id).
    return func.coalesce(Inspection.dissimilarity, literal_column("-1.0", Float))


# sort name -> (descending?, label)
SORTS = {
    "newest": (True, "newest first"),
    "oldest": (False, "oldest first"),
    "dissimilar": (True, "most dissimilar first"),
    "similar": (False, "least dissimilar first"),
}


# Longest filter value worth sending to the database: no camera (120) or label (80)
# is longer, so a longer value matches nothing either way.
MAX_FILTER_LENGTH = 200
MAX_ROW_ID = 2**31 - 1  # inspections.id is a 32-bit integer


def parse_time(text: str | None, zone: tzinfo = UTC) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime, one without an offset read on the
    clock of ``zone`` (the site's: the plant's); None for anything else (a malformed
    time, or one so far out that it cannot be written in UTC)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def clean_filter_value(text: str) -> str:
    """A filter value the database can compare: no control characters (PostgreSQL
    text holds no NUL, so no stored value has one), no longer than any column."""
    text = "".join(ch for ch in text if ch.isprintable())
    return text.strip()[: MAX_FILTER_LENGTH + 1]


#: the query arguments of a QueueFilter
FILTER_ARGS = ("status", "camera", "label", "review", "since", "until", "sort", "coil")


@dataclass
class QueueFilter:
    status: str = "flagged"  # "" for any status
    camera: str = ""
    label: str = ""
    review: str = ""  # "" for any review state; from_args makes "pending" the default
    since: str = ""  # ISO 8601, as typed in the form
    until: str = ""
    sort: str = "newest"
    coil: str = ""  # a coil (or lot) id, matched exactly
    # the clock since and until without an offset are read on: not a query argument
    zone: tzinfo = field(default=UTC, repr=False, compare=False)

    @classmethod
    def from_args(cls, args: Any, zone: tzinfo | None = None) -> QueueFilter:
        """The filter of query arguments; times without an offset in ``zone``, by
        default the site's plant time zone (the API passes UTC)."""
        f = cls(
            **{k: clean_filter_value(str(args.get(k) or "")) for k in FILTER_ARGS if k in args},
            zone=zone or site_zone(),
        )
        if "status" not in args:
            f.status = "flagged"
        if f.status not in ("", *STATUSES):
            f.status = "flagged"
        # The queue is for reviewing: what waits for review unless asked otherwise
        # ("any" or "" is asked: the API sends "" for any).
        if "review" not in args:
            f.review = "pending"
        if f.review not in REVIEW_STATES:
            f.review = ""
        if f.sort not in SORTS:
            f.sort = "newest"
        return f

    def as_args(self) -> dict[str, str]:
        """The filter as query arguments that ``from_args`` reads back the same: the
        values that differ from the queue's defaults ("" for any status, "any" for
        any review state), so that the default queue's links stay short."""
        args = {k: getattr(self, k) for k in FILTER_ARGS if getattr(self, k)}
        if self.status == "flagged":
            del args["status"]
        elif not self.status:
            args["status"] = ""
        if self.review == "pending":
            del args["review"]
        elif not self.review:
            args["review"] = "any"
        if self.sort == "newest":
            del args["sort"]
        return args

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.status:
            where.append(Inspection.status == self.status)
        if self.camera:
            where.append(Inspection.camera == self.camera)
        if self.label:
            where.append(Inspection.label == self.label)
        if self.review:
            where.append(Inspection.review_state == self.review)
        if self.coil:
            where.append(Inspection.coil_id == self.coil)
        if since := parse_time(self.since, self.zone):
            where.append(Inspection.processed_at >= since)
        if until := parse_time(self.until, self.zone):
            where.append(Inspection.processed_at < until)
        return where


def sort_position(row: Inspection, sort: str) -> tuple[Any, int]:
    """Where ``row`` stands in the order ``sort``: its sort value and id."""
    if sort in ("newest", "oldest"):
        return row.processed_at, row.id
    return (row.dissimilarity if row.dissimilarity is not None else -1.0), row.id


def encode_cursor(row: Inspection, sort: str) -> str:
    """An opaque, URL-safe position: the row's sort value and id."""
    value, row_id = sort_position(row, sort)
    text = value.isoformat() if isinstance(value, datetime) else repr(value)
    return base64.urlsafe_b64encode(f"{text}~{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int] | None:
    """The position ``encode_cursor`` wrote; None for anything it could not have
    written (the first page is shown then)."""
    if len(cursor) > 200:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        value, id_text = text.rsplit("~", 1)
        key: Any = parse_time(value) if sort in ("newest", "oldest") else float(value)
        row_id = int(id_text)
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        key is None
        or not 0 <= row_id <= MAX_ROW_ID
        or (isinstance(key, float) and not isfinite(key))
    ):
        return None
    return key, row_id


def fetch_page(
    db: Session, f: QueueFilter, after: str | None, size: int
) -> tuple[list[Inspection], str | None]:
    """One page of the queue and the cursor of the next (None on the last page)."""
    rows = list(db.scalars(page_query(f, after, size + 1)))
    next_cursor = encode_cursor(rows[size - 1], f.sort) if len(rows) > size else None
    return rows[:size], next_cursor


def page_query(f: QueueFilter, after: str | None, limit: int) -> Select[tuple[Inspection]]:
    """The rows of ``f`` after the cursor ``after``, in ``f``'s order, at most ``limit``."""
    return keyset_query(f, decode_cursor(after, f.sort) if after else None, limit)


def keyset_query(
    f: QueueFilter, position: tuple[Any, int] | None, limit: int, backwards: bool = False
) -> Select[tuple[Inspection]]:
    """The rows of ``f`` after ``position`` (a ``sort_position``) in ``f``'s order, at
    most ``limit``; ``backwards``: the rows before it, nearest first."""
    descending = SORTS[f.sort][0] != backwards
    key = _sort_key(f.sort)
    query = select(Inspection).where(*f.conditions())
    if position is not None:
        query = query.where(_beyond(f.sort, position, descending))
    order = (key.desc(), Inspection.id.desc()) if descending else (key.asc(), Inspection.id.asc())
    return query.order_by(*order).limit(limit)


def _beyond(sort: str, position: tuple[Any, int], descending: bool) -> ColumnElement[bool]:
    """Rows past ``position`` going down (``descending``) or up the sort key."""
    key = _sort_key(sort)
    value, row_id = position
    # A row-value comparison, which PostgreSQL turns into a range scan of the
    # (status, processed_at, id) index; "a < x OR (a = x AND b < y)" it does not.
    position_key = tuple_(key, Inspection.id)
    at = tuple_(literal(value, type_=key.type), literal(row_id))
    return position_key < at if descending else position_key > at


def findings_of(db: Session, inspection_ids: list[int]) -> dict[int, list[Finding]]:
    """The findings of a page's inspections in one query (not one per row), each
    inspection's in rank order; inspections without findings are left out."""
    if not inspection_ids:
        return {}
    found: dict[int, list[Finding]] = {}
    for finding in db.scalars(
        select(Finding)
        .where(Finding.inspection_id.in_(inspection_ids))
        .order_by(Finding.inspection_id, Finding.rank)
    ):
        found.setdefault(finding.inspection_id, []).append(finding)
    return found


def bounded_count(db: Session, f: QueueFilter, limit: int = COUNT_LIMIT) -> tuple[int, bool]:
    """How many rows match, counting at most ``limit`` (and whether it stopped there)."""
    inner = select(Inspection.id).where(*f.conditions()).limit(limit + 1).subquery()
    count = db.scalar(select(func.count()).select_from(inner)) or 0
    return min(count, limit), count > limit


def neighbours(
    db: Session, f: QueueFilter, row: Inspection
) -> tuple[Inspection | None, Inspection | None]:
    """The rows just before and just after ``row`` in ``f``'s order (``row`` itself
    need not match ``f``: a row reviewed out of a pending queue keeps its place)."""
    position = sort_position(row, f.sort)
    previous = db.scalar(keyset_query(f, position, 1, backwards=True))
    following = db.scalar(keyset_query(f, position, 1))
    return previous, following


def next_pending(db: Session, f: QueueFilter, current: Inspection | None) -> Inspection | None:
    """The next inspection awaiting review in ``f``'s filter and order after
    ``current``; past the end, the first one from the top (never ``current``)."""
    pending = replace(f, review="pending")
    if current is not None:
        following = db.scalar(keyset_query(pending, sort_position(current, f.sort), 1))
        if following is not None:
            return following
    query = keyset_query(pending, None, 1)
    if current is not None:
        query = query.where(Inspection.id != current.id)
    return db.scalar(query)


def page_start(
    db: Session, f: QueueFilter, row: Inspection, after: str | None, size: int
) -> str | None:
    """The ``after`` cursor of a queue page that holds ``row``'s place: ``after``
    itself when ``row`` is on the page that starts there (the page it was opened
    from), else the page that starts with ``row``. None: the first page."""
    descending = SORTS[f.sort][0]
    position = sort_position(row, f.sort)
    start = decode_cursor(after, f.sort) if after else None
    if start is None or (position < start if descending else position > start):
        # rows between the page's start and ``row``: fewer than a page, it is on it
        between = keyset_query(f, start, size).where(_beyond(f.sort, position, not descending))
        if (db.scalar(select(func.count()).select_from(between.subquery())) or 0) < size:
            return after if start is not None else None
    previous, _ = neighbours(db, f, row)
    return encode_cursor(previous, f.sort) if previous is not None else None


def distinct_values(db: Session, column: Any, limit: int = 200) -> list[str]:
    """Values for a filter's drop-down (cameras, labels)."""
    return [
        v
        for v in db.scalars(
            select(column).where(column.is_not(None)).distinct().order_by(column).limit(limit)
        )
    ]

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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from math import isfinite
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

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


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; None for anything else (a
    malformed time, or one so far out that it cannot be written in UTC)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def clean_filter_value(text: str) -> str:
    """A filter value the database can compare: no control characters (PostgreSQL
    text holds no NUL, so no stored value has one), no longer than any column."""
    text = "".join(ch for ch in text if ch.isprintable())
    return text.strip()[: MAX_FILTER_LENGTH + 1]


@dataclass
class QueueFilter:
    status: str = "flagged"  # "" for any status
    camera: str = ""
    label: str = ""
    review: str = ""
    since: str = ""  # ISO 8601, as typed in the form
    until: str = ""
    sort: str = "newest"

    @classmethod
    def from_args(cls, args: Any) -> QueueFilter:
        f = cls(
            **{
                k: clean_filter_value(str(args.get(k) or ""))
                for k in cls.__dataclass_fields__
                if k in args
            }
        )
        if "status" not in args:
            f.status = "flagged"
        if f.status not in ("", *STATUSES):
            f.status = "flagged"
        if f.review not in ("", *REVIEW_STATES):
            f.review = ""
        if f.sort not in SORTS:
            f.sort = "newest"
        return f

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v or k == "status"}

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
        if since := parse_time(self.since):
            where.append(Inspection.processed_at >= since)
        if until := parse_time(self.until):
            where.append(Inspection.processed_at < until)
        return where


def encode_cursor(row: Inspection, sort: str) -> str:
    """An opaque, URL-safe position: the row's sort value and id."""
    if sort in ("newest", "oldest"):
        value = row.processed_at.isoformat()
    else:
        value = repr(row.dissimilarity if row.dissimilarity is not None else -1.0)
    return base64.urlsafe_b64encode(f"{value}~{row.id}".encode()).decode().rstrip("=")


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
    descending, _ = SORTS[f.sort]
    key = _sort_key(f.sort)
    query = select(Inspection).where(*f.conditions())
    position = decode_cursor(after, f.sort) if after else None
    if position is not None:
        value, row_id = position
        # A row-value comparison, which PostgreSQL turns into a range scan of the
        # (status, processed_at, id) index; "a < x OR (a = x AND b < y)" it does not.
        position_key = tuple_(key, Inspection.id)
        after_row = tuple_(literal(value, type_=key.type), literal(row_id))
        query = query.where(position_key < after_row if descending else position_key > after_row)
    order = (key.desc(), Inspection.id.desc()) if descending else (key.asc(), Inspection.id.asc())
    return query.order_by(*order).limit(limit)


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


def bounded_count(db: Session, f: QueueFilter) -> tuple[int, bool]:
    """How many rows match, counting at most COUNT_LIMIT (and whether it stopped there)."""
    inner = select(Inspection.id).where(*f.conditions()).limit(COUNT_LIMIT + 1).subquery()
    count = db.scalar(select(func.count()).select_from(inner)) or 0
    return min(count, COUNT_LIMIT), count > COUNT_LIMIT


def next_pending(db: Session, current: Inspection | None) -> Inspection | None:
    """The next flagged inspection awaiting review, in queue order (newest first)."""
    base = select(Inspection).where(
        Inspection.status == "flagged", Inspection.review_state == "pending"
    )
    if current is not None:
        older = base.where(
            or_(
                Inspection.processed_at < current.processed_at,
                and_(Inspection.processed_at == current.processed_at, Inspection.id < current.id),
            )
        )
        row = db.scalar(
            older.order_by(Inspection.processed_at.desc(), Inspection.id.desc()).limit(1)
        )
        if row is not None:
            return row
    return db.scalar(
        base.where(Inspection.id != (current.id if current else -1))
        .order_by(Inspection.processed_at.desc(), Inspection.id.desc())
        .limit(1)
    )


def distinct_values(db: Session, column: Any, limit: int = 200) -> list[str]:
    """Values for a filter's drop-down (cameras, labels)."""
    return [
        v
        for v in db.scalars(
            select(column).where(column.is_not(None)).distinct().order_by(column).limit(limit)
        )
    ]

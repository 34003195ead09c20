"""Pages of a log, newest first by id: the dead letters, the reports, the delivery log.

``?before=ID`` asks for the page of rows older than ID; one row more than a page is
read to tell whether there is an older page, and the page's last id links to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import request
from sqlalchemy import Select

PAGE_SIZE = 50
Row = TypeVar("Row")


def newest_first(query: Select[Any], id_column: Any) -> Select[Any]:
    """``query`` as one page: newest first by ``id_column``, older than ``?before=``."""
    query = query.order_by(id_column.desc()).limit(PAGE_SIZE + 1)
    before = request.args.get("before", "")
    if before.isdigit() and len(before) < 19:  # a BIGINT at most: no overflow
        query = query.where(id_column < int(before))
    return query


def page_of(rows: Sequence[Row], id_of: Callable[[Row], int]) -> tuple[Sequence[Row], int | None]:
    """The page's rows, and the id to ask ``before=`` for the older page (None: no more)."""
    older = id_of(rows[PAGE_SIZE - 1]) if len(rows) > PAGE_SIZE else None
    return rows[:PAGE_SIZE], older

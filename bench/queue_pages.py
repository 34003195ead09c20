"""The supervisors' queue at a million rows: time to fetch pages, first and deep.

Fills a fresh PostgreSQL database with ``rows`` inspections (generated in SQL),
then times the queries the queue page makes: the first page, a page deep in the
queue reached by its keyset cursor, filtered pages, and the bounded count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text

from admin.review_queue import QueueFilter, bounded_count, encode_cursor, fetch_page
from bench.line import fresh_database
from core.db import session_scope
from core.tables import Inspection

FILL = """
INSERT INTO inspections (job_id, camera, status, label, dissimilarity, threshold,
    model_version, received_at, processed_at, review_state)
SELECT md5(i::text)::uuid::text,
       'camera-' || (i % 8),
       CASE WHEN i % 10 = 0 THEN 'passed' WHEN i % 97 = 0 THEN 'rejected' ELSE 'flagged' END,
       (ARRAY['crazing','inclusion','patches','pitted_surface','rolled-in_scale',
              'scratches','unknown'])[1 + i % 7],
       (i % 1000) / 500.0, 1.0, 'bench',
       now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval,
       CASE WHEN i % 3 = 0 THEN 'confirmed' ELSE 'pending' END
FROM generate_series(1, :rows) AS i
"""


@dataclass
class PageTiming:
    name: str
    milliseconds: float
    rows: int


def timed(name: str, fn) -> PageTiming:  # type: ignore[no-untyped-def]
    fn()  # warm the cache, as a page in use is
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - start) * 1000)
    runs.sort()
    count = (
        len(result[0])
        if isinstance(result, tuple) and isinstance(result[0], list)
        else int(result[0])
        if isinstance(result, tuple)
        else 0
    )
    return PageTiming(name, runs[len(runs) // 2], count)


def measure(rows: int = 1_000_000, page_size: int = 25) -> list[PageTiming]:
    with fresh_database() as url:
        if not url.startswith("postgresql"):
            return []
        with session_scope(url) as session:
            session.execute(text(FILL), {"rows": rows})
            session.execute(text("ANALYZE inspections"))
        timings = []
        with session_scope(url) as db:
            newest = QueueFilter()
            timings.append(
                timed(
                    "first page, flagged, newest first",
                    lambda: fetch_page(db, newest, None, page_size),
                )
            )
            deep_row = db.get(Inspection, rows - 1000)
            cursor = encode_cursor(deep_row, "newest")
            timings.append(
                timed(
                    f"a page {rows - 1000:,} rows deep (keyset cursor)",
                    lambda: fetch_page(db, newest, cursor, page_size),
                )
            )
            camera = QueueFilter(camera="camera-3", review="pending")
            timings.append(
                timed(
                    "camera + review state filter", lambda: fetch_page(db, camera, None, page_size)
                )
            )
            label = QueueFilter(label="scratches", sort="dissimilar")
            timings.append(
                timed(
                    "label filter, most dissimilar first",
                    lambda: fetch_page(db, label, None, page_size),
                )
            )
            timings.append(
                timed("bounded count (stops at 10,000)", lambda: bounded_count(db, newest))
            )
        return timings

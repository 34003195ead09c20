"""Waiting out a database outage: what counts as one, and how long to wait between tries."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from sqlalchemy.exc import InterfaceError, OperationalError

from worker import metrics

log = logging.getLogger(__name__)

# The database is unreachable (down, restarting, network cut): wait and retry,
# as long as it takes; the jobs stay unacknowledged meanwhile.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
MAX_BACKOFF_S = 30.0


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter, capped: about 1, 2, 4 ... 30 s."""
    return min(MAX_BACKOFF_S, 2.0 ** (min(attempt, 10) - 1)) * random.uniform(0.5, 1.0)


def until_stored(store: Callable[[], None], sleep: Callable[[float], None] = time.sleep) -> None:
    """Call ``store`` until it returns, waiting out the database being unreachable;
    any other error is raised."""
    attempt = 0
    while True:
        attempt += 1
        try:
            store()
            return
        except DATABASE_UNREACHABLE as exc:
            wait = backoff_seconds(attempt)
            metrics.DATABASE_RETRIES.inc()
            log.warning(
                "database unreachable (%s); retry %d in %.1fs",
                str(exc).splitlines()[0][:200],
                attempt,
                wait,
            )
            sleep(wait)

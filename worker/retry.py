"""Waiting out a database outage, with tenacity: what counts as one, how long to wait
between tries, and what is logged and counted meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_random_exponential,
)

from worker import metrics

log = logging.getLogger(__name__)

# The database is unreachable (down, restarting, network cut): wait and retry,
# as long as it takes; the jobs stay unacknowledged meanwhile.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
MAX_BACKOFF_S = 30.0
# Exponential backoff with full jitter: a random wait up to 1, 2, 4 ... 30 s, so
# that workers cut off together do not all come back at the same instant.
BACKOFF = wait_random_exponential(multiplier=1, max=MAX_BACKOFF_S)


def _log_database_retry(state: RetryCallState) -> None:
    metrics.DATABASE_RETRIES.inc()
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "database unreachable (%s); retry %d in %.1fs",
        str(error).splitlines()[0][:200] if error else "?",
        state.attempt_number,
        state.upcoming_sleep,
    )


def until_stored(store: Callable[[], object], sleep: Callable[[float], None] = time.sleep) -> None:
    """Call ``store`` until it returns, waiting out the database being unreachable;
    any other error is raised at once."""
    retrying = Retrying(
        retry=retry_if_exception_type(DATABASE_UNREACHABLE),
        wait=BACKOFF,
        stop=stop_never,
        sleep=sleep,
        before_sleep=_log_database_retry,
        reraise=True,
    )
    retrying(store)


def attempts(count: int, sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """Up to ``count`` tries of a block (``for attempt in attempts(3): with attempt:``),
    with the same backoff between them; the last error is raised."""
    return Retrying(stop=stop_after_attempt(count), wait=BACKOFF, sleep=sleep, reraise=True)

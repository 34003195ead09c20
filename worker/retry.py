"""Waiting out a store that cannot take a batch, with tenacity: what counts as such
a fault, how long to wait between tries, and what is logged and counted meanwhile.

A *storage fault* is the database unreachable (down, restarting, network cut) or
unable to write (disk full, out of memory: ``core.db.storage_fault_reason``), or
the image store's folder unwritable (full, read-only, not ours:
``core.blobs.BlobStoreUnwritable``). None of them is the job's fault, so none
makes a rejected row: the batch is held unacknowledged and tried again, as long
as it takes, and stored once the fault clears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_random_exponential,
)

from core.blobs import BlobStoreUnwritable
from core.db import storage_fault_reason
from worker import metrics

log = logging.getLogger(__name__)

# The database is unreachable, or cannot write (its storage faults are
# OperationalErrors too): wait and retry, as long as it takes; the jobs stay
# unacknowledged meanwhile.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
MAX_BACKOFF_S = 30.0
# Exponential backoff with full jitter: a random wait up to 1, 2, 4 ... 30 s, so
# that workers cut off together do not all come back at the same instant.
BACKOFF = wait_random_exponential(multiplier=1, max=MAX_BACKOFF_S)
# A fault that lasts is logged again this often (its first line may have scrolled away).
REMIND_EVERY_S = 300.0

#: core.db.storage_fault_reason -> what it means, for the log
DATABASE_FAULTS = {
    "full": "the database is full",
    "out_of_memory": "the database server is out of memory",
    "insufficient_resources": "the database server is out of resources",
    "read_only": "the database is read-only",
    "io_error": "the database's disk failed",
    "unreachable": "database unreachable",
}


@dataclass(frozen=True)
class StorageFault:
    """Why a store cannot take a batch: ``store`` is ``blobs`` or ``database``,
    ``reason`` a metric label, ``message`` a line for an operator."""

    store: str
    reason: str
    message: str


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def storage_fault(error: BaseException) -> StorageFault | None:
    """The storage fault ``error`` is, or None when it is not one (a bug, bad input)."""
    if isinstance(error, BlobStoreUnwritable):
        return StorageFault("blobs", error.reason, str(error))
    if isinstance(error, DATABASE_UNREACHABLE):
        reason = storage_fault_reason(error) or "unreachable"
        cause = getattr(error, "orig", None) or error
        sqlstate = getattr(cause, "sqlstate", None)
        code = f"SQLSTATE {sqlstate}: " if sqlstate and reason != "unreachable" else ""
        return StorageFault(
            "database", reason, f"{DATABASE_FAULTS[reason]} ({code}{_first_line(cause)})"
        )
    return None


class FaultEpisode:
    """What one batch's wait logs and counts: a line when a fault begins (or turns
    into another), a reminder every REMIND_EVERY_S, a line when it clears; every
    failed try counted, and the store's ``inspection_storage_blocked`` 1 meanwhile."""

    def __init__(self, holding: int) -> None:
        self.holding = holding
        self.fault: StorageFault | None = None
        self.started = self.reminded = 0.0

    def failed(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        fault = storage_fault(error) if error else None
        if fault is None:  # not retried: the predicate lets only faults through
            return
        metrics.STORAGE_FAULTS.labels(fault.store, fault.reason).inc()
        if fault.reason == "unreachable":
            metrics.DATABASE_RETRIES.inc()
        now = time.monotonic()
        if self.fault is None or (self.fault.store, self.fault.reason) != (
            fault.store,
            fault.reason,
        ):
            self.block(fault)
            self.started = self.reminded = now
            log.warning(
                "%s: holding a batch of %d job(s) unacknowledged, retrying with backoff "
                "up to %.0f s",
                fault.message,
                self.holding,
                MAX_BACKOFF_S,
                extra={"store": fault.store, "reason": fault.reason},
            )
        elif now - self.reminded >= REMIND_EVERY_S:
            self.reminded = now
            log.warning(
                "still %s: holding a batch of %d job(s) for %.0f s",
                fault.message,
                self.holding,
                now - self.started,
                extra={"store": fault.store, "reason": fault.reason},
            )
        else:
            log.debug(
                "%s; retry %d in %.1f s", fault.message, state.attempt_number, state.upcoming_sleep
            )
        self.fault = fault

    def block(self, fault: StorageFault | None) -> None:
        if self.fault is not None:
            metrics.STORAGE_BLOCKED.labels(self.fault.store).set(0)
        if fault is not None:
            metrics.STORAGE_BLOCKED.labels(fault.store).set(1)

    def end(self, stored: bool) -> None:
        if self.fault is None:
            return
        if stored:
            log.info(
                "storing again after %.0f s (it was: %s); stored the %d held job(s)",
                time.monotonic() - self.started,
                self.fault.message,
                self.holding,
                extra={"store": self.fault.store, "reason": "cleared"},
            )
        self.block(None)
        self.fault = None


def until_stored(
    store: Callable[[], object],
    sleep: Callable[[float], None] = time.sleep,
    holding: int = 1,
) -> None:
    """Call ``store`` until it returns, waiting out storage faults (``storage_fault``)
    while the ``holding`` jobs it stores stay unacknowledged; any other error is
    raised at once."""
    episode = FaultEpisode(holding)
    retrying = Retrying(
        retry=retry_if_exception(lambda error: storage_fault(error) is not None),
        wait=BACKOFF,
        stop=stop_never,
        sleep=sleep,
        before_sleep=episode.failed,
        reraise=True,
    )
    stored = False
    try:
        retrying(store)
        stored = True
    finally:
        episode.end(stored)


def attempts(count: int, sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """Up to ``count`` tries of a block (``for attempt in attempts(3): with attempt:``),
    with the same backoff between them; the last error is raised."""
    return Retrying(stop=stop_after_attempt(count), wait=BACKOFF, sleep=sleep, reraise=True)

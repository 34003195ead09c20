"""What happens at coil ends and shift ends, from a thread of every worker.

Every few seconds one worker (whichever holds a short Redis lock, ``SET NX PX``,
renewed as it goes) runs :func:`tick`: it ends the coils that had no frame for
``COIL_END_AFTER_S``, judges the ended coils (``core.coil_verdicts``: their verdict
and a ``coil.verdict`` event), makes the automatic report of each coil judged in the
last day that has none, and the automatic report of each shift that ended in the
last day, had any inspection, and has none. "Has none" is read from the
``reports`` table, so a tick that failed halfway is finished by the next, and a
report is made once however many ticks or workers see it.

A thread, not Celery beat: no extra process to run, and like the heartbeat it goes
on while the worker's event loop inspects a long batch. An error in a tick is
logged and the work tried again on the next; it never stops the worker.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import redis
from celery import bootsteps
from sqlalchemy import exists, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.blobs import BlobStore, BlobStoreUnwritable
from core.coil_verdicts import end_idle_coils, judge_ended_coils
from core.db import session_scope
from core.outbox import prune
from core.reports import (
    automatic_report_exists,
    had_inspections,
    make_coil_report,
    make_shift_report,
)
from core.settings import Settings, get_settings
from core.shifts import ShiftClock
from core.tables import Coil, Report, utcnow

log = logging.getLogger(__name__)

#: the longest a tick waits for the next (shorter with a short COIL_END_AFTER_S)
TICK_EVERY_S = 5.0
LOCK_KEY = "inspection:schedule:lock"
#: the lock lapses this long after its holder last renewed it (a worker killed
#: mid-tick holds up the others no longer than this)
LOCK_MS = 60_000
#: how far back ended shifts and judged coils are reported
LOOK_BACK = timedelta(hours=24)
#: a shift is reported this long after its end, so frames inspected in its last
#: moments (still being committed when it ended) are in its report
SHIFT_GRACE = timedelta(seconds=60)

# Renew the lock only while it is still ours; release it likewise.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"  # noqa: E501
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


@dataclass
class TickResult:
    ended: list[str] = field(default_factory=list)  # coils ended for want of frames
    judged: list[str] = field(default_factory=list)  # coils given their verdict
    reports: list[int] = field(default_factory=list)  # report ids made
    failed: list[str] = field(default_factory=list)  # what failed, tried again next tick
    pruned: int = 0  # old events deleted with their delivery log (EVENT_RETENTION_DAYS)


def tick(
    session: Session,
    store: BlobStore,
    settings: Settings,
    now: datetime,
    still_ours: Callable[[], bool] = lambda: True,
) -> TickResult:
    """One round at time ``now``: end idle coils, judge ended coils, report them,
    report ended shifts, and prune old events. Each step commits on its own; a step
    that fails is rolled back, logged, named in ``failed`` and left to the next tick.
    ``still_ours`` is asked between steps; when it says the lock was lost, the round
    stops."""
    result = TickResult()
    line = settings.line_name
    clock = ShiftClock.from_settings(settings)

    def step(what: str, work: Callable[[], Any]) -> Any:
        try:
            done = work()
            session.commit()
            return done
        except Exception as exc:
            session.rollback()
            result.failed.append(what)
            if isinstance(exc, DBAPIError | BlobStoreUnwritable):  # waited out, as workers do
                log.warning("the scheduler could not %s (%s); next tick", what, exc)
            else:
                log.exception("the scheduler could not %s; next tick", what)
            return None

    def end_and_judge() -> tuple[list[str], list[str]]:
        ended = end_idle_coils(session, now, settings.coil_end_after_s)
        return ended, judge_ended_coils(session, line)

    coils = step("end and judge coils", end_and_judge)
    if coils is not None:
        result.ended, result.judged = coils
    for coil_id in coils_to_report(session, now):
        if not still_ours():
            return result
        report = step(
            f"report coil {coil_id}",
            partial(make_coil_report, session, store, coil_id, None, line, zone=clock.zone),
        )
        if report is not None:
            result.reports.append(report.id)
    for shift in clock.ended_between(now - SHIFT_GRACE - LOOK_BACK, now - SHIFT_GRACE):
        if automatic_report_exists(session, "shift", shift.subject):
            continue
        if not had_inspections(session, shift.start, shift.end):
            continue
        if not still_ours():
            return result
        report = step(
            f"report shift {shift.subject}",
            partial(
                make_shift_report, session, store, shift.subject, None, line, clock=clock, now=now
            ),
        )
        if report is not None:
            result.reports.append(report.id)
    cutoff = now - timedelta(days=settings.event_retention_days)
    result.pruned = step("prune the outbox", partial(prune, session, cutoff)) or 0
    session.commit()  # the reads' transaction: none held open until the next tick
    return result


def coils_to_report(session: Session, now: datetime) -> list[str]:
    """The coils judged in the last LOOK_BACK that have no automatic report yet."""
    reported = exists().where(
        Report.kind == "coil", Report.subject == Coil.coil_id, Report.made_by.is_(None)
    )
    query = (
        select(Coil.coil_id)
        .where(Coil.verdict.is_not(None), Coil.verdict_at >= now - LOOK_BACK, ~reported)
        .order_by(Coil.verdict_at, Coil.coil_id)
    )
    return list(session.scalars(query))


class Scheduler(threading.Thread):
    """Runs :func:`tick` every few seconds while this worker holds the lock."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.settings = settings
        self.interval_s = min(TICK_EVERY_S, max(1.0, settings.coil_end_after_s / 2))
        self.store = BlobStore(settings.blob_dir)
        self.token = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=5
        )

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self.round()

    def round(self) -> TickResult | None:
        """One tick when the lock is ours (None when another worker holds it)."""
        try:
            if not self.client.set(LOCK_KEY, self.token, nx=True, px=LOCK_MS):
                return None
        except (redis.RedisError, OSError):  # Redis restarting: the next round will do
            log.debug("the scheduler skipped a round", exc_info=True)
            return None
        try:
            with session_scope(self.settings.database_url) as session:
                result = tick(session, self.store, self.settings, utcnow(), self.renew)
            if result.ended or result.judged or result.reports:
                log.info(
                    "coils ended %s, judged %s; reports made %s",
                    result.ended,
                    result.judged,
                    result.reports,
                )
            return result
        except DBAPIError as exc:  # the database away: as the workers, wait it out
            log.warning("the scheduler's tick could not reach the database (%s)", exc.orig)
        except Exception:  # a bug here must not stop a live worker
            log.exception("the scheduler's tick failed; it runs again in %g s", self.interval_s)
        finally:
            self.release()
        return None

    def renew(self) -> bool:
        """Whether the lock is still ours (and renewed for another LOCK_MS)."""
        if self.stopping.is_set():
            return False
        try:
            return bool(self.client.eval(_RENEW, 1, LOCK_KEY, self.token, str(LOCK_MS)))
        except redis.RedisError:
            return False

    def release(self) -> None:
        try:
            self.client.eval(_RELEASE, 1, LOCK_KEY, self.token)
        except redis.RedisError:  # it lapses by itself
            log.debug("could not release the scheduler's lock", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=self.interval_s + 30)
        self.client.close()


class Schedule(bootsteps.StartStopStep):
    """Starts the scheduler's thread with the consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.scheduler: Scheduler | None = None

    def start(self, consumer: Any) -> None:
        self.scheduler = Scheduler(get_settings())
        self.scheduler.start()

    def stop(self, consumer: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

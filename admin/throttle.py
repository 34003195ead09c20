"""Login throttling: repeated failures for a user name or from an address lock them out
for a while. Failures are kept in the database, so every admin process sees them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.tables import LoginFailure, utcnow

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20


def minutes_locked(session: Session, username: str, address: str) -> int:
    """0 when a login may be tried; else how many minutes the lock-out still lasts."""
    since = utcnow() - WINDOW
    for column, value, limit in (
        (LoginFailure.username, username, MAX_FAILURES_PER_USER),
        (LoginFailure.address, address, MAX_FAILURES_PER_ADDRESS),
    ):
        count, first = session.execute(
            select(func.count(LoginFailure.id), func.min(LoginFailure.at)).where(
                column == value, LoginFailure.at >= since
            )
        ).one()
        if count >= limit:
            first_at = first if first.tzinfo else first.replace(tzinfo=since.tzinfo)
            remaining = (first_at + WINDOW) - utcnow()
            return max(1, int(remaining.total_seconds() // 60) + 1)
    return 0


def record_failure(session: Session, username: str, address: str) -> None:
    session.add(LoginFailure(username=username[:80], address=address[:64]))
    session.execute(delete(LoginFailure).where(LoginFailure.at < utcnow() - 4 * WINDOW))


def clear_failures(session: Session, username: str) -> None:
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))

"""Database engine and sessions, created lazily and never shared across a fork.

Each process gets its own engine on first use. After ``fork`` the child drops
the parent's pool without closing its connections (they belong to the parent),
as SQLAlchemy's pooling guide recommends, and builds a fresh one when needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

_lock = Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def _enable_sqlite_pragmas(engine: Engine) -> None:
    # WAL lets the admin read while a worker writes; busy_timeout waits for the
    # writer instead of failing at once; SQLite leaves foreign keys off by default.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def build_engine(url: str) -> Engine:
    """A new engine for ``url``; SQLite files get their folder and pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        _enable_sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (the configured database by default)."""
    url = url or get_settings().database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = build_engine(url)
        return engine


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    url = url or get_settings().database_url
    with _lock:
        factory = _factories.get(url)
    if factory is None:
        factory = sessionmaker(bind=get_engine(url), expire_on_commit=False)
        with _lock:
            _factories[url] = factory
    return factory


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


#: SQLSTATE class 53, insufficient resources (PostgreSQL): the metric's reason
_SQLSTATE_REASONS = {"53100": "full", "53200": "out_of_memory"}
#: SQLite's extended result codes, by prefix (``sqlite3.Error.sqlite_errorname``)
_SQLITE_REASONS = (
    ("SQLITE_FULL", "full"),
    ("SQLITE_READONLY", "read_only"),
    ("SQLITE_IOERR", "io_error"),  # also what a full disk gives a connection being opened
)


def storage_fault_reason(exc: BaseException) -> str | None:
    """Why the database could not store, when the fault is its storage's and not
    the statement's: ``full`` (PostgreSQL's DiskFull, SQLSTATE 53100, or SQLite's
    "database or disk is full"), ``out_of_memory`` (53200), ``insufficient_resources``
    (the rest of class 53), ``read_only`` or ``io_error`` (SQLite); else None.

    All of them reach SQLAlchemy as ``OperationalError``: nothing is wrong with
    what was written, and writing it again once the fault clears succeeds."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3 | 2
    if isinstance(sqlstate, str) and sqlstate.startswith("53"):
        return _SQLSTATE_REASONS.get(sqlstate, "insufficient_resources")
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return next((reason for prefix, reason in _SQLITE_REASONS if name.startswith(prefix)), None)
    return None


def dispose_engines(close: bool = True) -> None:
    """Forget every engine; ``close=False`` leaves inherited connections to the parent."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
        _factories.clear()
    for engine in engines:
        engine.dispose(close=close)


def _after_fork_in_child() -> None:
    # The parent may have held the lock at the moment of the fork: start afresh.
    global _lock
    _lock = Lock()
    dispose_engines(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)

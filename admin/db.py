"""A database session per request, closed when the request ends."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g
from sqlalchemy.orm import Session

from core.blobs import BlobStore
from core.db import get_sessionmaker
from core.queue import make_client
from core.settings import get_settings


def get_db() -> Session:
    if "db" not in g:
        g.db = get_sessionmaker(current_app.config["DATABASE_URL"])()
    return g.db


Row = TypeVar("Row")


def get_or_404(model: type[Row], key: int) -> Row:
    """The row of ``model`` with primary key ``key``, or a 404 response."""
    row = get_db().get(model, key)
    if row is None:
        abort(404)
    return row


def get_store() -> BlobStore:
    return BlobStore(current_app.config["BLOB_DIR"])


@lru_cache(maxsize=4)
def _celery_client(redis_url: str) -> Any:
    return make_client(get_settings().model_copy(update={"redis_url": redis_url}))


def get_celery_client() -> Any:
    """A send-only Celery client for this app's Redis, made once per process."""
    return _celery_client(current_app.config["REDIS_URL"])


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)

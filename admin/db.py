"""A database session per request, closed when the request ends."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from core.blobs import BlobStore
from core.db import get_sessionmaker


def get_db() -> Session:
    if "db" not in g:
        g.db = get_sessionmaker(current_app.config["DATABASE_URL"])()
    return g.db


def get_store() -> BlobStore:
    return BlobStore(current_app.config["BLOB_DIR"])


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)

"""What the site's tests share: the app with users and references, rows as a worker
writes them, a logged-in client, and API tokens made as an admin makes them."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from admin import create_app
from admin.auth import create_user
from core.blobs import BlobStore
from core.db import session_scope
from core.references import seed_from_folder
from core.results import insert_inspections
from core.tables import Inspection
from tests.conftest import SAMPLE, login, sample_images
from worker.inspection import base_row


@pytest.fixture
def app(settings):
    with session_scope(settings.database_url) as session:
        seed_from_folder(session, BlobStore(settings.blob_dir), SAMPLE, "test")
        create_user(session, "ada", "admin-password", "admin")
        create_user(session, "sam", "supervisor-password", "supervisor")
    return create_app(
        {
            "DATABASE_URL": settings.database_url,
            "BLOB_DIR": str(settings.blob_dir),
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": "test",
        }
    )


def add_inspections(settings, count: int, **overrides) -> list[int]:
    """Rows as a worker writes them, with real stored images."""
    store = BlobStore(settings.blob_dir)
    key = store.put(sample_images()[5].read_bytes())
    start = datetime.now(UTC) - timedelta(minutes=count)
    rows = []
    for i in range(count):
        distance = 0.1 + i / count
        values = dict(
            job_id=str(uuid.uuid4()),
            camera=f"cam-{i % 3}",
            status="flagged",
            label="crazing" if distance < 0.8 else "unknown",
            dissimilarity=distance,
            nearest_reference_id=1,
            threshold=0.8,
            model_version="test",
            image_key=key,
            distances=[
                {"reference_id": 1, "label": "crazing", "kind": "defect", "distance": distance},
                {"reference_id": 2, "label": "inclusion", "kind": "defect", "distance": 1.5},
            ],
            received_at=start + timedelta(minutes=i),
            processed_at=start + timedelta(minutes=i),
        )
        values.update(overrides)
        rows.append(base_row(**values))
    with session_scope(settings.database_url) as session:
        insert_inspections(session, rows)
        return list(session.scalars(select(Inspection.id).order_by(Inspection.id)))


def logged_in(app, user: str, password: str):
    client = app.test_client()
    assert login(client, user, password).status_code == 302
    return client


def make_token(app, name: str, *scopes: str) -> str:
    args = ["create-token", name, *(arg for scope in scopes for arg in ("--scope", scope))]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture
def api_token(app):
    return make_token(app, "mes-line-3", "submit", "read", "review", "metrics")


@pytest.fixture
def screenshots(tmp_path) -> Iterator[Path]:
    """Where browser tests put screenshots: $SCREENSHOT_DIR (``make screenshots`` sets
    it to docs/screenshots), else a temporary folder. Those kept in the repository
    are stored with a 256-colour palette afterwards: a third of the bytes, the same
    look for pages of flat colour."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    yield folder
    if os.environ.get("SCREENSHOT_DIR"):
        for path in folder.glob("*.png"):
            if path.stat().st_mtime >= started:
                shrink_png(path)


def shrink_png(path: Path) -> None:
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", optimize=True)
    if buffer.tell() < path.stat().st_size:
        path.write_bytes(buffer.getvalue())


@pytest.fixture
def page():
    """A page of Debian's Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    from tests.integration.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()

"""The Python client cameras use to enqueue images."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from core.jobs import InspectJob, send_job
from core.queue import make_client
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


class ImageTooLarge(ValueError):
    pass


class InspectionClient:
    """Sends images as ``inspect`` jobs over the shared Celery configuration."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.celery = make_client(self.settings)

    def submit_bytes(
        self,
        data: bytes,
        camera: str,
        captured_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Enqueue one image; returns its job_id. Oversized images are refused here."""
        if len(data) > self.settings.max_image_bytes:
            raise ImageTooLarge(
                f"image is {len(data):,} bytes, over the limit of "
                f"{self.settings.max_image_bytes:,} (MAX_IMAGE_BYTES)"
            )
        job = InspectJob.for_image_bytes(data, camera, captured_at, meta, job_id)
        return send_job(job, self.celery)

    def submit_file(
        self,
        path: str | Path,
        camera: str,
        job_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> str:
        path = Path(path)
        return self.submit_bytes(
            path.read_bytes(), camera, meta={"filename": path.name, **(meta or {})}, job_id=job_id
        )

    def close(self) -> None:
        self.celery.close()

    def __enter__(self) -> InspectionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

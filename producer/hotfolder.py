"""A hot folder: cameras write image files into a folder; each is enqueued once.

* A file is taken only once it is complete: its size and modification time
  have not changed for ``settle_s`` seconds (cameras write in pieces). Hidden
  files and names ending in ``.tmp`` or ``.part`` are never taken.
* Its job_id is derived from the camera, the file name and the file's bytes, so
  a watcher restarted after sending a file but before moving it sends the same
  job again, which the workers store once.
* It moves to ``done/`` only after its job is in Redis. While Redis is down the
  file stays where it is (the folder is the spool) and is retried.
* A file that is not an image moves to ``failed/`` beside a ``.reason.txt``
  that says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.images import ImageRejected, decode_image
from core.jobs import InspectJob
from producer.client import SEND_ERRORS, InspectionClient

log = logging.getLogger(__name__)

# Fixed namespace for job ids derived from files (uuid5).
HOT_FOLDER_NAMESPACE = uuid.UUID("6f1d3c52-8a5e-4d0b-9b7e-2f4a1c9e7d30")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


def job_id_for_file(camera: str, name: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return str(uuid.uuid5(HOT_FOLDER_NAMESPACE, f"{camera}\0{name}\0{digest}"))


def move_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder``, never overwriting an earlier file of the same name."""
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    os.replace(path, target)
    return target


@dataclass
class Seen:
    size: int
    mtime_ns: int
    stable_since: float


class HotFolder:
    def __init__(
        self, folder: Path, camera: str, client: InspectionClient, settle_s: float = 1.0
    ) -> None:
        self.folder = folder
        self.camera = camera
        self.client = client
        self.settle_s = settle_s
        self.done = folder / "done"
        self.failed = folder / "failed"
        self._seen: dict[str, Seen] = {}

    def candidates(self) -> list[Path]:
        return sorted(
            p
            for p in self.folder.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and not p.name.lower().endswith(IGNORED_SUFFIXES)
        )

    def complete_files(self, now: float) -> list[Path]:
        """Files whose size and modification time have held still for ``settle_s``."""
        ready, present = [], set()
        for path in self.candidates():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            present.add(path.name)
            seen = self._seen.get(path.name)
            if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                self._seen[path.name] = Seen(stat.st_size, stat.st_mtime_ns, now)
            elif now - seen.stable_since >= self.settle_s:
                ready.append(path)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return ready

    def process(self, path: Path) -> str | None:
        """Enqueue one complete file and move it; returns its job_id, None if not sent."""
        data = path.read_bytes()
        try:
            settings = self.client.settings
            decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
        except ImageRejected as exc:
            target = move_aside(path, self.failed)
            target.with_name(target.name + ".reason.txt").write_text(f"{exc}\n")
            log.warning("%s is not an image we can inspect: %s", path.name, exc)
            self._seen.pop(path.name, None)
            return None
        job = InspectJob.for_image_bytes(
            data,
            self.camera,
            meta={"filename": path.name, "hot_folder": str(self.folder)},
            job_id=job_id_for_file(self.camera, path.name, data),
        )
        try:
            self.client.send_job(job)
        except SEND_ERRORS as exc:
            log.warning("Redis does not answer (%s); %s stays until it does", exc, path.name)
            return None
        move_aside(path, self.done)
        self._seen.pop(path.name, None)
        return job.job_id

    def poll_once(self) -> list[tuple[str, Path]]:
        """One pass: returns (job_id, file) for each file enqueued."""
        sent = []
        for path in self.complete_files(time.monotonic()):
            job_id = self.process(path)
            if job_id is None and path.exists():
                break  # Redis is down: keep the order, try again next poll
            if job_id is not None:
                sent.append((job_id, path))
        return sent

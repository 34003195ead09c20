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
* Traceability: a sidecar ``<file>.json`` (``frame-7.png.json`` beside
  ``frame-7.png``) may hold the frame's trace, a JSON object of ``coil_id``,
  ``frame_index``, ``position_m``, ``across_m`` and ``coil_end``, checked as every
  job's trace is (``core.jobs.Trace``). It travels with its file to ``done/`` or
  ``failed/``; a bad sidecar sends its file to ``failed/`` with the reason. A
  ``.json`` file is never taken as an image: write the sidecar first, or before its
  image has held still for ``settle_s``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.images import ImageRejected, decode_image
from core.jobs import TRACE_FIELDS, InspectJob, JobInvalid, Trace
from producer.client import SEND_ERRORS, InspectionClient

log = logging.getLogger(__name__)

# Fixed namespace for job ids derived from files (uuid5).
HOT_FOLDER_NAMESPACE = uuid.UUID("6f1d3c52-8a5e-4d0b-9b7e-2f4a1c9e7d30")
SIDECAR_SUFFIX = ".json"
# files never taken as images: those still being written, and sidecars
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", SIDECAR_SUFFIX)
MAX_SIDECAR_BYTES = 64 * 1024  # a trace is a few dozen bytes


class SidecarInvalid(ValueError):
    """A file's sidecar cannot be read as its trace; the message says why."""


def job_id_for_file(camera: str, name: str, data: bytes, sidecar: bytes = b"") -> str:
    """The same file sent again gets the same job id; another trace, another job."""
    digest = hashlib.sha256(data).hexdigest()
    if sidecar:
        digest += hashlib.sha256(sidecar).hexdigest()
    return str(uuid.uuid5(HOT_FOLDER_NAMESPACE, f"{camera}\0{name}\0{digest}"))


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_trace(sidecar: bytes, name: str) -> Trace:
    """The trace a sidecar holds (``SidecarInvalid`` saying what is wrong)."""
    if len(sidecar) > MAX_SIDECAR_BYTES:
        raise SidecarInvalid(f"its sidecar {name} is over {MAX_SIDECAR_BYTES} bytes")
    try:
        fields: Any = json.loads(sidecar)
    except (ValueError, RecursionError) as exc:
        raise SidecarInvalid(f"its sidecar {name} is not JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise SidecarInvalid(f"its sidecar {name} must hold a JSON object of trace fields")
    unknown = sorted(str(key)[:40] for key in set(fields) - set(TRACE_FIELDS))
    if unknown:
        raise SidecarInvalid(
            f"its sidecar {name} has unknown fields {', '.join(unknown)}; it may hold "
            f"{', '.join(TRACE_FIELDS)}"
        )
    try:
        return Trace.from_fields(fields)
    except JobInvalid as exc:
        raise SidecarInvalid(f"its sidecar {name}: {exc}") from None


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
    signature: tuple[int, ...]  # the file's size and time, and its sidecar's
    stable_since: float


def signature(path: Path) -> tuple[int, ...]:
    """What changes while a file or its sidecar is being written (``OSError`` when
    the file is gone)."""
    stat = path.stat()
    try:
        side = sidecar_of(path).stat()
    except FileNotFoundError:
        return (stat.st_size, stat.st_mtime_ns)
    return (stat.st_size, stat.st_mtime_ns, side.st_size, side.st_mtime_ns)


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
        """Files whose size and modification time (and their sidecar's) have held
        still for ``settle_s``."""
        ready, present = [], set()
        for path in self.candidates():
            try:
                current = signature(path)
            except FileNotFoundError:
                continue
            present.add(path.name)
            seen = self._seen.get(path.name)
            if seen is None or seen.signature != current:
                self._seen[path.name] = Seen(current, now)
            elif now - seen.stable_since >= self.settle_s:
                ready.append(path)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return ready

    def process(self, path: Path) -> str | None:
        """Enqueue one complete file and move it; returns its job_id, None if not sent."""
        data = path.read_bytes()
        sidecar = sidecar_of(path)
        side = sidecar.read_bytes() if sidecar.exists() else None
        try:
            settings = self.client.settings
            decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
            trace = read_trace(side, sidecar.name) if side is not None else None
        except (ImageRejected, SidecarInvalid) as exc:
            target = self.move(path, self.failed)
            target.with_name(target.name + ".reason.txt").write_text(f"{exc}\n")
            log.warning("%s cannot be inspected: %s", path.name, exc)
            self._seen.pop(path.name, None)
            return None
        job = InspectJob.for_image_bytes(
            data,
            self.camera,
            meta={"filename": path.name, "hot_folder": str(self.folder)},
            job_id=job_id_for_file(self.camera, path.name, data, side or b""),
            trace=trace,
        )
        try:
            self.client.send_job(job)
        except SEND_ERRORS as exc:
            log.warning("Redis does not answer (%s); %s stays until it does", exc, path.name)
            return None
        self.move(path, self.done)
        self._seen.pop(path.name, None)
        return job.job_id

    @staticmethod
    def move(path: Path, folder: Path) -> Path:
        """Move a file and its sidecar, if any, into ``folder`` (the sidecar keeps its
        file's new name); returns where the file went."""
        sidecar = sidecar_of(path)
        target = move_aside(path, folder)
        if sidecar.exists():
            os.replace(sidecar, sidecar_of(target))
        return target

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

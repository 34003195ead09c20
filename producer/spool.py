"""A local spool: job messages Redis could not take, one JSON file each.

A message is written here (atomically) when sending fails, and sent again when
Redis answers. Several producer processes may share a spool: a file is claimed
by renaming it before it is sent, so two processes never send the same file at
once (and a job sent twice would still make one row: its job_id decides).

The spool counts the bytes it holds (``size_bytes``), so that a producer can
stop spooling at ``SPOOL_MAX_BYTES`` (``producer/client.py``). The count is kept
as files are written and sent, and taken again from the folder every
``RECOUNT_S``, which brings in what other processes sharing it wrote or sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CLAIM_SUFFIX = ".sending"
#: how old the byte count may grow before the folder is counted again (a count
#: stats every file, too much to do for each of thousands of spooled messages)
RECOUNT_S = 5.0


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._bytes = 0
        self._counted_at: float | None = None  # time.monotonic() of the last count

    def put(self, message: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{message['job_id']}.json"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(message, handle)
            handle.flush()
            os.fsync(handle.fileno())
            written = handle.tell()
        os.replace(tmp, target)
        self._bytes += written
        return target

    def size_bytes(self) -> int:
        """The bytes of the spooled messages (those being sent included), counted
        again from the folder when the last count is older than ``RECOUNT_S``."""
        now = time.monotonic()
        if self._counted_at is None or now - self._counted_at >= RECOUNT_S:
            self._bytes = self._count_bytes()
            self._counted_at = now
        return self._bytes

    def _count_bytes(self) -> int:
        if not self.folder.is_dir():
            return 0
        total = 0
        for path in self.folder.glob("*.json*"):  # spooled and claimed
            with contextlib.suppress(FileNotFoundError):  # sent by another process meanwhile
                total += path.stat().st_size
        return total

    def __len__(self) -> int:
        return len(self._files()) if self.folder.is_dir() else 0

    def _files(self) -> list[Path]:
        """Spooled files, oldest first; one another process claims meanwhile is left out."""
        dated = []
        for path in self.folder.glob("*.json"):
            try:
                dated.append((path.stat().st_mtime, path))
            except FileNotFoundError:
                continue
        return [path for _, path in sorted(dated)]

    def claim(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Spooled messages, oldest first, each renamed so it is this process's to send.

        The caller must ``done`` or ``release`` each one.
        """
        if not self.folder.is_dir():
            return
        for path in self._files():
            claimed = path.with_name(path.name + CLAIM_SUFFIX)
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            yield claimed, json.loads(claimed.read_text())

    def done(self, claimed: Path) -> None:
        try:
            size = claimed.stat().st_size
            claimed.unlink()
        except FileNotFoundError:
            return
        self._bytes = max(0, self._bytes - size)

    def release(self, claimed: Path) -> None:
        os.replace(claimed, claimed.with_name(claimed.name.removesuffix(CLAIM_SUFFIX)))

    def recover_stale_claims(self) -> None:
        """Put back claims left by a producer that died while sending."""
        if self.folder.is_dir():
            for claimed in self.folder.glob(f"*.json{CLAIM_SUFFIX}"):
                self.release(claimed)

"""A local spool: job messages Redis could not take, one JSON file each.

A message is written here (atomically) when sending fails, and sent again when
Redis answers. Several producer processes may share a spool: a file is claimed
by renaming it before it is sent, so two processes never send the same file at
once (and a job sent twice would still make one row: its job_id decides).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CLAIM_SUFFIX = ".sending"


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, message: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{message['job_id']}.json"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(message, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        return target

    def __len__(self) -> int:
        return len(self._files()) if self.folder.is_dir() else 0

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)

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
        claimed.unlink(missing_ok=True)

    def release(self, claimed: Path) -> None:
        os.replace(claimed, claimed.with_name(claimed.name.removesuffix(CLAIM_SUFFIX)))

    def recover_stale_claims(self) -> None:
        """Put back claims left by a producer that died while sending."""
        if self.folder.is_dir():
            for claimed in self.folder.glob(f"*.json{CLAIM_SUFFIX}"):
                self.release(claimed)

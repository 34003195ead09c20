"""A content-addressed image store: files named by the SHA-256 of their bytes.

Writing the same bytes twice stores one file. Writes go to a temporary file in
the same folder and are renamed into place only once their bytes are on disk,
so a reader (or a worker on another host sharing the volume) never sees half a
file, even after a power cut. ``put_many`` makes a whole batch durable with one
file-system sync instead of one per file, which is most of the cost of storing
small images.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^[0-9a-f]{64}$")


def _load_syncfs() -> Any:
    """Linux's syncfs(2), which flushes one file system; None where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key_for(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def path(self, key: str) -> Path:
        """Where ``key`` lives: two levels of fan-out keep folders small."""
        if not _KEY.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        """Store several blobs durably; returns their keys in order."""
        keys = [self.key_for(data) for data in blobs]
        pending: dict[str, str] = {}  # key -> temporary file
        try:
            for key, data in zip(keys, blobs, strict=True):
                target = self.path(key)
                if key in pending or target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    if _syncfs is None:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.chmod(tmp, 0o644)
                pending[key] = tmp
            if pending:
                self._sync()  # the bytes are on disk before any name points at them
                for key, tmp in pending.items():
                    os.replace(tmp, self.path(key))
                self._sync()  # and so are the names
        finally:
            for tmp in pending.values():
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return keys

    def _sync(self) -> None:
        if _syncfs is None:
            return
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs(fd) != 0:
                raise OSError(ctypes.get_errno(), "syncfs failed", str(self.root))
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

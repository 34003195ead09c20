"""A content-addressed image store: files named by the SHA-256 of their bytes.

Writing the same bytes twice stores one file. Writes go to a temporary file in
the same folder and are renamed into place only once their bytes are on disk,
so a reader (or a worker on another host sharing the volume) never sees half a
file, even after a power cut. ``put_many`` makes a whole batch durable with one
file-system sync instead of one per file, which is most of the cost of storing
small images.

Any failure to write (the disk full, the folder read-only or not ours) is raised
as :class:`BlobStoreUnwritable`, which names the folder and why: it is a fault
of the store, never of the image, and the worker waits it out holding its jobs
(``worker.retry``). The temporary files of a failed write are removed, so a
half-written file never stays behind to take space or be mistaken for a blob.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^[0-9a-f]{64}$")

log = logging.getLogger(__name__)

#: errno -> (the metric's reason, what it means for the folder)
_WHY = {
    errno.ENOSPC: ("full", "is full"),
    errno.EDQUOT: ("full", "is over its disk quota"),
    errno.EROFS: ("read_only", "is read-only"),
    errno.EACCES: ("permission", "is not writable by this user"),
    errno.EPERM: ("permission", "is not writable by this user"),
}


class BlobStoreUnwritable(OSError):
    """The store could not write: a fault of its folder, not of what was written.

    ``reason`` is one of ``full``, ``read_only``, ``permission`` or ``io_error``;
    ``str()`` says it for an operator, e.g. "BLOB_DIR /data/blobs is full (ENOSPC)".
    """

    def __init__(self, root: Path | str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), cause.filename)
        self.root = root
        self.reason, self.meaning = _WHY.get(cause.errno or 0, ("io_error", "could not be written"))
        name = errno.errorcode.get(cause.errno or 0, "")
        self.detail = f"{name}: {cause.strerror}" if self.reason == "io_error" else name

    def __str__(self) -> str:
        return f"BLOB_DIR {self.root} {self.meaning} ({self.detail or self.strerror})"


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
        """Store several blobs durably; returns their keys in order.

        Raises :class:`BlobStoreUnwritable` when the folder cannot take them; the
        blobs already renamed into place are whole, and no temporary file stays."""
        keys = [self.key_for(data) for data in blobs]
        pending: dict[str, str] = {}  # key -> temporary file, once its bytes are written
        tmp = None  # the temporary file being written
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
                pending[key], tmp = tmp, None
            if pending:
                self._sync()  # the bytes are on disk before any name points at them
                for key, written in list(pending.items()):
                    os.replace(written, self.path(key))
                    del pending[key]
                self._sync()  # and so are the names
        except OSError as exc:
            raise BlobStoreUnwritable(self.root, exc) from exc
        finally:
            # A full disk fails mid-write: remove what was written, which also
            # frees its space (a read-only folder may refuse even that: logged).
            for leftover in [tmp, *pending.values()]:
                if leftover is not None:
                    _remove(leftover)
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


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # it never shadows a blob: only whole files are renamed
        log.warning("could not remove the temporary file %s (%s)", path, exc.strerror)

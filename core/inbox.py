"""Reading a job's ``image_path`` from the inbox folder, and nothing outside it.

The path is opened one component at a time from the inbox folder, each with
``O_NOFOLLOW``, and the file opened is checked, not the name: a symbolic link
anywhere below the inbox is refused, so one swapped in between a check and the
open cannot lead outside (resolving the path first and then opening it by name
could be raced). A file with several hard links is refused too: a hard link
made in the inbox to a file elsewhere would otherwise read that file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from core.images import ImageRejected
from core.jobs import JobInvalid

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO put there returns at once (it is then refused).
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def inbox_parts(image_path: str, inbox_dir: Path) -> list[str]:
    """The names leading from the inbox folder to ``image_path``, checked lexically."""
    shown = repr(image_path[:200])
    outside = JobInvalid(
        f"image_path {shown} is outside the inbox folder; put the file in the inbox "
        "(INBOX_DIR) and send its path relative to it"
    )
    if "\0" in image_path:
        raise JobInvalid("image_path contains a NUL character")
    try:
        os.fsencode(image_path)  # what os.open would do, raising UnicodeEncodeError
    except UnicodeEncodeError:
        raise JobInvalid(
            "image_path is not valid text (it holds a lone surrogate); send the file's name"
        ) from None
    path = PurePosixPath(image_path)
    if path.is_absolute():
        for inbox in (inbox_dir.absolute(), inbox_dir.resolve()):
            if path.is_relative_to(inbox):
                path = path.relative_to(inbox)
                break
        else:
            raise outside
    parts = list(path.parts)
    if not parts:
        raise JobInvalid(f"image_path {shown} names the inbox folder itself, not a file")
    if ".." in parts:
        raise outside
    return parts


def read_inbox_file(image_path: str, inbox_dir: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``image_path`` names inside ``inbox_dir``.

    Raises ``JobInvalid`` for a path that leaves the inbox, passes through a
    symbolic link or names no single-linked regular file, and ``ImageRejected``
    for a file over ``max_bytes``.
    """
    parts = inbox_parts(image_path, inbox_dir)
    shown = repr(image_path[:200])
    try:
        folder = os.open(inbox_dir.resolve(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        raise JobInvalid("the inbox folder (INBOX_DIR) does not exist on this worker") from None
    try:
        for name in parts[:-1]:
            inner = os.open(name, DIRECTORY_FLAGS, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        raise JobInvalid(f"image_path {shown} does not exist in the inbox folder") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise JobInvalid(
                f"image_path {shown} is or passes through a symbolic link (or a file "
                "used as a folder); send the path of the file itself"
            ) from None
        raise JobInvalid(f"image_path {shown} could not be opened ({exc.strerror})") from None
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JobInvalid(f"image_path {shown} is not a regular file")
        if info.st_nlink > 1:
            raise JobInvalid(
                f"image_path {shown} has {info.st_nlink} hard links; the inbox takes only "
                "files with one name (copy or move the file there instead of linking it)"
            )
        data = read_at_most(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ImageRejected(
            f"the image file is over the limit of {max_bytes:,} bytes; send a smaller image"
        )
    return data


def read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd`` (a file that grows while read stops there)."""
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)

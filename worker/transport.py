"""Kombu's Redis transport, with one hole closed: a job popped during a Redis restart.

Kombu takes a message off the queue with BRPOP and only then records it as
unacknowledged (a second command). If Redis goes away between the two, the
message exists nowhere but in this worker's memory, and kombu drops it when
the connection fails: a lost job. Here such a message is written to a local
rescue folder before the error goes on, and pushed back onto its queue as soon
as Redis answers again (or when the worker next starts). A job rescued this
way that was in fact recorded is inspected twice at worst, and stored once.

Select it with Celery's ``broker_transport`` (the worker's configuration does).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from core.settings import get_settings

log = logging.getLogger(__name__)


class RescueFolder:
    """Popped messages kept on disk until they are back on their queue."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, key: bytes, item: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(len(key).to_bytes(4, "big") + key + item)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.folder / f"{uuid.uuid4().hex}.msg")

    def push_back(self, client: Any) -> int:
        if not self.folder.is_dir():
            return 0
        count = 0
        for path in sorted(self.folder.glob("*.msg")):
            data = path.read_bytes()
            size = int.from_bytes(data[:4], "big")
            key, item = data[4 : 4 + size], data[4 + size :]
            client.rpush(key, item)  # the right end: next to be taken, as kombu restores
            path.unlink()
            count += 1
        if count:
            log.warning("put %d message(s) popped during a broker outage back on the queue", count)
        return count


def rescue_folder() -> RescueFolder:
    return RescueFolder(get_settings().spool_dir / "worker-rescue")


class Channel(kombu_redis.Channel):
    _rescue: RescueFolder | None = None

    @property
    def rescue(self) -> RescueFolder:
        if self._rescue is None:
            self._rescue = rescue_folder()
        return self._rescue

    def _brpop_start(self, timeout: int = 1) -> None:
        self.rescue.push_back(self.client)  # Redis answers: first return what we hold
        super()._brpop_start(timeout)

    def _brpop_read(self, **options: Any) -> bool:
        # Kombu's _brpop_read, with the delivery step guarded.
        try:
            try:
                popped = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not popped:
                raise kombu_redis.Empty()
            key, item = popped
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                self.connection._deliver(loads(bytes_to_str(item)), dest)
            except self.connection_errors:
                self.rescue.put(
                    bytes(key) if isinstance(key, bytes) else key.encode(),
                    item if isinstance(item, bytes) else item.encode(),
                )
                raise
            return True
        finally:
            self._in_poll = None


class Transport(kombu_redis.Transport):
    Channel = Channel

"""Kombu's Redis transport, with two holes closed: jobs lost while being fetched.

Kombu fetches with BRPOP, which removes the job from Redis before the reply
reaches the worker: a reply lost to a Redis shutdown, or dropped with the
worker's connections when another of them fails first, takes the job with it.
Here a channel that consumes one queue without priority levels (the worker's)
fetches with BLMOVE into a processing list instead; the job leaves that list
once kombu has recorded it as unacknowledged, and whatever is left there is put
back on the queue when the channel next connects.

Kombu takes a message off the queue and only then records it as
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
    _processing_restored = False
    #: the list the pending fetch takes from with BLMOVE; None while BRPOP is pending
    _fetching_from: str | None = None

    @property
    def rescue(self) -> RescueFolder:
        if self._rescue is None:
            self._rescue = rescue_folder()
        return self._rescue

    def _reliable_source(self) -> str | None:
        """The one list this channel takes jobs from, when it consumes a single
        queue without priority levels (the worker's case); None otherwise."""
        queues = list(self.active_queues)
        if len(queues) != 1 or list(self.priority_steps) != [0]:
            return None
        return self._q_for_pri(queues[0], 0)

    def _processing_key(self, source: str) -> str:
        return f"{source}{self.sep}processing"

    def _brpop_start(self, timeout: int = 1) -> None:
        self.rescue.push_back(self.client)  # Redis answers: first return what we hold
        source = self._fetching_from = self._reliable_source()
        if source is None:
            super()._brpop_start(timeout)
            return
        processing = self._processing_key(source)
        if not self._processing_restored:
            # A job moved to the processing list by a fetch whose reply never arrived
            # (Redis stopped in between) is still there: give it back to the queue.
            # A job another worker is delivering at this instant may come back too,
            # and is inspected twice and stored once.
            restored = 0
            while self.client.lmove(processing, source, "RIGHT", "RIGHT") is not None:
                restored += 1
            if restored:
                log.warning("put %d job(s) fetched during a broker outage back", restored)
            self._processing_restored = True
        self._queue_cycle.consume(1)
        self._in_poll = self.client.connection
        # BLMOVE instead of kombu's BRPOP: the job is moved, not removed, so a reply
        # lost to a Redis shutdown leaves it in the processing list, not nowhere.
        self.client.connection.send_command(
            "BLMOVE", source, processing, "RIGHT", "LEFT", timeout or 0
        )

    def _brpop_read(self, **options: Any) -> bool:
        # Kombu's _brpop_read, with the delivery step guarded; it reads the reply
        # of the command _brpop_start sent, whatever the queues are now.
        source = self._fetching_from
        try:
            try:
                command = "BRPOP" if source is None else "BLMOVE"
                popped = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not popped:
                raise kombu_redis.Empty()
            key, item = (source, popped) if source is not None else popped
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            raw_key = bytes(key) if isinstance(key, bytes) else key.encode()
            raw_item = item if isinstance(item, bytes) else item.encode()
            try:
                self.connection._deliver(loads(bytes_to_str(item)), dest)
            except self.connection_errors:
                self.rescue.put(raw_key, raw_item)
                raise
            if source is not None:
                # recorded as unacknowledged by now: no longer needed in processing
                self.client.lrem(self._processing_key(source), 1, raw_item)
            return True
        finally:
            self._in_poll = None


class Transport(kombu_redis.Transport):
    Channel = Channel

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

Anything else on the list is delivered too, never raised out of the fetch
(which stops the worker): an item that is not a kombu message (not JSON, an
envelope with parts missing, compressed, too large) is wrapped in one that
says why, and the consumer stores it as a dead letter and acknowledges it.

Select it with Celery's ``broker_transport`` (the worker's configuration does).
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from core.jobs import QUEUE_NAME
from core.settings import get_settings
from worker.envelope import UNREADABLE_HEADER
from worker.recovery import HeldJobsQoS

#: what an unreadable item keeps of its bytes (the dead letter shows the start)
UNREADABLE_KEEP_BYTES = 4096

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


def unreadable_envelope(raw: bytes, reason: str, queue: str, task_id: Any = None) -> dict[str, Any]:
    """A kombu envelope standing for an item that is none: it carries the item's
    first bytes, in a header why it was unreadable, and the task id it named, if
    any (a UUID is the job's id: its rejection can be a row). Restored to
    ``queue`` directly (the default exchange), should its worker die holding it."""
    headers: dict[str, Any] = {UNREADABLE_HEADER: reason}
    if isinstance(task_id, str):
        headers["id"] = task_id[:200]
    return {
        "body": base64.b64encode(raw[:UNREADABLE_KEEP_BYTES]).decode("ascii"),
        "content-type": "application/x-unreadable",
        "content-encoding": "binary",
        "headers": headers,
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "body_encoding": "base64",
            "priority": 0,
        },
    }


def envelope_problem(payload: Any) -> str | None:
    """What keeps kombu from delivering ``payload``, or None when it can."""
    if not isinstance(payload, dict):
        return f"a JSON {type(payload).__name__}, not a kombu message object"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "a kombu message without properties"
    info = properties.get("delivery_info")
    if not isinstance(properties.get("delivery_tag"), str) or not isinstance(info, dict):
        return "a kombu message without a delivery tag or delivery info"
    if not all(isinstance(info.get(key), str) for key in ("exchange", "routing_key")):
        return "a kombu message whose delivery info names no exchange or routing key"
    if properties.get("body_encoding") not in (None, "base64", "utf-8"):
        return f"a body encoded as {str(properties.get('body_encoding'))[:40]!r}"
    if not isinstance(payload.get("body"), str | None):
        return "a kombu message whose body is not a string"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return f"a kombu message whose headers are a {type(headers).__name__}, not an object"
    if headers and headers.get("compression"):
        # refused unread: a small compressed body may expand to gigabytes
        return "a compressed message (compression is not accepted)"
    return None


class Message(virtual.Message):
    """A kombu message, or, for a payload that cannot be one, the unreadable
    envelope standing for it (so the fetch never fails on what a sender wrote)."""

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        problem = envelope_problem(payload)
        if problem is None:
            try:
                super().__init__(payload, channel=channel, **kwargs)
                return
            except Exception as exc:
                problem = f"a kombu message that could not be read ({type(exc).__name__}: {exc})"
        raw = payload if isinstance(payload, bytes) else _dumps_or_repr(payload).encode()
        parts: dict[str, Any] = payload if isinstance(payload, dict) else {}
        properties = parts.get("properties")
        delivery = properties.get("delivery_info") if isinstance(properties, dict) else None
        queue = delivery.get("routing_key") if isinstance(delivery, dict) else None
        named = parts.get("headers")
        headers: dict[str, Any] = named if isinstance(named, dict) else {}
        reason = f"the broker held {problem}; send jobs with a Celery client (send_task)"
        envelope = unreadable_envelope(
            raw, reason, queue if isinstance(queue, str) else QUEUE_NAME, headers.get("id")
        )
        super().__init__(envelope, channel=channel, **kwargs)


def _dumps_or_repr(payload: Any) -> str:
    try:
        return dumps(payload)
    except Exception:
        return repr(payload)


class Channel(kombu_redis.Channel):
    Message = Message
    QoS = HeldJobsQoS  # records the jobs this worker holds (worker/recovery.py)
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
            if popped is None:  # timed out; an empty item (b"") is an item, a dead letter
                raise kombu_redis.Empty()
            key, item = (source, popped) if source is not None else popped
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            raw_key = bytes(key) if isinstance(key, bytes) else key.encode()
            raw_item = item if isinstance(item, bytes) else item.encode()
            try:
                self.connection._deliver(self.envelope(raw_item, dest), dest)
            except self.connection_errors:
                self.rescue.put(raw_key, raw_item)
                raise
            if source is not None:
                # recorded as unacknowledged by now: no longer needed in processing
                self.client.lrem(self._processing_key(source), 1, raw_item)
            return True
        finally:
            self._in_poll = None

    @staticmethod
    def envelope(item: bytes, queue: str) -> Any:
        """The kombu envelope ``item`` holds; for an item that is not JSON or is too
        large, the unreadable envelope standing for it."""
        limit = 2 * get_settings().max_image_bytes + 1024 * 1024  # base64 and the rest
        if len(item) > limit:
            reason = f"a {len(item):,}-byte item, over the limit of {limit:,} bytes"
        else:
            try:
                return loads(bytes_to_str(item))
            except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
                reason = f"a {len(item):,}-byte item that is not JSON ({str(exc)[:120]})"
        reason = f"the broker held {reason}; send jobs with a Celery client (send_task)"
        return unreadable_envelope(item, reason, queue)


class Transport(kombu_redis.Transport):
    Channel = Channel

"""Checking a broker message before Celery acts on it: only well-formed ``inspect`` jobs pass.

Anyone who can write to the ``inspect`` list can put anything there, and Celery
trusts the envelope: a body of ``{}`` or a message without an ``id`` header
raises inside its consumer and stops the worker, while unknown task names,
undecodable bodies and messages without headers are dropped with a log line.
The worker's consumer (``worker/consumer.py``) checks every message here first
and stores what fails, with the reason, instead of handing it to Celery.
"""

from __future__ import annotations

import json
from typing import Any

from core.jobs import TASK_NAME

#: the header of the envelope the transport wraps around an item that is no kombu
#: message (worker/transport.py); its value says why
UNREADABLE_HEADER = "x-inspection-unreadable"
#: what a dead letter keeps of a body, and of each header value, at most
BODY_EXCERPT_CHARS = 2000
HEADER_VALUE_CHARS = 200
# Protocol 2 keeps links to other tasks in the body's third element ("embed").
LINK_FIELDS = ("callbacks", "errbacks", "chain", "chord")


class MessageRefused(Exception):
    """A message that cannot be an inspect job; ``reason`` says why, for the sender.

    ``task_id`` and ``kwargs`` are what could be read of it, so that a job id can
    still be recovered (a rejected row) where the message holds one.
    """

    def __init__(
        self, reason: str, task_id: Any = None, kwargs: Any = None, task: Any = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id if isinstance(task_id, str) else None
        self.kwargs = kwargs if isinstance(kwargs, dict) else {}
        self.task = task if isinstance(task, str) else None


def check_task_message(message: Any) -> None:
    """Raise ``MessageRefused`` unless ``message`` is a well-formed ``inspect`` task
    message (Celery's protocol 2, or protocol 1) that Celery can take safely."""
    headers = message.headers
    if headers is not None and not isinstance(headers, dict):
        raise MessageRefused(
            f"the message's headers are a {type(headers).__name__}, not an object; "
            "send jobs with a Celery client (send_task)"
        )
    headers = headers or {}
    if UNREADABLE_HEADER in headers:  # set by our transport, or by a sender: shown as text
        reason = shown(headers[UNREADABLE_HEADER], BODY_EXCERPT_CHARS) or "unreadable"
        raise MessageRefused(reason, task_id=headers.get("id"))
    try:
        body = message.decode()
    except Exception as exc:
        raise MessageRefused(
            f"the message body could not be read as JSON ({type(exc).__name__}: "
            f"{str(exc)[:200]}); jobs are JSON Celery task messages",
            task_id=headers.get("id"),
            task=headers.get("task"),
        ) from None
    if "task" in headers:  # protocol 2: the task in the headers, [args, kwargs, embed]
        task, task_id = headers.get("task"), headers.get("id")
        if not isinstance(body, list | tuple) or len(body) != 3:
            raise MessageRefused(
                f"the body of a Celery task message is [args, kwargs, options]; got {_shape(body)}",
                task_id=task_id,
                task=task,
                kwargs=body if isinstance(body, dict) else None,
            )
        args, kwargs, embed = body
        options = {**headers, **(embed if isinstance(embed, dict) else {})}
    elif isinstance(body, dict) and "task" in body:  # protocol 1: all in the body
        task, task_id = body.get("task"), body.get("id")
        args, kwargs, options = body.get("args", []), body.get("kwargs", {}), body
    else:
        raise MessageRefused(
            f"not a Celery task message: no task is named in its headers or body ({_shape(body)})",
            task_id=headers.get("id"),
            kwargs=body if isinstance(body, dict) else None,
        )
    refuse = _refuser(task_id, kwargs, task)
    if task != TASK_NAME:
        refuse(f"unknown task {shown(task, 80)!r}: the workers run only {TASK_NAME!r}")
    if not isinstance(task_id, str) or not task_id.strip():
        refuse("the message has no task id (the 'id' header); send it with Celery's send_task")
    if not isinstance(kwargs, dict):
        refuse(
            f"the task's keyword arguments must be an object, got {type(kwargs).__name__}; "
            "send job_id, camera, captured_at, image_b64 or image_path and meta as kwargs"
        )
    if not isinstance(args, list | tuple):
        refuse(f"the task's positional arguments must be a list, got {type(args).__name__}")
    if args:
        refuse(
            "the inspect task takes keyword arguments only (job_id, camera, "
            "captured_at, image_b64 or image_path, meta); it got positional ones"
        )
    for name in ("eta", "expires"):
        if options.get(name) is not None:
            refuse(
                f"inspect jobs take no {name} (nor countdown): the line inspects each "
                "image when it arrives; send the job without it"
            )
    if any(options.get(name) for name in LINK_FIELDS):
        refuse("inspect jobs take no callbacks, error callbacks, chains or chords")


def _refuser(task_id: Any, kwargs: Any, task: Any) -> Any:
    def refuse(reason: str) -> None:
        raise MessageRefused(reason, task_id=task_id, kwargs=kwargs, task=task)

    return refuse


def _shape(value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object" if value else "an empty object"
    return f"a {type(value).__name__}"


def describe(message: Any) -> dict[str, Any]:
    """What a dead letter keeps of ``message``: its headers (as JSON, values cut
    short) and the start of its body as printable text, with the body's size."""
    raw = getattr(message, "body", None)
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        text = data.decode("utf-8", errors="replace")
    else:
        text = "" if raw is None else str(raw)
        data = text.encode("utf-8", errors="replace")
    headers = getattr(message, "headers", None)
    return {
        "headers": json_safe(headers) if isinstance(headers, dict) else None,
        "body": printable(text[:BODY_EXCERPT_CHARS]),
        "body_bytes": len(data),
    }


def json_safe(headers: dict[Any, Any]) -> dict[str, Any]:
    """Headers as a JSON object of short strings (any value, however odd)."""
    return {
        printable(str(key))[:HEADER_VALUE_CHARS]: shown(value, HEADER_VALUE_CHARS)
        for key, value in list(headers.items())[:50]
    }


def shown(value: Any, limit: int) -> str:
    """``value`` as printable text of at most ``limit`` characters, whatever it is;
    one nested too deeply to write out (RecursionError) is named by its type."""
    if not isinstance(value, str):
        try:
            value = json.dumps(value, default=repr)
        except (TypeError, ValueError, RecursionError):
            value = f"a {type(value).__name__}"
    return printable(value[:limit])


def printable(text: str) -> str:
    """Control characters (NUL included, which PostgreSQL text refuses) as '?'."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)

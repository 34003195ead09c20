"""One HTTP POST of an event to a plant system's webhook, and what came of it.

Plain ``urllib`` (no dependency the workers do not have already), with redirects
refused: a POST redirected elsewhere would either drop its body or carry a signed
event to a host no admin chose; the 3xx is logged for the admin to fix the URL.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

#: how much of a refusing endpoint's answer the delivery log keeps
ANSWER_BYTES = 200


@dataclass(frozen=True)
class Attempt:
    """One try: delivered or not, the receiver's HTTP status when it answered, why not."""

    delivered: bool
    status: int | None = None
    error: str | None = None


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_opener = urllib.request.build_opener(RefuseRedirects)


def post_webhook(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Attempt:
    """POST ``body``; any 2xx is delivered, anything else (another status, no answer
    within ``timeout_s``, no connection) is a failed try, saying why."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            status = int(response.status)
            response.read(ANSWER_BYTES)
    except urllib.error.HTTPError as exc:  # an answer, but not 2xx (3xx included)
        with exc:
            answer = exc.read(ANSWER_BYTES).decode("utf-8", "replace").strip()
        error = f"HTTP {exc.code} {exc.reason}" + (f": {answer}" if answer else "")
        return Attempt(False, exc.code, error)
    except TimeoutError:
        return Attempt(False, None, f"no answer within {timeout_s:g} s (WEBHOOK_TIMEOUT_S)")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Attempt(False, None, f"no answer within {timeout_s:g} s (WEBHOOK_TIMEOUT_S)")
        return Attempt(False, None, f"could not connect: {reason}")
    except (OSError, http.client.HTTPException) as exc:
        return Attempt(False, None, f"the connection failed: {type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Attempt(True, status)
    return Attempt(False, status, f"HTTP {status}")

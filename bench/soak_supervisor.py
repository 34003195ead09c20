"""A supervisor at the admin site during the soak: a few requests a second.

Logged in as a supervisor, it polls the line's status as the dashboard's script
does, opens the dashboard, the queue, inspections and their thumbnails, and reads
and reviews through the JSON API with a token, in a fixed rotation. It records
what each kind of request answered and how long it took, and the queue length
the dashboard showed (the backlog, as a supervisor sees it).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests

#: one rotation: the line status as often as the dashboard's script polls it, the
#: rest in turn; the full dashboard (the heaviest page) once every third rotation
ROTATION = (
    "line",
    "queue",
    "line",
    "api_list",
    "line",
    "detail",
    "line",
    "api_get",
    "line",
    "page",
)
PAGES_BY_ROTATION = ("thumb", "thumb", "dashboard", "thumb", "review")
TIMEOUT_S = 30


@dataclass
class SupervisorLog:
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)
    times_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    dashboard_queue: list[tuple[float, int]] = field(default_factory=list)
    dashboard_shows_queue: bool | None = None

    def summary(self) -> dict[str, Any]:
        def p95(values: list[float]) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0

        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "last_error": dict(self.last_error),
            "p95_ms": {kind: round(p95(v), 1) for kind, v in self.times_ms.items()},
            "dashboard_queue_peak": max((q for _, q in self.dashboard_queue), default=None),
            "dashboard_shows_queue": self.dashboard_shows_queue,
        }


class Supervisor(threading.Thread):
    def __init__(self, url: str, username: str, password: str, token: str, rate: float) -> None:
        super().__init__(name="soak-supervisor", daemon=True)
        self.url, self.username, self.password = url, username, password
        self.api = {"Authorization": f"Bearer {token}"}
        self.interval = 1.0 / rate
        self.log = SupervisorLog()
        self.stopping = threading.Event()
        self.session = requests.Session()
        self.recent: list[dict[str, Any]] = []  # the newest inspections, from the API

    def login(self) -> None:
        page = self.session.get(f"{self.url}/login", timeout=TIMEOUT_S).text
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        if not match:
            raise RuntimeError("the login page has no CSRF token")
        answer = self.session.post(
            f"{self.url}/login",
            data={
                "csrf_token": match.group(1),
                "username": self.username,
                "password": self.password,
            },
            timeout=TIMEOUT_S,
        )
        if "/login" in answer.url:
            raise RuntimeError(f"could not log in as {self.username}")

    def run(self) -> None:
        try:
            self.login()
        except (requests.RequestException, RuntimeError) as exc:
            self.failed("login", str(exc))
            return
        n = 0
        due = time.monotonic()
        while not self.stopping.is_set():
            kind = ROTATION[n % len(ROTATION)]
            if kind == "page":
                kind = PAGES_BY_ROTATION[(n // len(ROTATION)) % len(PAGES_BY_ROTATION)]
            self.request(kind)
            n += 1
            due += self.interval
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self.stopping.set()
        self.join(TIMEOUT_S + 5)
        self.session.close()

    def request(self, kind: str) -> None:
        started = time.monotonic()
        try:
            response = self.send(kind)
        except requests.RequestException as exc:
            self.failed(kind, f"{type(exc).__name__}: {exc}")
            return
        if response is None:
            return  # nothing to ask yet (no inspection listed)
        self.log.times_ms[kind].append(1000 * (time.monotonic() - started))
        self.log.requests[kind] += 1
        if "/login" in response.url and kind not in ("api_list", "api_get", "review"):
            self.failed(kind, "the session ended; logging in again")
            self.login()
        elif response.status_code >= 400:
            self.failed(kind, f"HTTP {response.status_code}: {response.text[:200]}")
        else:
            self.read(kind, response)

    def failed(self, kind: str, why: str) -> None:
        self.log.errors[kind] += 1
        self.log.last_error[kind] = why

    def send(self, kind: str) -> requests.Response | None:
        get = self.session.get
        if kind == "line":
            return get(f"{self.url}/dashboard/line", timeout=TIMEOUT_S)
        if kind == "dashboard":
            return get(f"{self.url}/dashboard", timeout=TIMEOUT_S)
        if kind == "queue":
            return get(f"{self.url}/inspections", timeout=TIMEOUT_S)
        if kind == "api_list":
            return get(
                f"{self.url}/api/v1/inspections",
                params={"limit": 25},
                headers=self.api,
                timeout=TIMEOUT_S,
            )
        if not self.recent:
            return None
        row = self.recent[0]
        if kind == "detail":
            return get(f"{self.url}/inspections/{row['id']}", timeout=TIMEOUT_S)
        if kind == "api_get":
            return get(
                f"{self.url}/api/v1/inspections/{row['id']}", headers=self.api, timeout=TIMEOUT_S
            )
        if kind == "thumb":
            if not row.get("image_url"):
                return None
            return get(f"{self.url}{row['image_url']}/thumb", timeout=TIMEOUT_S)
        if kind == "review":
            return self.session.post(
                f"{self.url}/api/v1/inspections/{row['id']}/review",
                json={"action": "comment", "comment": "soak: looked at it"},
                headers=self.api,
                timeout=TIMEOUT_S,
            )
        raise ValueError(f"unknown request kind {kind!r}")

    def read(self, kind: str, response: requests.Response) -> None:
        if kind == "line":
            queue = response.json().get("queue")
            if queue is not None:
                self.log.dashboard_queue.append((time.time(), int(queue)))
        elif kind == "api_list":
            self.recent = response.json().get("items", [])[:5]
        elif kind == "dashboard" and self.log.dashboard_shows_queue is None:
            self.log.dashboard_shows_queue = 'id="queue-length"' in response.text

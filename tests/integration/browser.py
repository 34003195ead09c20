"""What the browser tests share: Debian's Chromium, the admin server they drive, and
logging in to it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import Settings
from tests.conftest import BIN, ROOT, free_port, settings_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def admin_server(settings: Settings, log_path: Path) -> Iterator[str]:
    """``flask --app admin run`` on a free port, its URL once /login answers."""
    port = free_port()
    log = open(log_path, "ab")
    server = subprocess.Popen(
        [str(BIN / "flask"), "--app", "admin", "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=settings_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/login", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(log_path.read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def log_in(page, url: str, user: str = "sam", password: str = "supervisor-password") -> None:
    """Log in on the site at ``url`` as a person would; back on the queue when done."""
    page.goto(f"{url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")
    page.wait_for_url(re.compile(r"/inspections"))

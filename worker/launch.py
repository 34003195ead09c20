"""The command line that starts one worker process.

The demo, the tests and the line benchmark all start workers as processes of
their own; they build the command here, so that a worker started by any of them
runs the same app with the same pool (the Celery app itself is configured in
``worker.celery_app``, not by these arguments).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

#: For workers that never talk to each other: skip the start-up sync with
#: other workers (mingle, which waits about a second for replies) and the
#: cluster chatter (gossip), which short-lived test and benchmark workers do not use.
STANDALONE = ("--without-gossip", "--without-mingle")


def worker_argv(hostname: str, *, loglevel: str = "INFO", extra: Sequence[str] = ()) -> list[str]:
    """``celery -A worker worker`` from this interpreter's environment, with a node
    name (``%h`` is the host's name), a log level and any ``extra`` options.

    The pool is solo: one process inspects one batch at a time with the model's
    threads (MODEL_THREADS) and loads the model once, never across a fork; more
    throughput means more worker processes (README, *Workers*).
    """
    celery = Path(sys.executable).parent / "celery"
    return [
        str(celery),
        "-A",
        "worker",
        "worker",
        "--hostname",
        hostname,
        "--loglevel",
        loglevel,
        "--pool",
        "solo",
        *extra,
    ]

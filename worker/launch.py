"""The command line that starts one worker process.

The demo, the tests and the line benchmark all start workers as processes of
their own; they build the command here, so that a worker started by any of them
runs the same app with the same pool (the Celery app itself is configured in
``worker.celery_app``, not by these arguments).
"""

from __future__ import annotations

from collections.abc import Sequence

#: One process inspects one batch at a time: the model already uses the
#: process's threads (MODEL_THREADS), and a solo pool loads it once, never
#: across a fork (see docs: scaling means starting more worker processes).
SOLO_POOL = ("--pool", "solo")

#: For workers that never talk to each other: skip the start-up sync with
#: other workers (mingle, which waits about a second for replies) and the
#: cluster chatter (gossip), which short-lived test and benchmark workers do not use.
STANDALONE = ("--without-gossip", "--without-mingle")


def worker_argv(
    celery: str,
    hostname: str,
    *,
    loglevel: str = "INFO",
    pool: Sequence[str] = SOLO_POOL,
    extra: Sequence[str] = (),
) -> list[str]:
    """``celery -A worker worker`` with a node name (``%h`` is the host's name),
    a log level, a pool and any ``extra`` options; ``celery`` is the executable."""
    return [
        celery,
        "-A",
        "worker",
        "worker",
        "--hostname",
        hostname,
        "--loglevel",
        loglevel,
        *pool,
        *extra,
    ]

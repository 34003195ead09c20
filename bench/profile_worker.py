"""Where a worker's time goes: ``python -m bench.profile_worker``.

Starts one single-threaded worker, fills the queue, samples the worker process
with py-spy for a few seconds and prints the share of samples in each stage of
the pipeline (inclusive: a stage counts every sample under it).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.line import (
    Scenario,
    build_jobs,
    fresh_database,
    prepare_base,
    running,
    sample_payloads,
    send_all,
)

# (frame that marks the stage, label); a sample goes to the first stage in this
# order whose frame is on its stack, so the shares add up to 100%. The batch
# task comes first: with the solo pool it runs inside the message handler.
BATCH_STAGES = [
    ("Embedder.embed", "inspect batch: embed (preprocessing and model forward)"),
    ("prepare", "inspect batch: check and decode images"),
    ("BlobStore.put_many", "inspect batch: store images"),
    ("insert_inspections", "inspect batch: insert rows, commit"),
    ("ReferenceCache.get", "inspect batch: reference cache check"),
    ("Batches._do_flush", "inspect batch: the rest (verdicts, logging, session)"),
]
MESSAGE_STAGES = [
    ("QoS.append", "per message: record it as unacknowledged in Redis"),
    ("task_message_handler", "per message: build the Celery request"),
    ("Channel._brpop_read", "per message: receive and decode it (kombu)"),
    ("ack", "per message: acknowledge it in Redis"),
]


OTHER = "other (event loop, timers, idle)"


def breakdown(
    raw: Path, stages: list[tuple[str, str]] | None = None, ignore: tuple[str, ...] = ()
) -> list[tuple[str, float]]:
    """Exclusive share of samples per stage (``stages``, first match wins; the
    whole-image batch's and the messages' by default), plus whatever else the
    worker did. Stages that share a label add up. Samples with a frame of
    ``ignore`` on their stack are left out (another thread's waiting)."""
    stages = stages if stages is not None else BATCH_STAGES + MESSAGE_STAGES
    total = 0
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        names = [frame.split(" (")[0] for frame in stack.split(";")]
        if any(name == frame or name.endswith("." + frame) for name in names for frame in ignore):
            continue
        total += int(n)
        label = OTHER
        for frame, stage in stages:
            if any(name == frame or name.endswith("." + frame) for name in names):
                label = stage
                break
        counts[label] += int(n)
    order = [*dict.fromkeys(stage for _, stage in stages), OTHER]
    return [(label, counts[label] / max(total, 1)) for label in order]


def record_samples(pid: int, seconds: float, raw: Path, rate: int = 200) -> None:
    """py-spy samples of process ``pid`` for ``seconds``, in its raw format, to ``raw``."""
    spy = str(Path(sys.executable).parent / "py-spy")
    options = ["-d", str(seconds), "-r", str(rate), "-f", "raw", "-o", str(raw)]
    subprocess.run(
        [spy, "record", "-p", str(pid), *options],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_worker(redis_url: str, seconds: int = 8) -> list[tuple[str, float]]:
    """Sample a loaded single-threaded worker with py-spy; the stage breakdown."""
    payloads = sample_payloads()
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as url:
        workdir = Path(tmp)
        base = prepare_base(workdir, url, redis_url)
        with running(base, Scenario("profile", 1, 1, 32), workdir, payloads) as line:
            jobs = build_jobs(payloads, 600 * seconds, "profile")
            sender = threading.Thread(target=send_all, args=(line.settings, jobs))
            sender.start()
            time.sleep(2)
            raw = workdir / "profile.txt"
            record_samples(line.workers[0].pid, seconds, raw)
            sender.join()
            return breakdown(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker", description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args(argv)
    print(
        "share of worker samples (1 process, 1 thread, batches of 32, images inside the messages):"
    )
    for label, share in profile_worker(args.redis_url, args.seconds):
        print(f"{share:6.1%}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

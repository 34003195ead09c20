"""A camera for the soak: sends the sample images through the producer client on a
schedule of rates, and records every job id it was given.

``python -m bench.soak_camera --camera NAME --schedule '[[120, 50], [600, 250]]'
--start-at EPOCH --ids FILE --status FILE`` (settings from the environment, as any
producer). Each step of the schedule is (seconds, images per second for this
camera; 0: as fast as it can). A camera cannot wait for its frames: when the
client holds it back (the queue is at MAX_QUEUE_LENGTH, or the spool at
SPOOL_MAX_BYTES) the frames due meanwhile are not taken, and counted as
``held_back``; a frame it takes is a job that must end in exactly one row.
At the end it waits until its spool is sent, then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.line import sample_payloads
from producer.client import InspectionClient

#: a camera further behind its schedule than this skips the frames it missed
#: (counted as held back) instead of sending them in a rush
MAX_LAG_S = 1.0
STATUS_EVERY_S = 1.0


class Camera:
    def __init__(self, client: InspectionClient, name: str, ids: Any, status: Path) -> None:
        self.client, self.name, self.ids, self.status_path = client, name, ids, status
        self.payloads = sample_payloads()
        self.submitted = 0
        self.spooled = 0
        self.held_back = 0
        self.step = -1
        self._status_at = 0.0

    def take(self) -> None:
        filename, data = self.payloads[self.submitted % len(self.payloads)]
        job_id = self.client.submit_bytes(data, self.name, meta={"filename": filename})
        self.ids.write(job_id + "\n")
        self.submitted += 1

    def run_step(self, rate: float, stop_at: float) -> None:
        interval = 1.0 / rate if rate > 0 else 0.0
        due = time.time()
        while (now := time.time()) < stop_at:
            if interval:
                if due > now:
                    time.sleep(min(due - now, stop_at - now))
                    if time.time() >= stop_at:
                        break
                elif now - due > MAX_LAG_S:
                    missed = int((now - due) / interval)
                    self.held_back += missed
                    due += missed * interval
            self.take()
            due += interval
            self.write_status()

    def write_status(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._status_at < STATUS_EVERY_S:
            return
        self._status_at = now
        self.ids.flush()
        status = {
            "t": time.time(),
            "camera": self.name,
            "step": self.step,
            "submitted": self.submitted,
            "held_back": self.held_back,
            "waited_for_room_s": self.client.waited_for_room_s,
            "waited_for_spool_s": self.client.waited_for_spool_s,
            "spool_files": len(self.client.spool),
            "done": final,
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)


def stop(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_camera", description=__doc__)
    parser.add_argument("--camera", required=True)
    parser.add_argument("--schedule", required=True, help="JSON: [[seconds, rate], ...]")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds")
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    schedule = [(float(s), float(r)) for s, r in json.loads(args.schedule)]
    with InspectionClient() as client, open(args.ids, "a") as ids:
        camera = Camera(client, args.camera, ids, args.status)
        camera.write_status(final=False)
        try:
            if args.start_at > time.time():
                time.sleep(args.start_at - time.time())
            step_end = max(args.start_at, time.time())
            for camera.step, (seconds, rate) in enumerate(schedule):
                step_end += seconds
                camera.run_step(rate, step_end)
            client.wait_until_spool_sent()
        except KeyboardInterrupt:
            pass  # what was taken is in the ids file; a spool left is sent by the next run
        finally:
            camera.write_status(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

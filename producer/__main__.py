"""Command line: ``python -m producer submit | replay | watch``.

Each prints one line per enqueued job: the job id, a tab, the file. While Redis
does not answer, jobs wait in the local spool (SPOOL_DIR) and are sent when it
answers again; ``submit`` waits for that before it exits.

Traceability: ``submit --coil ID`` sends its files as frames of coil ID (numbered
from ``--frame-index`` or placed at ``--position-m``; ``--end-coil``: the last
file ends the coil); ``replay --coil ID`` numbers its frames 0, 1, 2, ... and with
``--coil-frames N`` starts coil ``ID-0001``, ``ID-0002``, ... every N frames, each
coil's last frame ending it; ``watch`` reads a file's trace from ``<file>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from core.jobs import JobInvalid, Trace, check_camera
from producer.client import ImageTooLarge, InspectionClient

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp"}


def camera_name(text: str) -> str:
    try:
        return check_camera(text)
    except JobInvalid as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def submit_traces(args: argparse.Namespace) -> list[Trace | None]:
    """The trace of each file of ``submit``, checked before anything is sent
    (``JobInvalid``): frame indexes count up from ``--frame-index``, and the last
    file ends the coil with ``--end-coil``."""
    count = len(args.files)
    if args.position_m is not None and count > 1:
        raise JobInvalid(
            "--position-m places one frame; submit one file with it, or number several "
            "with --frame-index"
        )
    named = (args.coil, args.frame_index, args.position_m, args.across_m)
    if all(value is None for value in named) and not args.end_coil:
        return [None] * count
    traces: list[Trace | None] = []
    for n in range(count):
        index = args.frame_index + n if args.frame_index is not None else None
        fields = {
            "coil_id": args.coil,
            "frame_index": index,
            "position_m": args.position_m,
            "across_m": args.across_m,
            "coil_end": args.end_coil and n == count - 1,
        }
        traces.append(Trace.from_fields(fields))
    return traces


def replay_trace(args: argparse.Namespace, n: int) -> Trace | None:
    """The trace of the ``n``-th replayed frame (from 0): frame indexes from 0 within
    each coil; with ``--coil-frames`` a new coil every that many frames. A coil's last
    frame ends it, as does the last frame of a replay with ``--count``."""
    if args.coil is None:
        return None
    last = args.count > 0 and n == args.count - 1
    if args.coil_frames is None:
        return Trace.from_fields({"coil_id": args.coil, "frame_index": n, "coil_end": last})
    number, index = divmod(n, args.coil_frames)
    return Trace.from_fields(
        {
            "coil_id": f"{args.coil}-{number + 1:04d}",
            "frame_index": index,
            "coil_end": last or index == args.coil_frames - 1,
        }
    )


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    images = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def wait_for_spool(client: InspectionClient) -> int:
    """Block until the spool is sent; Ctrl-C leaves it for the next producer run."""
    if not len(client.spool):
        return 0
    print(
        f"Redis does not answer; {len(client.spool)} job(s) wait in {client.spool.folder} "
        "and will be sent when it does (Ctrl-C leaves them there for the next run)",
        file=sys.stderr,
        flush=True,
    )
    try:
        client.wait_until_spool_sent()
    except KeyboardInterrupt:
        return 130
    print("spooled jobs sent", file=sys.stderr)
    return 0


def run_submit(args: argparse.Namespace) -> int:
    failures = 0
    traces = submit_traces(args)
    with InspectionClient() as client:
        for path, trace in zip(args.files, traces, strict=True):
            try:
                job_id = client.submit_file(path, args.camera, trace=trace)
            except (OSError, ImageTooLarge) as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                failures += 1
                continue
            print(f"{job_id}\t{path}", flush=True)
        interrupted = wait_for_spool(client)
    return interrupted or (1 if failures else 0)


def paced(items: Iterator[Path], rate: float) -> Iterator[Path]:
    """Yield items at ``rate`` per second, on a fixed schedule that does not drift."""
    interval = 1.0 / rate if rate > 0 else 0.0
    start = time.monotonic()
    for n, item in enumerate(items):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item


def run_replay(args: argparse.Namespace) -> int:
    images = list_images(args.folder)
    looped = itertools.cycle(images)
    items = itertools.islice(looped, args.count) if args.count > 0 else looped
    replay_trace(args, 0)  # a coil id that cannot be sent is refused before the first frame
    with InspectionClient() as client:
        try:
            for n, path in enumerate(paced(items, args.rate)):
                trace = replay_trace(args, n)
                job_id = client.submit_file(path, args.camera, meta={"replay": True}, trace=trace)
                print(f"{job_id}\t{path}", flush=True)
        except KeyboardInterrupt:
            return 130
        return wait_for_spool(client)


def run_watch(args: argparse.Namespace) -> int:
    from producer.hotfolder import HotFolder

    if not args.folder.is_dir():
        raise FileNotFoundError(f"not a folder: {args.folder}")
    with InspectionClient() as client:
        folder = HotFolder(args.folder, args.camera, client, settle_s=args.settle)
        print(
            f"watching {args.folder} (done/ and failed/ beside); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        try:
            while True:
                for job_id, path in folder.poll_once():
                    print(f"{job_id}\t{path}", flush=True)
                time.sleep(args.poll)
        except KeyboardInterrupt:
            return 0


def stop_on_sigterm(_signum: int, _frame: object) -> None:
    """SIGTERM (docker stop, a service manager) stops as cleanly as Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="enqueue image files once")
    submit.add_argument("files", nargs="+", type=Path)
    submit.add_argument("--camera", type=camera_name, required=True)
    submit.add_argument("--coil", help="the coil (or lot) the files are frames of")
    submit.add_argument(
        "--position-m", type=float, help="the frame's place along the coil: metres from its head"
    )
    submit.add_argument(
        "--frame-index",
        type=int,
        help="the first file's frame number on the coil (the next files count up); the "
        "camera's frame length turns it into a position",
    )
    submit.add_argument(
        "--across-m", type=float, help="the frame's place across the strip: metres from its edge"
    )
    submit.add_argument(
        "--end-coil", action="store_true", help="the last file is the coil's last frame"
    )
    replay = sub.add_parser("replay", help="a simulated camera: replay a folder at a rate")
    replay.add_argument("folder", type=Path)
    replay.add_argument("--camera", type=camera_name, required=True)
    replay.add_argument("--rate", type=float, default=2.0, help="images per second (0: no pause)")
    replay.add_argument(
        "--count", type=int, default=0, help="stop after this many images (0: loop forever)"
    )
    replay.add_argument(
        "--coil", help="send the frames as frames of this coil, numbered 0, 1, 2, ..."
    )
    replay.add_argument(
        "--coil-frames",
        type=positive_int,
        help="start a new coil every N frames: --coil ID-0001, ID-0002, ...; each coil's "
        "last frame ends it",
    )
    watch = sub.add_parser("watch", help="a hot folder: enqueue each complete image file once")
    watch.add_argument("folder", type=Path)
    watch.add_argument("--camera", type=camera_name, required=True)
    watch.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds a file must stay unchanged to count as complete",
    )
    watch.add_argument("--poll", type=float, default=0.5, help="seconds between scans")
    args = parser.parse_args(argv)
    if args.command == "replay" and args.coil_frames is not None and args.coil is None:
        parser.error("--coil-frames needs --coil: the coil ids are made from it")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    commands = {"submit": run_submit, "replay": run_replay, "watch": run_watch}
    try:
        return commands[args.command](args)
    except (FileNotFoundError, JobInvalid) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

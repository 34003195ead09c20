"""``make demo``: the whole line on one machine, until Ctrl-C.

Migrates the database (SQLite by default), seeds one reference per NEU class
from the bundled sample and a demo supervisor, makes sure Redis answers, then
starts one worker, the admin site and a camera replaying the sample.

The NEU camera, ``demo-line-1``, sends its frames as frames of coils (45 frames of
0.5 m each: a 22.5 m coil every 22.5 s; the sample cycles, so coils differ), so the
Coils page shows a coil filling its map live, a verdict by the demo's coil rule at
each coil's end, and its report.

A second camera, ``tile-line``, shows frames and findings: five good magnetic
tiles from data/sample-tiles/ are its good frames (its good-surface memory), a
crop around the defect of one tile per defect class is a ``defect`` reference,
and a second camera process replays the other tiles (tiles.csv says which is which).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import redis
from PIL import Image
from scipy import ndimage
from sqlalchemy import func, select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.blobs import BlobStore
    from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
TILES = ROOT / "data" / "sample-tiles"
TILE_CAMERA = "tile-line"
#: the tiles the tile-line camera replays, copied here (the producer replays a folder)
TILE_REPLAY = ROOT / "var" / "demo" / TILE_CAMERA
GOOD_LABEL = "good surface"
NEU_CAMERA = "demo-line-1"
#: the NEU camera's coils: this many frames of FRAME_LENGTH_M each
COIL_FRAMES = 45
FRAME_LENGTH_M = 0.5
#: the demo's coil rule: hold a coil with more than 3 scratches in any 10 m
COIL_RULE = ("scratches", 3, 10.0)
#: the side of a defect reference's crop at least: the side of the crops the
#: worker names its findings by (model.frames.NAMING_CROP, at scale 1)
DEFECT_CROP = 96
LOGS = ROOT / "var" / "logs"
DEMO_USER = "supervisor"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def report_waiting_jobs(url: str) -> None:
    """Say so when jobs from an earlier run still wait: the worker takes them first.

    They are kept, not purged: a job in the queue is a camera's image that has no
    result yet, and the system loses none (each job carries its image).
    """
    from core.queue import queue_length

    with redis.Redis.from_url(url) as client:
        waiting = queue_length(client)
    if waiting:
        say(f"{waiting} job(s) from an earlier run wait in Redis; the worker inspects them first")


def ensure_redis(url: str, children: list[subprocess.Popen]) -> None:
    """Use Redis at ``url``; start a local redis-server when none answers and we can."""
    if redis_answers(url):
        say(f"Redis answers at {url}")
        return
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 6379
    server = shutil.which("redis-server")
    if host not in ("localhost", "127.0.0.1", "::1") or server is None:
        sys.exit(
            f"[demo] no Redis answers at {url}.\n"
            "  Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install "
            "redis)\n  or point REDIS_URL at a running Redis, then run `make demo` again."
        )
    say(f"no Redis at {url}; starting {server} on port {port}")
    children.append(
        subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=open(LOGS / "redis.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )
    for _ in range(50):
        if redis_answers(url):
            return
        time.sleep(0.1)
    sys.exit(f"[demo] started redis-server but it does not answer; see {LOGS / 'redis.log'}")


def tile_roles() -> list[dict[str, str]]:
    """data/sample-tiles/tiles.csv: each tile's file, class, tile group and role in
    the demo (``good-frame``, ``reference`` or ``replay``)."""
    with open(TILES / "tiles.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def defect_crop(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The square around the mask's largest defect: DEFECT_CROP pixels, or the
    defect's box and a margin when larger, within the image."""
    labels, count = ndimage.label(np.asarray(mask) > 127, structure=np.ones((3, 3), bool))
    if count == 0:
        raise ValueError("the mask marks no defect")
    sizes = ndimage.sum_labels(np.ones(labels.shape), labels, range(1, count + 1))
    rows, cols = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    side = max(DEFECT_CROP, rows.stop - rows.start + 16, cols.stop - cols.start + 16)
    side = min(side, image.width, image.height)
    centre_y, centre_x = (rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2
    left = int(np.clip(centre_x - side // 2, 0, image.width - side))
    top = int(np.clip(centre_y - side // 2, 0, image.height - side))
    return image.crop((left, top, left + side, top + side))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def seed_tile_line(session: Session, store: BlobStore, settings: Settings) -> None:
    """The tile-line camera's good frames (unless it has some) and one defect
    reference per tile class (labels not yet in the library)."""
    from core.references import add_reference
    from core.tables import Reference

    limits = (settings.max_image_bytes, settings.max_image_pixels)
    has_good_frames = session.scalar(
        select(func.count(Reference.id)).where(
            Reference.kind == "ok", Reference.camera == TILE_CAMERA
        )
    )
    known = set(session.scalars(select(Reference.label)))
    for tile in tile_roles():
        path = TILES / tile["file"]
        if tile["role"] == "good-frame" and not has_good_frames:
            data = path.read_bytes()
            add_reference(
                session, store, data, GOOD_LABEL, "ok", "demo", *limits, camera=TILE_CAMERA
            )
            say(f"good frame of {TILE_CAMERA}: {path.relative_to(ROOT)}")
        elif tile["role"] == "reference" and tile["class"] not in known:
            with Image.open(path) as image, Image.open(TILES / "masks" / tile["file"]) as mask:
                data = png_bytes(defect_crop(image, mask))
            add_reference(
                session, store, data, tile["class"], "defect", "demo", *limits, camera=TILE_CAMERA
            )
            say(f"reference: {tile['class']} <- the defect of {path.relative_to(ROOT)}")
    set_tile_threshold(session, settings)


#: the tile-line camera's frame threshold, as an admin sets it on the Thresholds page
#: after its preview: the threshold calibrated from five good tiles (0.93 with the
#: shipped frames.pt) flags none of the sample's defective tiles; at 0.65 the
#: blowhole, break, crack and fray tiles are flagged, each at its defect, and no
#: good tile (scores 0.13-0.54; docs/model.md, *Frames*)
TILE_THRESHOLD = 0.65


def set_tile_threshold(session: Session, settings: Settings) -> None:
    """The demo's override of the tile-line camera's frame threshold (kept if an
    admin has set one), for the frames model the workers load."""
    from core.tables import CameraThreshold
    from core.thresholds import set_camera_threshold
    from model.frames import load_frame_inspector

    version = load_frame_inspector(settings.frame_checkpoint, "cpu").version
    if session.get(CameraThreshold, (TILE_CAMERA, version)) is None:
        set_camera_threshold(session, TILE_CAMERA, version, TILE_THRESHOLD, "demo")
        say(f"frame threshold of {TILE_CAMERA}: {TILE_THRESHOLD} (an admin's, for {version})")


def prepare_tile_replay() -> Path:
    """A folder of the tiles the tile-line camera replays (neither good frames nor
    references), made afresh each run."""
    shutil.rmtree(TILE_REPLAY, ignore_errors=True)
    TILE_REPLAY.mkdir(parents=True)
    for tile in tile_roles():
        if tile["role"] == "replay":
            source = TILES / tile["file"]
            shutil.copyfile(source, TILE_REPLAY / f"{tile['class']}-{source.name}")
    return TILE_REPLAY


def seed_coils(session: Session) -> None:
    """The NEU camera's frame length and place across the strip, and the demo's coil
    rule (unless an admin has set rules already)."""
    from core.camera_positions import set_camera_position
    from core.coil_verdicts import add_rule
    from core.tables import CoilRule

    set_camera_position(session, NEU_CAMERA, FRAME_LENGTH_M, 0.6, "demo")
    if session.scalar(select(func.count()).select_from(CoilRule)) == 0:
        add_rule(session, *COIL_RULE, "demo")
        say("coil rule: more than 3 scratches in any 10 m holds a coil")


def seed(settings) -> str:  # type: ignore[no-untyped-def]
    """One reference per sample class (labels not yet in the library), the tile-line
    camera's good frames and defect references, and the demo user."""
    from werkzeug.security import generate_password_hash

    from admin.auth import create_user
    from core.blobs import BlobStore
    from core.db import session_scope
    from core.references import seed_from_folder
    from core.tables import User

    password = secrets.token_urlsafe(9)
    with session_scope(settings.database_url) as session:
        store = BlobStore(settings.blob_dir)
        for label, path in seed_from_folder(session, store, SAMPLE, "demo"):
            say(f"reference: {label} <- {path.relative_to(ROOT)}")
        seed_tile_line(session, store, settings)
        seed_coils(session)
        user = session.scalar(select(User).where(User.username == DEMO_USER))
        if user is None:
            create_user(session, DEMO_USER, password, "supervisor")
        else:  # a new password each run, printed below
            user.password_hash = generate_password_hash(password)
    return password


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit("[demo] no free port for the admin site")


def start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(LOGS / f"{name}.log", "ab")
    say(f"starting {name}: {' '.join(argv)}  (log: {log.name})")
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_all(children: list[subprocess.Popen]) -> None:
    """SIGTERM each child's process group (the worker's pool too), then SIGKILL stragglers."""
    for child in reversed(children):
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def counts(database_url: str) -> str:
    from core.db import session_scope
    from core.tables import Inspection

    with session_scope(database_url) as session:
        rows = dict(
            session.execute(
                select(Inspection.status, func.count()).group_by(Inspection.status)
            ).all()
        )
    return ", ".join(f"{k} {rows.get(k, 0)}" for k in ("flagged", "passed", "rejected"))


def stop_on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # SIGTERM (from `timeout`, a service manager) and SIGHUP (terminal closed)
    # stop the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    parent = os.getppid()
    os.chdir(ROOT)
    LOGS.mkdir(parents=True, exist_ok=True)
    from core.migrate import upgrade_to_head
    from core.settings import get_settings
    from worker.launch import worker_argv

    settings = get_settings()
    children: list[subprocess.Popen] = []
    try:
        ensure_redis(settings.redis_url, children)
        report_waiting_jobs(settings.redis_url)
        upgrade_to_head(settings.database_url)
        say(f"database migrated: {settings.database_url}")
        password = seed(settings)
        port = free_port(int(os.environ.get("ADMIN_PORT", "5000")))
        env = {**os.environ, "SECRET_KEY": settings.secret_key, "PYTHONUNBUFFERED": "1"}
        children.append(start("worker", worker_argv("demo-worker@%h"), env))
        children.append(
            start(
                "admin",
                [
                    str(BIN / "flask"),
                    "--app",
                    "admin",
                    "run",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env,
            )
        )
        children.append(
            start(
                "camera",
                [
                    str(BIN / "python"),
                    "-m",
                    "producer",
                    "replay",
                    str(SAMPLE),
                    "--camera",
                    NEU_CAMERA,
                    "--rate",
                    "2",
                    # a coil prefix of this run, so coils of an earlier run stay apart
                    "--coil",
                    time.strftime("C%m%d-%H%M"),
                    "--coil-frames",
                    str(COIL_FRAMES),
                ],
                env,
            )
        )
        children.append(
            start(
                "camera-tiles",
                [
                    str(BIN / "python"),
                    "-m",
                    "producer",
                    "replay",
                    str(prepare_tile_replay()),
                    "--camera",
                    TILE_CAMERA,
                    "--rate",
                    "0.5",
                ],
                env,
            )
        )
        say("")
        say(f"admin site:  http://127.0.0.1:{port}/")
        say(f"log in as:   {DEMO_USER} / {password}")
        say(
            f"camera {NEU_CAMERA} replays the bundled NEU sample at 2 images/s as coils of "
            f"{COIL_FRAMES * FRAME_LENGTH_M:g} m (Coils: the map fills live; Reports: each "
            "coil's report at its end, a shift's on demand);"
        )
        say(
            f"camera {TILE_CAMERA} replays magnetic tiles at 0.5 frames/s, judged by its good "
            "frames (findings); Ctrl-C stops everything"
        )
        say("")
        ticks = 0
        while os.getppid() == parent:  # stop when `make` goes away
            time.sleep(1)
            ticks += 1
            for child in children:
                if child.poll() is not None:
                    say(
                        f"a process stopped (exit {child.returncode}): {' '.join(child.args)}; "
                        f"see the logs in {LOGS}"
                    )
                    return 1
            if ticks % 10 == 0:
                say(f"inspections so far: {counts(settings.database_url)}")
        return 0
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stop_all(children)


if __name__ == "__main__":
    sys.exit(main())

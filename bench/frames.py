"""``python -m bench.frames``: frames judged by a good-surface memory, on this machine.

Side by side in one run, with the default model on the CPU: ``FrameInspector.inspect``
on 2048x1024 frames in batches of 1 and 8; ``build`` from 20 good frames; the
nearest-neighbour search (faiss against chunked ``torch.cdist``) on a real memory
and a frame's real features; and a 16384x2048 strip, timed here and inspected once
more in a fresh process that builds nothing, for its peak resident memory.

Frames are mosaics of real good magnetic-tile images (``--tiles``). Writes (or
replaces) the "## Frames" section of docs/benchmarks.md, between HTML comment
markers, and leaves the rest of the file as it is; ``python -m bench`` runs it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from sqlalchemy import select

from bench.line import (
    Line,
    Scenario,
    build_jobs,
    fresh_database,
    measure_latency,
    measure_throughput,
    prepare_base,
    running,
    sample_payloads,
    send_all,
    wait_rows,
)
from bench.profile_worker import MESSAGE_STAGES, OTHER, breakdown, record_samples
from core.blobs import BlobStore
from core.db import session_scope
from core.references import add_reference
from core.settings import Settings
from core.tables import SurfaceMemory
from model.frames import BAND_PIXELS

ROOT = Path(__file__).resolve().parent.parent
#: the full set of good magnetic tiles (never committed), else the bundled sample
SHARED_TILES = ROOT.parent / "shared" / "data" / "magnetic-tile" / "free"
SAMPLE_TILES = ROOT / "data" / "sample-tiles" / "free"
REPORT = ROOT / "docs" / "benchmarks.md"

BEGIN = "<!-- bench.frames: begin (written by python -m bench.frames) -->"
END = "<!-- bench.frames: end -->"

FRAME_SIZE = (2048, 1024)  # (width, height)
STRIP_SIZE = (2048, 16384)
GOOD_FRAMES = 20
BATCH = 8
TILE = 256  # each tile's side in a mosaic
CDIST_CHUNK = 4096
#: nearest-neighbour searches per round, each faiss and torch.cdist back to back
SEARCH_PAIRS = 5
STRIP_TARGET_MB = 2048


def frames_section(text: str) -> str | None:
    """The frames section of a report (its markers included), or None."""
    begin = text.find(BEGIN)
    end = text.find(END, begin)
    if begin < 0 or end < 0:
        return None
    return text[begin : end + len(END)]


def splice_section(text: str, section: str) -> str:
    """``text`` with its frames section replaced by ``section`` (which carries the
    markers), or with ``section`` appended when it has none; the rest unchanged."""
    section = section.strip("\n")
    old = frames_section(text)
    if old is not None:
        return text.replace(old, section, 1)
    body = text.rstrip("\n")
    return f"{body}\n\n{section}\n" if body else f"{section}\n"


def tile_pool(folder: Path) -> list[Image.Image]:
    """Every image of ``folder`` in gray, resized to cover TILE x TILE and cropped to it
    (the tiles are about 200 px across: a small upscale, the texture kept)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise SystemExit(f"no PNG tiles in {folder}; name a folder of good images with --tiles")
    return [
        ImageOps.fit(Image.open(p).convert("L"), (TILE, TILE), Image.Resampling.BILINEAR)
        for p in paths
    ]


def mosaic(tiles: list[Image.Image], size: tuple[int, int], start: int) -> Image.Image:
    """A frame of ``size`` (width, height) tiled row by row from ``tiles[start:]``,
    cycling; a tile that comes round again is mirrored, so no two cells repeat as is."""
    frame = Image.new("L", size)
    columns, rows = -(-size[0] // TILE), -(-size[1] // TILE)
    for k in range(columns * rows):
        index = start + k
        tile = tiles[index % len(tiles)]
        if (index // len(tiles)) % 2:
            tile = ImageOps.mirror(tile)
        frame.paste(tile, ((k % columns) * TILE, (k // columns) * TILE))
    return frame


def per_frame(size: tuple[int, int]) -> int:
    return -(-size[0] // TILE) * -(-size[1] // TILE)


def torch_nearest(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The baseline faiss replaced: exact distances by ``torch.cdist`` in chunks."""
    return torch.cat([torch.cdist(c, memory).min(1).values for c in queries.split(CDIST_CHUNK)])


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def load_average() -> float:
    """The machine's load average over the last minute (other work shares the cores)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def peak_rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass
class StripChild:
    """What the fresh process that inspects one strip reports."""

    seconds: float
    rss_before_mb: float  # model loaded, memory and strip read, nothing inspected
    peak_mb: float  # VmHWM after the strip
    findings: int


@dataclass
class FramesResult:
    tiles: str
    tile_count: int
    memory_shape: tuple[int, int]
    threshold: float
    build_s: list[float]
    batch1_fps: list[float]
    batch8_fps: list[float]
    faiss_s: list[float]
    torch_s: list[float]
    queries: int
    max_difference: float
    strip_s: list[float]
    strip_findings: int
    child: StripChild
    threads: int
    load: tuple[float, float]  # the machine's 1-minute load average, at start and end


def inspect_strip_child(folder: Path) -> int:
    """The fresh process: load the model, the memory and the strip; inspect it once."""
    from model import load_embedder
    from model.frames import FrameInspector

    meta = json.loads((folder / "memory.json").read_text())
    inspector = FrameInspector(load_embedder(device="cpu"))
    rows = np.load(folder / "memory.npy")
    strip = Image.open(folder / "strip.png")
    strip.load()
    before, _ = peak_rss_mb()
    started = time.perf_counter()
    verdict = inspector.inspect([strip], rows, meta["threshold"], 1.0)[0]
    seconds = time.perf_counter() - started
    _, peak = peak_rss_mb()
    print(json.dumps(asdict(StripChild(seconds, before, peak, len(verdict.regions)))))
    return 0


def run_strip_child(rows: np.ndarray, threshold: float, strip: Image.Image) -> StripChild:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "memory.npy", rows)
        (folder / "memory.json").write_text(json.dumps({"threshold": threshold}))
        strip.save(folder / "strip.png")
        out = subprocess.run(
            [sys.executable, "-m", "bench.frames", "--strip-child", str(folder)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
    return StripChild(**json.loads(out.stdout.strip().splitlines()[-1]))


def measure(tiles_folder: Path, repeats: int) -> FramesResult:
    """Every measurement once per round, ``repeats`` rounds: the machine's speed drifts
    (its cores are shared), and in turns every measurement sees the same drift."""
    from model import load_embedder
    from model.frames import FrameInspector

    load_before = load_average()
    tiles = tile_pool(tiles_folder)
    print(f"frames   {len(tiles)} tiles from {tiles_folder}", flush=True)
    per = per_frame(FRAME_SIZE)
    good = [mosaic(tiles, FRAME_SIZE, i * per) for i in range(GOOD_FRAMES)]
    # frames to inspect start past the good frames' tiles (unseen while tiles last)
    tests = [mosaic(tiles, FRAME_SIZE, (GOOD_FRAMES + i) * per) for i in range(BATCH)]
    strip = mosaic(tiles, STRIP_SIZE, (GOOD_FRAMES + BATCH) * per)
    inspector = FrameInspector(load_embedder(device="cpu"))
    reader = inspector.reader(1.0)
    queries = torch.cat([band.rows for band in reader.bands(tests[0])])

    build_s: list[float] = []
    batch1: list[float] = []
    batch8: list[float] = []
    searches: list[tuple[float, float]] = []
    strip_s: list[float] = []
    findings = 0
    for round_ in range(repeats):
        started = time.perf_counter()
        rows, threshold = inspector.build(good, 1.0)
        build_s.append(time.perf_counter() - started)
        if round_ == 0:
            inspector.inspect(tests[:1], rows, threshold, 1.0)  # warm-up
        started = time.perf_counter()
        for frame in tests:
            inspector.inspect([frame], rows, threshold, 1.0)
        batch1.append(len(tests) / (time.perf_counter() - started))
        started = time.perf_counter()
        inspector.inspect(tests, rows, threshold, 1.0)
        batch8.append(len(tests) / (time.perf_counter() - started))
        searches += search_pairs(queries, torch.from_numpy(rows), SEARCH_PAIRS)
        started = time.perf_counter()
        findings = len(inspector.inspect([strip], rows, threshold, 1.0)[0].regions)
        strip_s.append(time.perf_counter() - started)
        print(
            f"frames   round {round_ + 1}: build {build_s[-1]:.1f} s; inspect batch 1 "
            f"{batch1[-1]:.2f} frames/s, batch {BATCH} {batch8[-1]:.2f} frames/s; nearest "
            f"faiss {statistics.median(f for f, _ in searches[-SEARCH_PAIRS:]):.3f} s, "
            f"torch.cdist {statistics.median(t for _, t in searches[-SEARCH_PAIRS:]):.3f} s; "
            f"strip {strip_s[-1]:.1f} s",
            flush=True,
        )
    memory = torch.from_numpy(rows)
    difference = float(
        (nearest_faiss(queries, memory) - torch_nearest(queries, memory)).abs().max()
    )
    child = run_strip_child(rows, threshold, strip)
    print(
        f"frames   strip in a fresh process: {child.seconds:.1f} s, peak RSS "
        f"{child.peak_mb:.0f} MB ({child.rss_before_mb:.0f} MB before the strip)",
        flush=True,
    )
    return FramesResult(
        tiles=display_path(tiles_folder),
        tile_count=len(tiles),
        memory_shape=(int(rows.shape[0]), int(rows.shape[1])),
        threshold=threshold,
        build_s=build_s,
        batch1_fps=batch1,
        batch8_fps=batch8,
        faiss_s=[f for f, _ in searches],
        torch_s=[t for _, t in searches],
        queries=len(queries),
        max_difference=difference,
        strip_s=strip_s,
        strip_findings=findings,
        child=child,
        threads=torch.get_num_threads(),
        load=(load_before, load_average()),
    )


def nearest_faiss(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The search as ``inspect`` makes it: a fresh memory, its faiss index included."""
    from model.frames import GoodSurfaceMemory

    return GoodSurfaceMemory(memory).nearest(queries)


def search_pairs(
    queries: torch.Tensor, memory: torch.Tensor, pairs: int
) -> list[tuple[float, float]]:
    """(faiss, torch.cdist) seconds, ``pairs`` times, each pair run back to back and
    the order alternating, so that their ratio is not the machine's drift."""
    out = []
    for i in range(pairs):
        runs = {
            "faiss": lambda: nearest_faiss(queries, memory),
            "torch": lambda: torch_nearest(queries, memory),
        }
        order = ("faiss", "torch") if i % 2 == 0 else ("torch", "faiss")
        seconds = {name: timed(runs[name]) for name in order}
        out.append((seconds["faiss"], seconds["torch"]))
    return out


# -- end to end: frames through the line ------------------------------------------

#: the camera whose good frames build the memory the workers judge by
CAMERA = "bench-frames"
#: frames timed per scenario (several batches of the line's 32 a process)
LINE_FRAMES = 192
#: distinct frames sent (cycled): PNG-encoding each takes a while
LINE_PAYLOADS = 12
LATENCY_SECONDS = 30.0
PROFILE_SECONDS = 20
LINE_BATCH = 32  # the line's batch size (bench/__main__.py)
TARGET_MPX = 2.0  # megapixels per second per host, end to end (#28)
GOAL_MPX = 4.0

# (frame that marks the stage, label), for ``bench.profile_worker.breakdown``: a
# sample goes to the first stage whose frame is on its stack. What remains of
# judge_frames once the model's stages are taken out is the heat map's PNG.
FRAME_STAGES = [
    ("GoodSurfaceMemory.nearest", "search: nearest good-surface features (faiss)"),
    ("PatchFeatures._maps", "features: contrast normalisation and network forward"),
    ("frame_tensor", "features: frame to tensor, rows out of the maps"),
    ("PatchFeatures._frame", "features: frame to tensor, rows out of the maps"),
    ("GoodSurfaceMemory.score", "grid, regions and crops"),
    ("AnomalyGrid.regions", "grid, regions and crops"),
    ("naming_crop", "grid, regions and crops"),
    ("judge_frames", "heat map: drawn and PNG-encoded"),
    ("name_findings", "naming findings: their crops embedded"),
    ("read_image_bytes", "decode: the message's base64 and the PNG"),
    ("decode_image", "decode: the message's base64 and the PNG"),
    ("InspectJob.from_message", "decode: the message's base64 and the PNG"),
    ("BlobStore.put_many", "store: frames and heat maps to the image store"),
    ("insert_inspections", "database: rows and findings inserted, committed"),
    ("store_findings", "database: rows and findings inserted, committed"),
    ("session_scope", "database: rows and findings inserted, committed"),
    ("SurfaceMemoryCache.get", "database: memory, references and thresholds checked"),
    ("ReferenceCache.get", "database: memory, references and thresholds checked"),
    ("ThresholdCache.get", "database: memory, references and thresholds checked"),
    ("Batches._do_flush", "the rest of a batch (rows, logging)"),
    *MESSAGE_STAGES,
]


#: the worker's Prometheus endpoint's thread, which py-spy samples waiting
METRICS_THREAD = ("BaseServer.serve_forever",)
#: strips sent to one worker at once, in one batch, for its peak memory
LINE_STRIPS = 8
#: the strips' PNGs exceed the default MAX_IMAGE_BYTES (8 MiB): raised for them
STRIP_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class StripRun:
    """Strips through one worker process (all the cores' threads), one batch."""

    strips: int
    png_mb: float
    seconds: float  # the first strip's enqueue to the last row's commit
    rss_mb: float  # the worker's peak (VmHWM), warm-up included

    @property
    def megapixels_per_s(self) -> float:
        return self.strips * STRIP_SIZE[0] * STRIP_SIZE[1] / 1e6 / self.seconds


@dataclass
class LineRun:
    """One worker host's scenario: frames enqueued, judged, their rows committed."""

    scenario: str
    processes: int
    threads: int
    batch_size: int
    frames: int
    span_s: float  # the first frame's enqueue to the last row's commit
    steady_fps: float  # the line's measure: rows committed between its 10th and 90th percentile
    rss_mb: list[float]  # each worker process's peak (VmHWM)
    cpu_s: float  # the workers' CPU time (user and system) over the run
    cpu_share: float  # the same, of all the cores' time
    latency_rate: float
    latency_frames: int
    p50_ms: float
    p95_ms: float
    profile: list[tuple[str, float]]

    @property
    def fps(self) -> float:
        return self.frames / self.span_s


@dataclass
class FramesLine:
    png_kb: float  # the frames sent, as PNG
    build_s: float  # the memory's build, in the worker, on the camera's first frame
    memory_rows: int
    runs: list[LineRun]
    strips: StripRun | None
    db_kind: str
    load: tuple[float, float]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of processes ``pids`` so far (threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def warm_frames(line: Line, camera: str, payloads: list[tuple[str, bytes]]) -> None:
    """The memory built (or loaded) before timing starts: one frame, its row
    waited for, then a few for every worker process."""
    for count in (1, 2 * line.scenario.processes):
        jobs = build_jobs(payloads, count, camera)
        send_all(line.settings, jobs)
        ids = {job.job_id for job in jobs}
        rows = wait_rows(line.settings.database_url, camera, count, 900, ids)
        if len(rows) < count:
            raise RuntimeError(f"frames warm-up: {len(rows)} of {count} rows; see {line.workdir}")


def profile_frames(
    line: Line, camera: str, payloads: list[tuple[str, bytes]], fps: float, seconds: int
) -> list[tuple[str, float]]:
    """py-spy samples of the first worker process while the queue holds frames
    enough to keep it busy, then every row waited for (none left in the queue)."""
    count = max(2 * LINE_BATCH, math.ceil(fps * (seconds + 8)))
    jobs = build_jobs(payloads, count, camera)
    send_all(line.settings, jobs)
    time.sleep(2)
    raw = line.workdir / f"profile-{line.scenario.processes}.txt"
    record_samples(line.workers[0].pid, seconds, raw, rate=100)
    rows = wait_rows(line.settings.database_url, camera, count, 900, {j.job_id for j in jobs})
    if len(rows) < count:
        raise RuntimeError(f"frames profile: {len(rows)} of {count} rows")
    return breakdown(raw, FRAME_STAGES, ignore=METRICS_THREAD)


def measure_line_run(
    line: Line, camera: str, payloads: list[tuple[str, bytes]], frames: int, latency_s: float
) -> LineRun:
    warm_frames(line, camera, payloads)
    pids = [worker.pid for worker in line.workers]
    cpu_before, started = cpu_seconds(pids), time.monotonic()
    result = measure_throughput(line, payloads, frames, camera=camera)
    cpu_s = cpu_seconds(pids) - cpu_before
    cpu = cpu_s / ((time.monotonic() - started) * (os.cpu_count() or 1))
    fps = frames / result.span_s
    print(
        f"frames   end to end, {line.scenario.name}: {fps:.2f} frames/s, "
        f"{fps * FRAME_SIZE[0] * FRAME_SIZE[1] / 1e6:.2f} MP/s (steady middle "
        f"{result.images_per_s:.2f} frames/s); workers {cpu:.0%} of the cores",
        flush=True,
    )
    latency = measure_latency(line, payloads, fps / 2, latency_s, camera=camera)
    print(
        f"frames   latency at {latency.rate:.2f} frames/s: p50 {latency.p50_ms:.0f} ms, "
        f"p95 {latency.p95_ms:.0f} ms",
        flush=True,
    )
    profile = profile_frames(line, camera, payloads, fps, PROFILE_SECONDS)
    print(f"frames   profile: {', '.join(f'{s:.0%} {k}' for k, s in profile if s >= 0.01)}")
    return LineRun(
        scenario=line.scenario.name,
        processes=line.scenario.processes,
        threads=line.scenario.threads,
        batch_size=line.scenario.batch_size,
        frames=frames,
        span_s=result.span_s,
        steady_fps=result.images_per_s,
        rss_mb=result.worker_rss_mb,
        cpu_s=cpu_s,
        cpu_share=cpu,
        latency_rate=latency.rate,
        latency_frames=latency.images,
        p50_ms=latency.p50_ms,
        p95_ms=latency.p95_ms,
        profile=profile,
    )


def register_good_frames(base: Settings, camera: str, frames: list[bytes]) -> None:
    store = BlobStore(base.blob_dir)
    with session_scope(base.database_url) as session:
        for data in frames:
            add_reference(session, store, data, "free", "ok", "bench", camera=camera)


def built_memory(database_url: str, camera: str) -> tuple[float, int]:
    """(seconds its build took, rows) of the camera's stored memory."""
    with session_scope(database_url) as session:
        row = session.scalars(select(SurfaceMemory).where(SurfaceMemory.camera == camera)).one()
        return float(row.seconds), len(row.rows) // (4 * row.dim)


def measure_strips(
    base: Settings,
    workdir: Path,
    camera: str,
    tiles: list[Image.Image],
    frames: list[tuple[str, bytes]],
    strips: int,
) -> StripRun:
    """``strips`` long strips queued while one worker process holds off, then taken
    in one batch: its peak memory. Their PNG is larger than the default
    MAX_IMAGE_BYTES, raised here to STRIP_MAX_BYTES."""
    cores = os.cpu_count() or 1
    strip = png_bytes(
        mosaic(tiles, STRIP_SIZE, (GOOD_FRAMES + LINE_PAYLOADS) * per_frame(FRAME_SIZE))
    )
    roomy = base.model_copy(update={"max_image_bytes": STRIP_MAX_BYTES})
    scenario = Scenario(f"strips, 1 process x {cores} threads", 1, cores, LINE_BATCH)
    with running(roomy, scenario, workdir, sample_payloads()) as line:
        warm_frames(line, camera, frames)
        result = measure_throughput(line, [("strip.png", strip)], strips, camera=camera)
    run = StripRun(strips, len(strip) / 2**20, result.span_s, max(result.worker_rss_mb, default=0))
    print(
        f"frames   {strips} strips end to end: {run.megapixels_per_s:.2f} MP/s, worker peak "
        f"RSS {run.rss_mb:.0f} MB",
        flush=True,
    )
    return run


def measure_line(
    tiles_folder: Path, frames: int, redis_url: str, strips: int = LINE_STRIPS
) -> FramesLine:
    """Frames end to end on one worker host, in the line's scenario shapes: a camera
    with GOOD_FRAMES good frames, its memory built before timing starts."""
    load_before = load_average()
    tiles = tile_pool(tiles_folder)
    per = per_frame(FRAME_SIZE)
    good = [png_bytes(mosaic(tiles, FRAME_SIZE, i * per)) for i in range(GOOD_FRAMES)]
    payloads = [
        (f"frame-{i}.png", png_bytes(mosaic(tiles, FRAME_SIZE, (GOOD_FRAMES + i) * per)))
        for i in range(LINE_PAYLOADS)
    ]
    cores = os.cpu_count() or 1
    scenarios = [
        Scenario(f"1 process x {cores} threads", 1, cores, LINE_BATCH),
        Scenario(f"{cores} processes x 1 thread", cores, 1, LINE_BATCH),
    ]
    runs = []
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        workdir = Path(tmp)
        base = prepare_base(workdir, database_url, redis_url)
        register_good_frames(base, CAMERA, good)
        for scenario in scenarios:
            with running(base, scenario, workdir, sample_payloads()) as line:
                runs.append(measure_line_run(line, CAMERA, payloads, frames, LATENCY_SECONDS))
        strip_run = (
            measure_strips(base, workdir, CAMERA, tiles, payloads, strips) if strips else None
        )
        build_s, memory_rows = built_memory(database_url, CAMERA)
        db_kind = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    return FramesLine(
        png_kb=statistics.mean(len(data) for _, data in payloads) / 1024,
        build_s=build_s,
        memory_rows=memory_rows,
        runs=runs,
        strips=strip_run,
        db_kind=db_kind,
        load=(load_before, load_average()),
    )


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else f"**missed** ({value / target:.0%} of it)"


def bounding_stage(profile: list[tuple[str, float]]) -> tuple[str, float]:
    """The stage with the largest share of a worker's samples (idle and event loop aside)."""
    return max(((k, s) for k, s in profile if k != OTHER), key=lambda item: item[1])


def render_line(line: FramesLine, model_fps: float) -> list[str]:
    """The end-to-end part of the frames section: rates, latency, memory, where time goes."""
    megapixels = FRAME_SIZE[0] * FRAME_SIZE[1] / 1e6
    best = max(line.runs, key=lambda run: run.fps)
    lines = [
        "",
        "### End to end: enqueue to committed row",
        "",
        f"One worker host in the line's two shapes (`celery -A worker worker --pool solo`, "
        f"batches of up to {best.batch_size} as the line's), {line.db_kind} and Redis on the "
        f"same machine (the machine's load average {line.load[0]:.1f} at the start of this "
        f"part, {line.load[1]:.1f} at its end). A camera has {GOOD_FRAMES} good frames "
        "(`ok` references with the camera: the mosaics above, as PNG); its worker built "
        f"the memory on the camera's first frame ({line.build_s:.1f} s, {line.memory_rows} "
        "rows, stored in `surface_memories`; a second host loads it) before any timing. "
        f"Then {best.frames} frames ({LINE_PAYLOADS} distinct mosaics of other tiles, cycled; "
        f"{line.png_kb:.0f} KB of PNG each, inside the message) are enqueued while the "
        "workers hold off, and timed from the first enqueue to the last committed row "
        "(frames/s, MP/s); the line's own measure, the rows committed between the 10th and "
        "90th percentile of the run, is beside it (coarser here: a batch of 32 frames "
        "commits at once). Latency is committed minus enqueued, at a steady half of each "
        "shape's rate. Workers' CPU is their user and system time over the run, of all "
        "the cores' time, and per frame (less sensitive than the rate to other work on the "
        "machine).",
        "",
        "| scenario | frames | frames/s | MP/s | steady middle | workers' CPU | "
        "peak RSS per process (MB) | latency at half rate: p50, p95 |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in line.runs:
        rss = ", ".join(f"{m:.0f}" for m in run.rss_mb) or "–"
        lines.append(
            f"| {run.scenario} | {run.frames} | {run.fps:.2f} | **{run.fps * megapixels:.2f}** | "
            f"{run.steady_fps:.2f} frames/s | {run.cpu_share:.0%} of the cores, "
            f"{run.cpu_s / run.frames:.2f} s a frame | {rss} | "
            f"{run.p50_ms:.0f} ms, {run.p95_ms:.0f} ms ({run.latency_frames} frames at "
            f"{run.latency_rate:.2f}/s) |"
        )
    best_mp = best.fps * megapixels
    lines += [
        "",
        "| ratio | measured | target | |",
        "|---|---:|---:|---|",
        f"| best MP/s end to end ({best.scenario}) / {TARGET_MPX:g} MP/s per host | "
        f"{best_mp / TARGET_MPX:.2f}x | 1x | {verdict(best_mp, TARGET_MPX)} |",
        f"| the same / the goal, {GOAL_MPX:g} MP/s per host | {best_mp / GOAL_MPX:.2f}x | 1x | "
        f"{verdict(best_mp, GOAL_MPX)} |",
        f"| end to end / `inspect` at batch 1 above (model level) | "
        f"{best.fps / model_fps:.2f}x | | |",
        *render_strips(line.strips),
        "",
        f"Where a worker's time goes: py-spy samples ({PROFILE_SECONDS} s at 100 Hz) of the "
        "first worker process of each shape while the queue holds frames, each sample "
        "counted once, in the first stage of this list found on its stack. py-spy sees the "
        "Python threads: the torch and faiss threads' work is counted where the worker's "
        "thread waits on it; the metrics endpoint's thread, which waits for requests, is "
        "left out.",
        "",
        "| stage | " + " | ".join(run.scenario for run in line.runs) + " |",
        "|---|" + "---:|" * len(line.runs),
    ]
    shares = [dict(run.profile) for run in line.runs]
    for stage, _ in line.runs[0].profile:
        if any(share.get(stage, 0.0) >= 0.005 for share in shares):
            cells = " | ".join(f"{share.get(stage, 0.0):.1%}" for share in shares)
            lines.append(f"| {stage} | {cells} |")
    lines += ["", bound_paragraph(line.runs, best)]
    return lines


def render_strips(strips: StripRun | None) -> list[str]:
    if strips is None:
        return []
    peak = "met" if strips.rss_mb < STRIP_TARGET_MB else "**missed**"
    return [
        "",
        f"Strips: {strips.strips} strips of {STRIP_SIZE[1]}x{STRIP_SIZE[0]} (the strip above, "
        f"{strips.png_mb:.1f} MiB of PNG each: more than the default `MAX_IMAGE_BYTES` of "
        f"8 MiB, which would reject them; raised to {STRIP_MAX_BYTES // 2**20} MiB for this "
        "run) queued while one worker process (all the cores' threads) held off, then "
        f"taken in one batch: {strips.megapixels_per_s:.2f} MP/s end to end, the worker's "
        f"peak RSS **{strips.rss_mb:.0f} MB** (target < {STRIP_TARGET_MB} MB: {peak}).",
    ]


#: the stages of the model itself; the rest of a worker's work is around it
MODEL_STAGES = ("search:", "features:", "grid,")


def bound_paragraph(runs: list[LineRun], best: LineRun) -> str:
    """Which stage bounds the line, from the profiles."""
    stage, share = bounding_stage(best.profile)
    others = "; ".join(
        f"{dict(run.profile).get(stage, 0.0):.0%} in *{run.scenario}*"
        for run in runs
        if run is not best
    )
    cores = os.cpu_count() or 1
    ceiling = cores * best.frames / best.cpu_s * FRAME_SIZE[0] * FRAME_SIZE[1] / 1e6
    shares = dict(best.profile)
    features = sum(v for k, v in shares.items() if k.startswith("features:"))
    around = sum(v for k, v in shares.items() if k != OTHER and not k.startswith(MODEL_STAGES))
    others = f" ({others})" if others else ""
    return (
        f"**The stage that bounds it: {stage.split(':')[0]}** ({stage}): {share:.0%} of the "
        f"samples of a worker of *{best.scenario}*, the faster shape{others}. The features "
        f"take {features:.0%}, and everything around the model (decoding, the image store, "
        f"the heat map, naming the findings, the database, the messages) {around:.0%} "
        f"together. The workers used {best.cpu_share:.0%} of the cores' time over the run "
        f"({best.cpu_s / best.frames:.2f} CPU-seconds a frame): with the {cores} cores to "
        f"themselves, at most {ceiling:.1f} MP/s (other work on the machine takes the rest)."
    )


def display_path(path: Path) -> str:
    for base, name in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return name + str(path.resolve().relative_to(base))
        except ValueError:
            continue
    return str(path)


def render(
    result: FramesResult,
    command: str,
    machine: str,
    repeats: int,
    line: FramesLine | None = None,
) -> str:
    """The "## Frames" section, markers included (the end-to-end part where measured)."""
    median = statistics.median
    megapixels = FRAME_SIZE[0] * FRAME_SIZE[1] / 1e6
    strip_mp = STRIP_SIZE[0] * STRIP_SIZE[1] / 1e6
    b1, b8 = median(result.batch1_fps), median(result.batch8_fps)
    build, faiss_t, torch_t = median(result.build_s), median(result.faiss_s), median(result.torch_s)
    ratio = median(t / f for f, t in zip(result.faiss_s, result.torch_s, strict=True))
    strip = median(result.strip_s)
    rows, dim = result.memory_shape
    peak = result.child.peak_mb
    peak_verdict = "met" if peak < STRIP_TARGET_MB else "**missed**"
    build_verdict = "met" if build <= 180 else "**missed**"
    alone = "" if "bench.frames" in command else "; `python -m bench.frames` measures it alone"
    lines = [
        BEGIN,
        "## Frames",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine}, with `{command}` "
        f"(torch {result.threads} threads, faiss on its default OpenMP threads; the "
        f"machine's load average {result.load[0]:.1f} at the start, {result.load[1]:.1f} "
        f"at the end: other work shared its cores{alone}). The default "
        "model on the CPU; every figure is the median of "
        f"{repeats} rounds of that one run, each round taking every measurement in turn "
        f"(the nearest-neighbour search {SEARCH_PAIRS} times a round, faiss and "
        "`torch.cdist` back to back, their ratio the median of the paired ratios). Frames "
        f"are {FRAME_SIZE[0]}x{FRAME_SIZE[1]} mosaics of {per_frame(FRAME_SIZE)} good "
        f"magnetic-tile images each ({result.tile_count} `free` tiles from `{result.tiles}`, "
        f"each fitted to {TILE}x{TILE}), read at scale 1: the memory is built from "
        f"{GOOD_FRAMES} of them ({rows} rows of {dim} features, threshold "
        f"{result.threshold:.2f}; the features of the {GOOD_FRAMES} frames subsampled to "
        f"the memory's size); {BATCH} others, made of other tiles, are inspected, and the "
        "strip is tiled from the tiles left, then from the first ones again, mirrored.",
        "",
        "| measurement | median | rate | |",
        "|---|---:|---:|---|",
        f"| `inspect`, batch 1 ({BATCH} calls of one frame) | {1 / b1:.2f} s a frame | "
        f"{b1:.2f} frames/s, {b1 * megapixels:.2f} MP/s | |",
        f"| `inspect`, batch {BATCH} (one call) | {BATCH / b8:.2f} s a batch | "
        f"{b8:.2f} frames/s, {b8 * megapixels:.2f} MP/s | {b8 / b1:.2f}x batch 1 |",
        f"| `build` from {GOOD_FRAMES} good frames | {build:.1f} s | "
        f"{GOOD_FRAMES / build:.2f} frames/s | target a few minutes (180 s): {build_verdict} |",
        f"| nearest neighbours, faiss `IndexFlatL2` | {faiss_t * 1000:.0f} ms | "
        f"{result.queries / faiss_t / 1e3:.0f}k queries/s | |",
        f"| nearest neighbours, `torch.cdist` in chunks of {CDIST_CHUNK} | "
        f"{torch_t * 1000:.0f} ms | {result.queries / torch_t / 1e3:.0f}k queries/s | "
        f"faiss {ratio:.2f}x as fast |",
        f"| a {STRIP_SIZE[1]}x{STRIP_SIZE[0]} strip | {strip:.1f} s | "
        f"{strip_mp / strip:.2f} MP/s | {strip_mp / strip / (b1 * megapixels):.2f}x the "
        "frames' MP/s at batch 1 |",
        f"| the strip in a fresh process (peak RSS, VmHWM) | {peak:.0f} MB | "
        f"{result.child.seconds:.1f} s cold | target < {STRIP_TARGET_MB} MB: {peak_verdict} |",
        "",
        f"The nearest-neighbour search runs the {result.queries} local features of one "
        f"inspected frame (its real features, read band by band) against the real memory "
        f"({rows}x{dim}); both searches are exact, up to float32 rounding (largest "
        f"difference of a distance {result.max_difference:.1e}), and the faiss time "
        "includes making the index (a worker keeps it between batches): the search is "
        f"{faiss_t * b1:.0%} of a frame's time at "
        f"batch 1. A frame of up to {BAND_PIXELS / 1e6:g} million model pixels is read in "
        "one pass, frames of one size stacked into one pass up to that many pixels "
        "(`PatchFeatures.many`); a larger frame is read in bands across its long side "
        "(`PatchFeatures.bands`). The strip is read in bands, so its "
        "memory stays bounded: the fresh process held "
        f"{result.child.rss_before_mb:.0f} MB with the model, the memory and the decoded "
        f"strip loaded, {peak:.0f} MB at its peak. "
        f"The strip had {result.strip_findings} findings; what the frames show changes "
        "little of the time, beyond cutting a crop for each finding.",
        *(render_line(line, b1) if line else []),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(splice_section(text, section))


def default_tiles() -> Path:
    return SHARED_TILES if SHARED_TILES.is_dir() else SAMPLE_TILES


def default_redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def run(
    tiles: Path,
    repeats: int,
    command: str,
    machine: str,
    line_frames: int = LINE_FRAMES,
    redis_url: str | None = None,
) -> str:
    """Measure and return the section (``python -m bench`` calls this); frames end to
    end too unless ``line_frames`` is 0."""
    result = measure(tiles, repeats)
    line = (
        measure_line(tiles, line_frames, redis_url or default_redis_url()) if line_frames else None
    )
    return render(result, command, machine, repeats, line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frames", description=__doc__)
    parser.add_argument(
        "--tiles",
        type=Path,
        default=default_tiles(),
        help="a folder of good surface images to make frames of (default: the magnetic-tile "
        "set's free/ under ../shared when present, else data/sample-tiles/free)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument(
        "--line-frames",
        type=int,
        default=LINE_FRAMES,
        help="frames timed end to end per worker shape (0: the model level only)",
    )
    parser.add_argument(
        "--redis-url",
        default=default_redis_url(),
        help="Redis for the end-to-end part (its queue is emptied); PostgreSQL from "
        "BENCH_PG_ADMIN_DSN, SQLite when it does not answer",
    )
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--strip-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.strip_child:
        return inspect_strip_child(args.strip_child)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.line_frames < 0:
        parser.error("--line-frames must be 0 (skip) or more")
    from bench.__main__ import machine

    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench.frames", *arguments])
    section = run(args.tiles, args.repeats, command, machine(), args.line_frames, args.redis_url)
    write_section(args.out, section)
    print(f"wrote the frames section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

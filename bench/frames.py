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
import json
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


def display_path(path: Path) -> str:
    for base, name in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return name + str(path.resolve().relative_to(base))
        except ValueError:
            continue
    return str(path)


def render(result: FramesResult, command: str, machine: str, repeats: int) -> str:
    """The "## Frames" section, markers included."""
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
        "includes making the index, as "
        f"each `inspect` call does: the search is {faiss_t * b1:.0%} of a frame's time at "
        f"batch 1. A frame of up to {BAND_PIXELS / 1e6:g} million model pixels is read in "
        "one pass, frames of one size stacked into one pass up to that many pixels "
        "(`PatchFeatures.many`); a larger frame is read in bands across its long side "
        "(`PatchFeatures.bands`). The strip is read in bands, so its "
        "memory stays bounded: the fresh process held "
        f"{result.child.rss_before_mb:.0f} MB with the model, the memory and the decoded "
        f"strip loaded, {peak:.0f} MB at its peak. "
        f"The strip had {result.strip_findings} findings; what the frames show changes "
        "little of the time, beyond cutting a crop for each finding.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(splice_section(text, section))


def default_tiles() -> Path:
    return SHARED_TILES if SHARED_TILES.is_dir() else SAMPLE_TILES


def run(tiles: Path, repeats: int, command: str, machine: str) -> str:
    """Measure and return the section (``python -m bench`` calls this)."""
    return render(measure(tiles, repeats), command, machine, repeats)


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
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--strip-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.strip_child:
        return inspect_strip_child(args.strip_child)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    from bench.__main__ import machine

    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench.frames", *arguments])
    section = run(args.tiles, args.repeats, command, machine())
    write_section(args.out, section)
    print(f"wrote the frames section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

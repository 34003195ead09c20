"""``python -m bench``: every benchmark side by side in one run; writes docs/benchmarks.md.

Needs Redis (``REDIS_URL``, database 14 of it is used and emptied) and, for
realistic numbers, PostgreSQL (``BENCH_PG_ADMIN_DSN``; SQLite is used when it
does not answer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from bench import frames, soak_report
from bench.embed import median_rates
from bench.line import (
    LatencyResult,
    LineResult,
    Scenario,
    fresh_database,
    measure_latency,
    measure_throughput,
    prepare_base,
    running,
    sample_payloads,
)
from bench.paper_way import paper_way_throughput
from bench.profile_worker import profile_worker
from bench.queue_pages import measure as measure_queue_pages
from model import load_embedder
from model.embedder import FIVE_VIEW_CHECKPOINT, Embedder
from model.networks import build_network, optimize_for_inference

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def paper_checkpoint(folder: Path) -> Path:
    """An untrained paper-network checkpoint, for the speed of the line with that model."""
    from model.checkpoint import save_checkpoint

    meta = {
        "arch": "deshpande2020",
        "arch_kwargs": {},
        "input_size": 100,
        "threshold": 1.0,
        "embedding_dim": 5,
        "train_classes": [],
    }
    return save_checkpoint(folder / "paper-untrained.pt", build_network("deshpande2020"), meta)


def paper_embedder() -> Embedder:
    """The paper network, untrained (its speed does not depend on its weights),
    optimised for inference as ``load_embedder`` serves every checkpoint."""
    network = optimize_for_inference(build_network("deshpande2020").eval())
    meta = {"arch": "deshpande2020", "input_size": 100, "threshold": 1.0, "embedding_dim": 5}
    return Embedder(network, meta, "deshpande2020-untrained", torch.device("cpu"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
        f"{platform.python_version()}"
    )


def ceiling(seconds: float, rounds: int) -> list[tuple[str, str, int, int, float]]:
    images = [Image.open(p).copy() for p in sorted(SAMPLE.glob("*/*.png"))]
    images = (images * 3)[:128]
    rows = []
    default_threads = torch.get_num_threads()
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        embedders = (
            ("default model", load_embedder(device="cpu")),
            ("five-view model", load_embedder(FIVE_VIEW_CHECKPOINT, device="cpu")),
            ("paper network", paper_embedder()),
        )
        runs = [(name, embedder, batch) for name, embedder in embedders for batch in (1, 64)]
        rates = median_rates(runs, images, seconds / rounds, rounds)
        for (name, embedder, batch), rate in zip(runs, rates, strict=True):
            rows.append((name, embedder.arch, threads, batch, rate))
            print(
                f"ceiling  {name:14s} {threads} thread(s) batch {batch:3d}: {rate:8.1f} images/s",
                flush=True,
            )
    torch.set_num_threads(default_threads)
    return rows


def ratio_line(label: str, value: float, target: float) -> str:
    verdict = "met" if value >= target else f"**missed** ({value / target:.0%} of the target)"
    return f"| {label} | {value:.2f}x | {target:g}x | {verdict} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per embed measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="embed measurements are split into this many interleaved rounds (median kept)",
    )
    parser.add_argument("--images", type=int, default=2000, help="images per throughput run")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--queue-rows",
        type=int,
        default=1_000_000,
        help="rows for the queue-page benchmark (0: skip it)",
    )
    parser.add_argument(
        "--frames-repeats",
        type=int,
        default=3,
        help="repetitions of each frames measurement (0: skip them, keep the report's section)",
    )
    parser.add_argument(
        "--tiles",
        type=Path,
        default=frames.default_tiles(),
        help="good surface images the frames benchmark makes its frames of",
    )
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1

    frames_text = frames_report(args)
    embed_rows = ceiling(args.seconds, args.rounds)
    payloads = sample_payloads()
    references = [p.read_bytes() for p in sorted(SAMPLE.glob("*/*.png")) if p.stem.endswith("_1")]
    paper_rate = paper_way_throughput([d for _, d in payloads], references, args.seconds)
    print(f"paper's way ({len(references)} references, pair by pair): {paper_rate:.1f} images/s")

    scenarios = [
        Scenario("batched, 1 process x 1 thread", 1, 1, 32),
        Scenario(f"batched, 1 process x {cores} threads", 1, cores, 32),
        Scenario(f"batched, {cores} processes x 1 thread", cores, 1, 32),
        Scenario(f"unbatched, {cores} processes x 1 thread", cores, 1, 1),
    ]
    throughput: list[LineResult] = []
    latency: LatencyResult | None = None
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        workdir = Path(tmp)
        paper = paper_checkpoint(workdir)
        scenarios += [
            Scenario(
                f"paper network, batched, {cores} processes x 1 thread",
                cores,
                1,
                32,
                checkpoint=paper,
            ),
            Scenario(
                f"paper network, unbatched, {cores} processes x 1 thread",
                cores,
                1,
                1,
                checkpoint=paper,
            ),
        ]
        base = prepare_base(workdir, database_url, args.redis_url)
        for scenario in scenarios:
            count = args.images if scenario.batch_size > 1 else max(200, args.images // 3)
            with running(base, scenario, workdir, payloads) as line:
                result = measure_throughput(line, payloads, count)
                throughput.append(result)
                print(
                    f"line     {scenario.name:40s}: {result.images_per_s:8.1f} images/s", flush=True
                )
                if (
                    scenario.processes == cores
                    and scenario.batch_size > 1
                    and scenario.checkpoint is None
                ):
                    latency = measure_latency(
                        line, payloads, result.images_per_s / 2, args.latency_seconds
                    )
                    print(
                        f"latency at {latency.rate:.0f}/s: p50 {latency.p50_ms:.0f} ms, "
                        f"p95 {latency.p95_ms:.0f} ms, p99 {latency.p99_ms:.0f} ms",
                        flush=True,
                    )
        db_kind = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"

    pages = measure_queue_pages(args.queue_rows) if args.queue_rows else []
    for timing in pages:
        print(f"queue    {timing.name:45s}: {timing.milliseconds:7.1f} ms")
    try:
        profile = profile_worker(args.redis_url)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"profile skipped: {exc}")
        profile = []
    write_report(
        args,
        embed_rows,
        paper_rate,
        len(references),
        throughput,
        latency,
        db_kind,
        cores,
        profile,
        pages,
        frames_text,
    )
    print(f"wrote {args.out}")
    return 0


def frames_report(args: argparse.Namespace) -> str | None:
    """The frames section: measured in this run, or the report's as it stands."""
    if args.frames_repeats > 0:
        command = shlex.join(["python", "-m", "bench", *sys.argv[1:]])
        return frames.run(args.tiles, args.frames_repeats, command, machine())
    return frames.frames_section(args.out.read_text()) if args.out.exists() else None


def write_report(  # type: ignore[no-untyped-def]
    args,
    embed_rows,
    paper_rate,
    n_refs,
    throughput,
    latency,
    db_kind,
    cores,
    profile,
    pages,
    frames_text=None,
) -> None:
    ceiling64 = {(n, t): r for n, _, t, b, r in embed_rows if b == 64}
    best_ceiling = ceiling64[("default model", cores)]
    by_name = {r.scenario.name: r for r in throughput}
    batched_multi = by_name[f"batched, {cores} processes x 1 thread"]
    batched_one = by_name["batched, 1 process x 1 thread"]
    unbatched = by_name[f"unbatched, {cores} processes x 1 thread"]
    best_batched = max(
        (r for r in throughput if r.scenario.batch_size > 1 and r.scenario.checkpoint is None),
        key=lambda r: r.images_per_s,
    )
    paper_batched = by_name.get(f"paper network, batched, {cores} processes x 1 thread")
    paper_unbatched = by_name.get(f"paper network, unbatched, {cores} processes x 1 thread")
    lines = [
        "# Benchmarks",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine()}, with `make bench` "
        f"(`python -m bench {shlex.join(sys.argv[1:])}`). Every row comes from that one run, "
        f"side by side, on the same {len(sample_payloads())} NEU sample images (200x200 PNG). "
        f"Database: {db_kind}; broker: Redis. Timings are never asserted by the tests.",
        "",
        "## Embedding ceiling",
        "",
        "`Embedder.embed()` on already decoded images (resizing and normalisation included), "
        "every network optimised for inference as `load_embedder` serves it. Each rate is the "
        f"median of {args.rounds} rounds of {args.seconds / args.rounds:g} s in which the "
        "models take turns, so that a drift in the machine's speed touches them all alike.",
        "",
        "| model | architecture | torch threads | batch | images/s | vs paper network |",
        "|---|---|---:|---:|---:|---:|",
    ]
    paper = {(t, b): r for n, _, t, b, r in embed_rows if n == "paper network"}
    for name, arch, threads, batch, rate in embed_rows:
        lines.append(
            f"| {name} | `{arch}` | {threads} | {batch} | {rate:.1f} | "
            f"{rate / paper[(threads, batch)]:.2f}x |"
        )
    lines += [
        "",
        "## End to end: enqueue to committed row",
        "",
        f"Workers (`celery -A worker worker --pool solo`) with the default model (or, where "
        f"named, an untrained paper network: same speed as a trained one) and "
        f"{n_refs} references; the queue is filled while the workers hold off (Celery's "
        "remote control pauses their consumption, so the sender does not share the cores "
        "with them), then they empty it, and the rate is read from the rows committed "
        "between the 10th and 90th percentile of the run. Peak "
        "memory is each worker process's VmHWM.",
        "",
        "| scenario | batch size | images | images/s | peak RSS per process (MB) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in throughput:
        rss = ", ".join(f"{m:.0f}" for m in r.worker_rss_mb) or "–"
        lines.append(
            f"| {r.scenario.name} | {r.scenario.batch_size} | {r.images} | "
            f"{r.images_per_s:.1f} | {rss} |"
        )
    lines += [
        "",
        f"The paper's way of inference (each image paired with each of the {n_refs} "
        "references, both through the paper network at batch 1, images decoded per pair, "
        f"in one process with {cores} threads): **{paper_rate:.1f} images/s**.",
        "",
    ]
    if latency:
        lines += [
            f"Latency at a steady {latency.rate:.0f} images/s (half the batched maximum of "
            f"*{latency.scenario.name}*), {latency.images} images: "
            f"p50 **{latency.p50_ms:.0f} ms**, p95 **{latency.p95_ms:.0f} ms**, "
            f"p99 **{latency.p99_ms:.0f} ms**.",
            "",
        ]
    lines += [
        "## Targets (ratios from this run)",
        "",
        "| ratio | measured | target | |",
        "|---|---:|---:|---|",
        ratio_line(
            f"best batched end to end / batch-64 ceiling ({best_batched.scenario.name})",
            best_batched.images_per_s / best_ceiling,
            0.5,
        ),
        ratio_line(
            "batched / unbatched end to end (same processes)",
            batched_multi.images_per_s / unbatched.images_per_s,
            3,
        ),
        *(
            [
                ratio_line(
                    "the same with the paper network as the model",
                    paper_batched.images_per_s / paper_unbatched.images_per_s,
                    3,
                )
            ]
            if paper_batched and paper_unbatched
            else []
        ),
        ratio_line(
            "best batched end to end / the paper's way", best_batched.images_per_s / paper_rate, 20
        ),
        ratio_line(
            f"{cores} processes / 1 process (1 thread each, batched)",
            batched_multi.images_per_s / batched_one.images_per_s,
            1.7,
        ),
    ]
    if latency:
        verdict = "met" if latency.p99_ms < 250 else "**missed**"
        lines.append(
            f"| p99 latency at half load | {latency.p99_ms:.0f} ms | < 250 ms | {verdict} |"
        )
    if profile:
        lines += [
            "",
            "## Where a worker's time goes",
            "",
            "py-spy samples of one loaded single-threaded worker (batches of 32, images inside "
            "the messages), from `python -m bench.profile_worker` in the same run. Each sample "
            "counts once, in the first stage of this list found on its stack.",
            "",
            "| share | stage |",
            "|---:|---|",
            *[f"| {share:.1%} | {label.strip()} |" for label, share in profile],
        ]
        shares = dict(profile)
        model = sum(v for k, v in shares.items() if "embed" in k)
        decode = sum(v for k, v in shares.items() if "decode images" in k)
        per_message = sum(v for k, v in shares.items() if k.startswith("per message"))
        lines += [
            "",
            f"The model takes {model:.0%} of a worker's time; decoding and checking images "
            f"{decode:.0%}, and Celery's and Redis's work for each message {per_message:.0%}. "
            "Those per-image costs are the same batched or not; batching can only shrink the "
            "model's part, and the texture networks gain little from batches (compare their "
            "batch-1 and batch-64 rows above with the paper network's): they are small "
            "convolutional networks, compute-bound, where the paper network is bound by its "
            "160 MB dense layer. The default model looks at each image once (the five-view "
            "model five times): the less of a worker's time the model takes, the more "
            "decoding and the work for each message, which batching does not share, set the "
            "end-to-end rate. On 2 cores, the second worker process shares them with Redis "
            "and PostgreSQL, so 2 processes can reach 2x one only where those two are idle.",
        ]
    if pages:
        lines += [
            "",
            f"## The supervisors' queue at {args.queue_rows:,} rows",
            "",
            "Median of 5 runs of the queries behind one page of the queue (25 rows), on "
            "PostgreSQL filled by `bench/queue_pages.py`. Pages are fetched by keyset, so a "
            "page deep in the queue costs what the first does, and every page below has an "
            "index that serves its filter and order (the label filter sorted by dissimilarity "
            "since migration 0003; it took about 120-165 ms before).",
            "",
            "| query | ms |",
            "|---|---:|",
            *[f"| {t.name} | {t.milliseconds:.1f} |" for t in pages],
        ]
    text = "\n".join(lines) + "\n"
    if frames_text:
        text = frames.splice_section(text, frames_text)
    # the soak's sections come from `make soak` (an hour): kept as they are
    if args.out.exists() and (soak := soak_report.section_of(args.out.read_text())):
        text = soak_report.splice(text, soak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

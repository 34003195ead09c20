"""``python -m bench``: run the benchmarks side by side and write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

import torch
from PIL import Image

from bench.embed import embed_throughput
from model import load_embedder
from model.embedder import Embedder
from model.networks import build_network

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def paper_embedder() -> Embedder:
    """The paper network, untrained: its speed does not depend on its weights."""
    network = build_network("deshpande2020")
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
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    images = [Image.open(p).copy() for p in sorted(SAMPLE.glob("*/*.png"))]
    images = (images * 3)[:128]
    embedders = {"default model": load_embedder(device="cpu"), "paper network": paper_embedder()}
    rows = []
    for name, embedder in embedders.items():
        for batch in (1, 64):
            rate = embed_throughput(embedder, images, batch, args.seconds)
            rows.append((name, embedder.arch, batch, rate))
            print(f"{name:15s} batch {batch:3d}: {rate:8.1f} images/s", flush=True)

    base = {batch: rate for name, _, batch, rate in rows if name == "paper network"}
    lines = [
        "# Benchmarks",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine()}, with "
        f"`make bench` (`python -m bench --seconds {args.seconds:g}`). All rows come from one "
        "run, side by side; ratios compare rows of that run.",
        "",
        "## Embedding ceiling",
        "",
        "`Embedder.embed()` on already decoded 200x200 NEU images (resizing and normalisation "
        "included), on the CPU.",
        "",
        "| model | architecture | batch | images/s | vs paper network |",
        "|---|---|---:|---:|---:|",
    ]
    for name, arch, batch, rate in rows:
        lines.append(f"| {name} | `{arch}` | {batch} | {rate:.1f} | {rate / base[batch]:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

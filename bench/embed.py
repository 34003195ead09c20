"""The ceiling: ``embed()`` throughput on already decoded images, batch 1 and 64."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from model.embedder import Embedder


@dataclass
class Throughput:
    name: str
    batch: int
    images_per_s: float


def embed_throughput(
    embedder: Embedder, images: Sequence[Image.Image], batch: int, seconds: float = 5.0
) -> float:
    """Images per second through ``embedder.embed`` in batches of ``batch``."""
    chunks = [list(images[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]
    embedder.embed(chunks[0])  # warm-up: first call allocates
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for chunk in chunks:
            embedder.embed(chunk)
            done += len(chunk)
    return done / (time.perf_counter() - start)


def median_rates(
    runs: Sequence[tuple[str, Embedder, int]],
    images: Sequence[Image.Image],
    seconds: float,
    rounds: int,
) -> list[float]:
    """The median images per second of each (name, embedder, batch) over ``rounds``
    rounds of ``seconds`` each, the runs taking turns within every round.

    On a shared 2-core machine the speed of the whole machine drifts by tens of
    percent within a minute; measured in turns, every model sees the same drift,
    so the ratios between them hold even when the absolute rates move.
    """
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, (_, embedder, batch) in enumerate(runs):
            rates[i].append(embed_throughput(embedder, images, batch, seconds))
    return [statistics.median(r) for r in rates]

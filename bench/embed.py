"""The ceiling: ``embed()`` throughput on already decoded images, batch 1 and 64."""

from __future__ import annotations

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

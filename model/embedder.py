"""Inference: the ``Embedder`` owns device choice, checkpoint loading and embedding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model.checkpoint import file_sha256, load_checkpoint
from model.networks import SiameseNetwork, optimize_for_inference
from model.preprocess import to_model_batch

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "default.pt"
# The default's teacher: the same kind of network looking at each image five times
# (whole, and its quadrants at full resolution); about two fifths of the default's
# embeddings per second at batch 64 (docs/model.md).
FIVE_VIEW_CHECKPOINT = DEFAULT_CHECKPOINT.with_name("five-view.pt")
# The network whose local features build good-surface memories (model/frames.py):
# the default's tower trained further for that (model/surface.py), when shipped.
FRAMES_CHECKPOINT = DEFAULT_CHECKPOINT.with_name("frames.pt")
# Largest forward pass; bigger inputs are embedded in chunks of this size. Passes
# of 32 keep the largest feature map (the default model's first layer, 16x100x100
# floats an image) near 20 MB; measured with `embed()` at batch 64, 2 threads,
# models taking turns, two runs: the default model 877 and 843 images/s in passes
# of 32 against 722 and 560 in one pass of 64, the paper network 597 and 577
# against 535 and 481, the five-view model about level (230 and 204 against 233
# and 217). Allocating and freeing the larger blocks is the likely cost.
MAX_FORWARD_BATCH = 32


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Embedder:
    """Embeds PIL images (any size and mode) into float32 vectors."""

    def __init__(
        self,
        network: SiameseNetwork,
        meta: dict[str, Any],
        version: str,
        device: torch.device,
        threshold: float | None = None,
    ) -> None:
        self.network = network.to(device).eval()
        self.meta = meta
        self.version = version
        self.device = device
        self.arch: str = meta["arch"]
        self.input_size: int = int(meta["input_size"])
        self.threshold: float = float(meta["threshold"] if threshold is None else threshold)

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (N, D) float32 array, one row per image, in input order."""
        chunks = []
        for start in range(0, len(images), MAX_FORWARD_BATCH):
            batch = to_model_batch(images[start : start + MAX_FORWARD_BATCH], self.input_size)
            codes = self.network.forward_once(batch.to(self.device))
            chunks.append(codes.float().cpu().numpy())
        if not chunks:
            return np.empty((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    @property
    def embedding_dim(self) -> int:
        return int(self.meta["embedding_dim"])

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
        """Euclidean distance. Two vectors give a float; (N, D) and (M, D) give (N, M)."""
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        if a.ndim == 1 and b.ndim == 1:
            return float(np.linalg.norm(a - b))
        a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
        squared = (a2**2).sum(1)[:, None] + (b2**2).sum(1)[None, :] - 2.0 * a2 @ b2.T
        return np.sqrt(np.maximum(squared, 0.0))


def load_embedder(
    checkpoint: str | Path | None = None,
    device: str = "auto",
    threshold: float | None = None,
) -> Embedder:
    """Load a checkpoint (the shipped default when None) into an ``Embedder``.

    ``threshold`` overrides the match threshold calibrated at training time.
    """
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    target = resolve_device(device)
    network, meta = load_checkpoint(path, map_location=target)
    network = optimize_for_inference(network)
    version = f"{meta['arch']}-{file_sha256(path)[:12]}"
    return Embedder(network, meta, version, target, threshold)

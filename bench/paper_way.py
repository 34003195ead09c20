"""Inference the way the authors' evaluation code does it.

Each test image is paired with each reference image and both are pushed through
the Siamese network at batch 1 (the reference tower is recomputed for every
pair), the images decoded for each pair. This is what the product replaces
with one batched forward pass per batch of images and cached reference
embeddings.
"""

from __future__ import annotations

import io
import time

import torch
from PIL import Image

from model.networks import build_network
from model.preprocess import to_model_input


@torch.inference_mode()
def paper_way_throughput(
    images: list[bytes], references: list[bytes], seconds: float = 5.0
) -> float:
    """Images per second judged against every reference, pair by pair, batch 1."""
    network = build_network("deshpande2020").eval()
    size = network.input_size

    def load(data: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(data)) as image:
            return to_model_input(image, size).unsqueeze(0)

    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for data in images:
            distances = []
            for reference in references:
                a, b = network(load(data), load(reference))
                distances.append(float(torch.nn.functional.pairwise_distance(a, b)))
            min(distances)
            done += 1
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)

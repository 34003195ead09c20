"""Losses for Siamese training."""

from __future__ import annotations

import torch


def contrastive_loss(
    distance: torch.Tensor, different: torch.Tensor, margin: float = 2.0
) -> torch.Tensor:
    """Contrastive loss of Hadsell, Chopra & LeCun (2006), as the paper's code uses it.

    ``different`` is 1.0 for a pair of different classes and 0.0 for the same
    class: same-class pairs are pulled together (d^2), different-class pairs are
    pushed apart until they are ``margin`` away (max(0, margin - d)^2).
    """
    if distance.shape != different.shape:
        raise ValueError(
            f"distance {tuple(distance.shape)} and labels "
            f"{tuple(different.shape)} must have the same shape"
        )
    same_term = (1.0 - different) * distance.pow(2)
    different_term = different * torch.clamp(margin - distance, min=0.0).pow(2)
    return (same_term + different_term).mean()


def pair_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between matching rows of two embedding batches.

    A small epsilon keeps the gradient finite when two codes coincide.
    """
    return torch.sqrt(((a - b) ** 2).sum(dim=1) + 1e-12)

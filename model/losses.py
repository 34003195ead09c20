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


def multi_positive_nce(
    codes: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """InfoNCE with any number of positives per anchor (SupCon, Khosla et al. 2020).

    ``codes`` are L2-normalised (M, D); ``positives`` is an (M, M) boolean
    mask, False on the diagonal. Each anchor's loss is the mean negative
    log-probability of its positives among all other codes. Anchors without a
    positive are skipped.
    """
    m = codes.shape[0]
    if positives.shape != (m, m):
        raise ValueError(f"positives must be ({m}, {m}), got {tuple(positives.shape)}")
    logits = codes @ codes.T / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=codes.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = positives & ~self_mask
    counts = pos.sum(dim=1)
    has = counts > 0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(dim=1)[has] / counts[has]
    return per_anchor.mean()


def instance_and_class_loss(
    codes: torch.Tensor,
    instance_ids: torch.Tensor,
    class_ids: torch.Tensor,
    temperature: float = 0.1,
    class_weight: float = 1.0,
) -> torch.Tensor:
    """Instance discrimination (SimCLR: the other view of the same image is the
    positive) plus supervised contrast (every image of the same class is).

    The instance term keeps features that tell individual textures apart, which
    is what lets an embedding separate classes it was never trained on; the
    class term ties them to defect classes.
    """
    same_instance = instance_ids[:, None] == instance_ids[None, :]
    same_class = class_ids[:, None] == class_ids[None, :]
    loss = multi_positive_nce(codes, same_instance, temperature)
    if class_weight:
        loss = loss + class_weight * multi_positive_nce(codes, same_class, temperature)
    return loss

"""Training a Siamese network, with validation, calibration and a checkpoint.

``train(config)`` takes a ``model.config.TrainConfig``, usually made from a
recipe (``model/recipes/``) by ``python -m model train --recipe NAME``.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.config import (
    ClassifyConfig,
    DistillConfig,
    PairsConfig,
    TrainConfig,
    ViewsConfig,
    plain,
)
from model.data import ClassTensors, PairDataset, list_class_images, split_per_class
from model.embedder import resolve_device
from model.losses import pair_distance
from model.metrics import accuracy_at, best_threshold, roc_auc
from model.networks import CenteredEmbedding, SiameseNetwork, build_network, with_views
from model.objectives import (
    Batch,
    ClassifyObjective,
    DistillObjective,
    Objective,
    PairObjective,
    ViewObjective,
)

log = logging.getLogger(__name__)

# Validation pairs drawn once, with a fixed seed, for the loss curve and calibration.
VALIDATION_PAIRS = 900


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def run_epoch(
    network: SiameseNetwork,
    batches: Iterator[Batch],
    objective: Objective,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_batches: int | None = None,
) -> float:
    """One pass over ``batches``; trains when an optimizer is given. Returns mean loss."""
    network.train(optimizer is not None)
    total, count = 0.0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            loss = objective.loss(network, batch)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            size = len(batch[0])
            total += loss.item() * size
            count += size
    return total / max(count, 1)


def load_teacher(path: Path) -> SiameseNetwork:
    """The teacher: a checkpoint's trained tower looking at images through the
    views it was made with, uncentred (the student is centred on its own
    training codes, if asked)."""
    from model.checkpoint import load_checkpoint

    network, meta = load_checkpoint(path)
    return with_views(getattr(network, "tower", network), meta.get("views", "whole"))


def build_objective(
    config: TrainConfig,
    train_files: dict[str, list[Path]],
    val_files: dict[str, list[Path]],
    size: int,
    device: torch.device,
    teacher: SiameseNetwork | None = None,
) -> Objective:
    settings, seed = config.objective, config.seed
    if isinstance(settings, DistillConfig):
        if teacher is None:
            raise ValueError("the distill objective needs its teacher")
        return DistillObjective(
            teacher,
            train_files,
            val_files,
            size=size,
            settings=settings,
            seed=seed,
            device=device,
        )
    if isinstance(settings, ViewsConfig):
        return ViewObjective(
            train_files, val_files, size=size, settings=settings, seed=seed, device=device
        )
    train_data = ClassTensors.from_files(train_files, size)
    val_data = ClassTensors.from_files(val_files, size)
    if isinstance(settings, PairsConfig):
        return PairObjective(
            train_data,
            val_data,
            settings=settings,
            seed=seed,
            device=device,
            val_pairs=VALIDATION_PAIRS,
        )
    if isinstance(settings, ClassifyConfig):
        return ClassifyObjective(train_data, val_data, settings=settings, seed=seed, device=device)
    raise ValueError(f"unknown objective settings {settings!r}")


def build_optimizer(
    parameters: list[nn.Parameter], config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Adam as in the paper; AdamW when weight decay is asked for; optional one-cycle."""
    if config.weight_decay:
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            parameters, lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(parameters, lr=config.lr)
    if config.schedule == "constant":
        return optimizer, None
    if config.schedule == "onecycle":
        total = max(1, config.epochs * steps_per_epoch)
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=0.1
        )
    raise ValueError(f"unknown schedule {config.schedule!r}; use constant or onecycle")


@torch.inference_mode()
def pair_distances(
    network: SiameseNetwork, pairs: PairDataset, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    network.eval()
    distances, labels = [], []
    for a, b, different in DataLoader(pairs, batch_size=128):
        code_a, code_b = network(a.to(device), b.to(device))
        distances.append(pair_distance(code_a, code_b).cpu().numpy())
        labels.append(different.numpy())
    return np.concatenate(distances), np.concatenate(labels).astype(bool)


@torch.inference_mode()
def mean_embedding(
    network: SiameseNetwork, images: torch.Tensor, device: torch.device, batch: int = 64
) -> torch.Tensor:
    """The mean of the (unit) embeddings of ``images``, un-augmented, in eval mode."""
    network.eval()
    total = None
    for start in range(0, len(images), batch):
        codes = network.forward_once(images[start : start + batch].to(device)).sum(dim=0)
        total = codes if total is None else total + codes
    if total is None:
        raise ValueError("no images to take a mean embedding of")
    return total / len(images)


LOSS_NAMES = {
    "pairs": "contrastive loss",
    "views": "instance + class contrastive loss",
    "classify": "cross-entropy",
    "distill": "squared distance to the teacher's code",
}


def save_loss_curve(
    history: list[dict[str, float]], path: Path, title: str, loss_name: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def network_kwargs(config: TrainConfig) -> dict[str, int | bool]:
    """The architecture's options as the checkpoint records them (only those set)."""
    kwargs: dict[str, int | bool] = {}
    if config.network.input_size is not None:
        kwargs["input_size"] = config.network.input_size
    if config.network.fine_stage1:
        kwargs["fine_stage1"] = True
    if isinstance(config.objective, ClassifyConfig):
        kwargs["n_classes"] = len(config.train_classes)
    return kwargs


def train(config: TrainConfig) -> TrainResult:
    """Train, validate every epoch, calibrate the match threshold, save everything."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    arch, objective_name = config.network.arch, config.objective.name
    kwargs = network_kwargs(config)
    network = build_network(arch, **kwargs).to(device)
    teacher = None
    if isinstance(config.objective, DistillConfig):
        teacher = load_teacher(config.objective.teacher)
        if config.objective.init_from_teacher:
            # texture_net's two stems have the same weight shapes, so a
            # full-resolution student can start from a 100-pixel teacher
            network.load_state_dict(getattr(teacher, "tower", teacher).state_dict())
    # How the trained tower will embed images; checked now, not after training.
    embedding = with_views(network, config.inference_views)
    if config.center and not network.normalized:
        raise ValueError(f"center needs unit embeddings; {arch} does not normalise")
    size = network.input_size

    files = list_class_images(config.data, config.train_classes)
    train_files, val_files = split_per_class(files, config.val_fraction, config.seed)
    objective = build_objective(config, train_files, val_files, size, device, teacher)
    steps_per_epoch = objective.steps_per_epoch()
    if config.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)
    optimizer, scheduler = build_optimizer(list(network.parameters()), config, steps_per_epoch)

    config.out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    started = time.monotonic()
    bar = tqdm(range(1, config.epochs + 1), desc=f"train {arch}", unit="epoch")
    for epoch in bar:
        train_loss = run_epoch(
            network, objective.train_batches(), objective, optimizer, scheduler, config.max_batches
        )
        val_loss = run_epoch(network, objective.val_batches(), objective, None)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")

    center = None
    if config.center:
        train_data = ClassTensors.from_files(train_files, embedding.input_size)
        center = mean_embedding(embedding, torch.cat(train_data.images), device)
        embedding = CenteredEmbedding(embedding, center)
    # The threshold is calibrated on the network as it will embed: with its views
    # and centring.
    val_data = ClassTensors.from_files(val_files, embedding.input_size)
    val_pairs = PairDataset(
        val_data, seed=config.seed + 1, augment=False, fixed=True, length=VALIDATION_PAIRS
    )
    distances, different = pair_distances(embedding, val_pairs, device)
    threshold, val_accuracy = best_threshold(distances, different)
    meta = {
        "arch": arch,
        "arch_kwargs": kwargs,
        "views": config.inference_views,
        "center": None if center is None else center.cpu().tolist(),
        "input_size": embedding.input_size,
        "embedding_dim": int(getattr(network, "embedding_dim", 0)),
        "normalized": bool(network.normalized),
        "threshold": threshold,
        "train_classes": list(config.train_classes),
        "data": {
            "folder": Path(config.data).name,
            "train_images": sum(map(len, train_files.values())),
            "val_images": sum(map(len, val_files.values())),
        },
        "training": {
            **{
                f.name: plain(getattr(config, f.name))
                for f in fields(config)
                if f.name not in ("data", "out", "command", "objective")
            },
            "objective": objective_name,
            objective_name: plain(config.objective),
            "command": config.command,
            "seconds": round(time.monotonic() - started, 1),
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "metrics": {
            "val_pairs": int(distances.size),
            "val_pair_accuracy": val_accuracy,
            "val_pair_accuracy_at_threshold": accuracy_at(distances, different, threshold),
            "val_roc_auc": roc_auc(distances, different),
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "final_val_loss": history[-1]["val_loss"] if history else None,
            **objective.metrics(network),
        },
    }
    checkpoint = save_checkpoint(config.out / "checkpoint.pt", network, meta)
    (config.out / "history.json").write_text(json.dumps(history, indent=1))
    (config.out / "meta.json").write_text(json.dumps(meta, indent=1))
    if history:
        save_loss_curve(
            history,
            config.out / "loss.png",
            f"{arch} ({objective_name}), lr {config.lr:g}",
            LOSS_NAMES[objective_name],
        )
    log.info(
        "saved %s (threshold %.4f, val AUC %.3f)",
        checkpoint,
        threshold,
        meta["metrics"]["val_roc_auc"],
    )
    return TrainResult(checkpoint, history, meta)

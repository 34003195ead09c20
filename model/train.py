"""Training a Siamese network on pairs, with validation, calibration and a checkpoint."""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.data import ClassTensors, PairDataset, list_class_images, split_per_class
from model.embedder import resolve_device
from model.losses import contrastive_loss, pair_distance
from model.metrics import accuracy_at, best_threshold, roc_auc
from model.networks import SiameseNetwork, build_network

log = logging.getLogger(__name__)

# Validation pairs drawn once, with a fixed seed, for the loss curve and calibration.
VALIDATION_PAIRS = 900


@dataclass
class TrainConfig:
    data: Path
    train_classes: list[str]
    out: Path
    arch: str = "deshpande2020"
    embedding_dim: int | None = None  # None: the architecture's own default
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.0005
    margin: float = 2.0
    val_fraction: float = 0.2
    seed: int = 0
    keep: str = "last"  # "last" epoch, or the epoch with the "best" validation loss
    device: str = "auto"
    command: str = ""
    max_batches: int | None = None  # cap batches per epoch (quick runs, tests)


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
    loader: DataLoader,
    margin: float,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    max_batches: int | None,
) -> float:
    """One pass over ``loader``; trains when an optimizer is given. Returns mean loss."""
    network.train(optimizer is not None)
    total, count = 0.0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for i, (a, b, different) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            a, b, different = a.to(device), b.to(device), different.to(device)
            code_a, code_b = network(a, b)
            loss = contrastive_loss(pair_distance(code_a, code_b), different, margin)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += loss.item() * len(a)
            count += len(a)
    return total / max(count, 1)


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


def save_loss_curve(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config: TrainConfig) -> TrainResult:
    """Train, validate every epoch, calibrate the match threshold, save everything."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    kwargs = {} if config.embedding_dim is None else {"embedding_dim": config.embedding_dim}
    network = build_network(config.arch, **kwargs).to(device)
    size = network.input_size

    files = list_class_images(config.data, config.train_classes)
    train_files, val_files = split_per_class(files, config.val_fraction, config.seed)
    train_data = ClassTensors.from_files(train_files, size)
    val_data = ClassTensors.from_files(val_files, size)
    train_pairs = PairDataset(train_data, seed=config.seed)
    val_pairs = PairDataset(
        val_data, seed=config.seed + 1, augment=False, fixed=True, length=VALIDATION_PAIRS
    )
    train_loader = DataLoader(train_pairs, batch_size=config.batch_size)
    val_loader = DataLoader(val_pairs, batch_size=128)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)

    config.out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    best_state, best_val = None, float("inf")
    started = time.monotonic()
    bar = tqdm(range(1, config.epochs + 1), desc=f"train {config.arch}", unit="epoch")
    for epoch in bar:
        train_loss = run_epoch(
            network, train_loader, config.margin, device, optimizer, config.max_batches
        )
        val_loss = run_epoch(network, val_loader, config.margin, device, None, None)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if config.keep == "best" and val_loss < best_val:
            best_val = val_loss
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    if best_state is not None:
        network.load_state_dict(best_state)

    distances, different = pair_distances(network, val_pairs, device)
    threshold, val_accuracy = best_threshold(distances, different)
    meta = {
        "arch": config.arch,
        "arch_kwargs": kwargs,
        "input_size": size,
        "embedding_dim": int(getattr(network, "embedding_dim", 0)),
        "normalized": bool(network.normalized),
        "threshold": threshold,
        "train_classes": list(config.train_classes),
        "data": {
            "folder": Path(config.data).name,
            "train_images": len(train_data),
            "val_images": len(val_data),
        },
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("data", "out", "command")},
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
        },
    }
    checkpoint = save_checkpoint(config.out / "checkpoint.pt", network, meta)
    (config.out / "history.json").write_text(json.dumps(history, indent=1))
    (config.out / "meta.json").write_text(json.dumps(meta, indent=1))
    if history:
        save_loss_curve(history, config.out / "loss.png", f"{config.arch}, lr {config.lr}")
    log.info(
        "saved %s (threshold %.4f, val AUC %.3f)",
        checkpoint,
        threshold,
        meta["metrics"]["val_roc_auc"],
    )
    return TrainResult(checkpoint, history, meta)

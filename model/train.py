"""Training a Siamese network on pairs, with validation, calibration and a checkpoint."""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.data import ClassTensors, PairDataset, list_class_images, split_per_class
from model.embedder import resolve_device
from model.losses import pair_distance
from model.metrics import accuracy_at, best_threshold, roc_auc
from model.networks import (
    CenteredEmbedding,
    EnsembleEmbedding,
    SiameseNetwork,
    build_network,
    with_views,
)
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
class TrainConfig:
    data: Path
    train_classes: list[str]
    out: Path
    arch: str = "deshpande2020"
    objective: str = "pairs"  # "pairs" (the paper's), "views", "classify" or "distill"
    embedding_dim: int | None = None  # None: the architecture's own default
    width: int | None = None  # channels of the first stage (compact_texture, texture_net)
    input_size: int | None = None  # texture_net: 100 (default) or 200 (full resolution)
    pool_max: bool = False  # texture_net: pool each feature map's maximum too
    fine_stage1: bool = False  # texture_net: stage 1 at 50x50 (first pool moved behind it)
    quadrant_codes: bool = False  # texture_net: five codes from one pass (whole + quadrants)
    # distill: the checkpoint(s) whose codes the student learns (several: their mean)
    teacher: list[Path] = field(default_factory=list)
    teacher_views: str = "whole+quadrants"  # distill: how the teacher looks at an image
    init_from_teacher: bool = False  # distill: start from the teacher's weights
    mixup: float = 0.0  # distill: fraction of training images blended with another
    epochs: int = 100
    batch_size: int = 32  # pairs per batch (pairs), images per batch (classify)
    lr: float = 0.0005
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "onecycle" (warm-up, then cosine decay)
    margin: float = 2.0  # pairs: contrastive margin
    per_class: int = 32  # views: images per class in a batch (two views each)
    temperature: float = 0.1  # views
    class_weight: float = 1.0  # views: weight of the supervised term
    texture_weight: float = 0.0  # views: weight of predicting the views' LBP histograms
    min_crop: float = 0.35  # views: smallest crop, as a fraction of the image area
    shading: float = 0.0  # views, distill: strength of random uneven lighting (0: none)
    blur: float = 0.0  # views, distill: largest sigma of random Gaussian blur (0: none)
    local_views: int = 0  # views: small views per image besides the two large ones (multi-crop)
    synthetic_classes: int = 0  # views, distill: procedural texture classes in every batch
    synthetic_per_class: int = 8  # views, distill: images of each synthetic class in a batch
    synthetic_model: str = "basic"  # views, distill: texture model (``model.synthetic.MODELS``)
    synthetic_backgrounds: float = 0.0  # views, distill: share of them laid over real images
    views: str = "whole"  # how images are seen at inference (``model.networks.VIEWS``)
    center: bool = False  # subtract the training images' mean embedding at inference
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


def load_teacher(config: TrainConfig) -> SiameseNetwork:
    """The teacher: each checkpoint's trained tower looking at images through
    ``teacher_views``, uncentred (the student is centred on its own training
    codes, if asked); several checkpoints are averaged (``EnsembleEmbedding``)."""
    from model.checkpoint import load_checkpoint

    if not config.teacher:
        raise ValueError("--objective distill needs --teacher CHECKPOINT")
    members = []
    for path in config.teacher:
        network, _ = load_checkpoint(path)
        members.append(with_views(getattr(network, "tower", network), config.teacher_views))
    return members[0] if len(members) == 1 else EnsembleEmbedding(members)


def plain(value: Any) -> Any:
    """A config value as JSON can hold it (paths as strings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def build_objective(
    config: TrainConfig,
    train_files: dict[str, list[Path]],
    val_files: dict[str, list[Path]],
    size: int,
    device: torch.device,
    embedding_dim: int = 0,
    teacher: SiameseNetwork | None = None,
) -> Objective:
    if config.objective == "distill":
        if teacher is None:
            raise ValueError("--objective distill needs --teacher CHECKPOINT")
        return DistillObjective(
            teacher,
            train_files,
            val_files,
            size,
            config.per_class,
            config.min_crop,
            config.seed,
            device,
            config.mixup,
            config.synthetic_classes,
            config.synthetic_per_class,
            config.synthetic_model,
            config.synthetic_backgrounds,
            config.shading,
            blur=config.blur,
        )
    if config.objective == "views":
        return ViewObjective(
            train_files,
            val_files,
            size,
            config.per_class,
            config.temperature,
            config.class_weight,
            config.min_crop,
            config.seed,
            device,
            config.texture_weight,
            embedding_dim,
            config.synthetic_classes,
            config.synthetic_per_class,
            config.synthetic_model,
            config.synthetic_backgrounds,
            config.shading,
            config.local_views,
            blur=config.blur,
        )
    train_data = ClassTensors.from_files(train_files, size)
    val_data = ClassTensors.from_files(val_files, size)
    if config.objective == "pairs":
        return PairObjective(
            train_data,
            val_data,
            config.batch_size,
            config.margin,
            config.seed,
            device,
            VALIDATION_PAIRS,
        )
    if config.objective == "classify":
        return ClassifyObjective(train_data, val_data, config.batch_size, config.seed, device)
    raise ValueError(
        f"unknown objective {config.objective!r}; use pairs, views, classify or distill"
    )


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


def train(config: TrainConfig) -> TrainResult:
    """Train, validate every epoch, calibrate the match threshold, save everything."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    kwargs: dict[str, int] = {}
    if config.embedding_dim is not None:
        kwargs["embedding_dim"] = config.embedding_dim
    if config.width is not None:
        kwargs["width"] = config.width
    if config.input_size is not None:
        kwargs["input_size"] = config.input_size
    if config.pool_max:
        kwargs["pool_max"] = True
    if config.fine_stage1:
        kwargs["fine_stage1"] = True
    if config.quadrant_codes:
        kwargs["quadrant_codes"] = True
    if config.objective == "classify":
        kwargs["n_classes"] = len(config.train_classes)
    network = build_network(config.arch, **kwargs).to(device)
    teacher = load_teacher(config) if config.objective == "distill" else None
    if teacher is not None and config.init_from_teacher:
        # texture_net's two stems have the same weight shapes, so a full-resolution
        # student can start from a 100-pixel teacher (the first, in an ensemble)
        first = teacher.members[0] if isinstance(teacher, EnsembleEmbedding) else teacher
        network.load_state_dict(getattr(first, "tower", first).state_dict())
    # How the trained tower will embed images; checked now, not after training.
    embedding = with_views(network, config.views)
    if config.center and not network.normalized:
        raise ValueError(f"--center needs unit embeddings; {config.arch} does not normalise")
    size = network.input_size

    files = list_class_images(config.data, config.train_classes)
    train_files, val_files = split_per_class(files, config.val_fraction, config.seed)
    objective = build_objective(
        config,
        train_files,
        val_files,
        size,
        device,
        int(getattr(network, "embedding_dim", 0)),
        teacher,
    )
    steps_per_epoch = objective.steps_per_epoch()
    if config.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)
    optimizer, scheduler = build_optimizer(
        list(network.parameters()) + objective.parameters(), config, steps_per_epoch
    )

    config.out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    best_state, best_val = None, float("inf")
    started = time.monotonic()
    bar = tqdm(range(1, config.epochs + 1), desc=f"train {config.arch}", unit="epoch")
    for epoch in bar:
        train_loss = run_epoch(
            network, objective.train_batches(), objective, optimizer, scheduler, config.max_batches
        )
        val_loss = run_epoch(network, objective.val_batches(), objective, None)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if config.keep == "best" and val_loss < best_val:
            best_val = val_loss
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    if best_state is not None:
        network.load_state_dict(best_state)

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
        "arch": config.arch,
        "arch_kwargs": kwargs,
        "views": config.views,
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
                k: plain(v)
                for k, v in asdict(config).items()
                if k not in ("data", "out", "command")
            },
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
            f"{config.arch} ({config.objective}), lr {config.lr:g}",
            LOSS_NAMES[config.objective],
        )
    log.info(
        "saved %s (threshold %.4f, val AUC %.3f)",
        checkpoint,
        threshold,
        meta["metrics"]["val_roc_auc"],
    )
    return TrainResult(checkpoint, history, meta)

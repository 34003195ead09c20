"""Running the evaluation protocols over several methods, and writing JSON, Markdown, figures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.baselines import LBPEmbedder, PixelEmbedder
from model.checkpoint import load_checkpoint
from model.data import ClassTensors, list_class_images, split_per_class
from model.embedder import load_embedder
from model.evaluate import EpisodeResult, Estimate, PairResult, one_shot_episodes, pair_verification

BASELINES = {"pixels": PixelEmbedder, "lbp": LBPEmbedder}


@dataclass
class MethodResult:
    name: str
    arch: str
    source: str
    episodes: EpisodeResult
    pairs: PairResult
    train_classes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch,
            "source": self.source,
            "train_classes": self.train_classes,
            "episodes": self.episodes.as_dict(),
            "pairs": self.pairs.as_dict(),
        }


@dataclass
class SupervisedResult:
    name: str
    source: str
    classes: list[str]
    accuracy: Estimate
    images: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "classes": self.classes,
            "accuracy": self.accuracy.as_dict(),
            "held_out_images": self.images,
        }


def wilson_interval(correct: int, n: int) -> Estimate:
    """A binomial proportion with its Wilson 95% interval."""
    z = 1.959964
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, centre - half, centre + half)


def parse_named(spec: str) -> tuple[str, str]:
    """``name=path`` or just ``path`` (named after its folder)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, path
    path = Path(spec)
    return (path.parent.name if path.name == "checkpoint.pt" else path.stem), spec


def load_images(data: Path, classes: list[str]) -> dict[str, list[Image.Image]]:
    files = list_class_images(data, classes)
    return {c: [Image.open(p).copy() for p in paths] for c, paths in files.items()}


def evaluate_method(
    name: str,
    embedder: Any,
    images: dict[str, list[Image.Image]],
    source: str,
    episodes: int,
    queries: int,
    pairs: int,
    seed: int,
    shots: int = 1,
) -> MethodResult:
    codes = {c: np.asarray(embedder.embed(imgs), dtype=np.float32) for c, imgs in images.items()}
    threshold = getattr(embedder, "threshold", None)
    meta = getattr(embedder, "meta", {}) or {}
    return MethodResult(
        name=name,
        arch=str(embedder.arch),
        source=source,
        episodes=one_shot_episodes(codes, episodes, queries, seed, shots),
        pairs=pair_verification(codes, threshold, pairs, seed),
        train_classes=list(meta.get("train_classes", [])),
    )


@torch.inference_mode()
def evaluate_classifier(name: str, checkpoint: Path, data: Path) -> SupervisedResult:
    """Held-out accuracy of a ``classify`` checkpoint on its own split of its classes."""
    network, meta = load_checkpoint(checkpoint)
    if not hasattr(network, "logits"):
        raise ValueError(f"{checkpoint} is not a classifier; the conventional-cnn recipe makes one")
    classes = meta["train_classes"]
    training = meta["training"]
    files = list_class_images(data, classes)
    _, val_files = split_per_class(files, training["val_fraction"], training["seed"])
    val = ClassTensors.from_files(val_files, meta["input_size"])
    correct = total = 0
    for label, images in enumerate(val.images):
        predicted = network.logits(images).argmax(1)
        correct += int((predicted == label).sum())
        total += len(images)
    return SupervisedResult(name, str(checkpoint), classes, wilson_interval(correct, total), total)


def run_evaluation(
    data: Path,
    classes: list[str],
    checkpoints: list[str],
    baselines: list[str],
    classifiers: list[str],
    episodes: int,
    queries: int,
    pairs: int,
    seed: int,
    device: str,
    shots: int = 1,
) -> tuple[list[MethodResult], list[SupervisedResult]]:
    images = load_images(data, classes)
    methods: list[tuple[str, Any, str]] = []
    for spec in checkpoints:
        name, path = parse_named(spec)
        methods.append((name, load_embedder(path, device=device), path))
    for baseline in baselines:
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; use {', '.join(BASELINES)}")
        methods.append((baseline, BASELINES[baseline](), "training-free"))
    results = [
        evaluate_method(name, embedder, images, source, episodes, queries, pairs, seed, shots)
        for name, embedder, source in tqdm(methods, desc="evaluate", unit="method")
    ]
    supervised = []
    for spec in classifiers:
        name, path = parse_named(spec)
        supervised.append(evaluate_classifier(name, Path(path), data))
    return results, supervised


def markdown_table(
    classes: list[str], results: list[MethodResult], supervised: list[SupervisedResult]
) -> str:
    episodes = results[0].episodes.name if results else f"{len(classes)}-way one-shot"
    lines = [
        f"Classes: {', '.join(classes)}. Mean [95% interval].",
        "",
        f"| method | trained on | {episodes} | pair acc. @ threshold "
        "| pair acc. @ best | pair ROC AUC |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        trained = ", ".join(r.train_classes) if r.train_classes else "nothing (training-free)"
        at_threshold = str(r.pairs.accuracy_at_threshold) if r.pairs.accuracy_at_threshold else "–"
        lines.append(
            f"| {r.name} (`{r.arch}`) | {trained} | {r.episodes.accuracy} | "
            f"{at_threshold} | {r.pairs.accuracy_at_best} | {r.pairs.roc_auc} |"
        )
    for s in supervised:
        lines.append(
            f"| {s.name} (supervised CNN, **not one-shot**) | all of {', '.join(s.classes)} "
            f"| held-out accuracy {s.accuracy} ({s.images} images) | – | – | – |"
        )
    return "\n".join(lines) + "\n"


def save_figures(results: list[MethodResult], out: Path) -> list[Path]:
    """A distance histogram and a confusion matrix per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for r in results:
        slug = r.name.replace(" ", "-").replace("/", "-")
        fig, ax = plt.subplots(figsize=(6, 4))
        bins = np.linspace(0, max(r.pairs.same_distances + r.pairs.different_distances), 40)
        ax.hist(r.pairs.same_distances, bins=bins, alpha=0.6, label="same class")
        ax.hist(r.pairs.different_distances, bins=bins, alpha=0.6, label="different class")
        if r.pairs.threshold is not None:
            ax.axvline(r.pairs.threshold, color="k", linestyle="--", label="threshold")
        ax.set_xlabel("distance")
        ax.set_ylabel("pairs")
        ax.set_title(f"{r.name}: distances of {r.pairs.pairs} pairs")
        ax.legend()
        fig.tight_layout()
        path = out / f"{slug}-distances.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

        confusion = np.asarray(r.episodes.confusion, dtype=np.float64)
        rates = confusion / confusion.sum(axis=1, keepdims=True)
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        labels = r.episodes.classes
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(
                    j,
                    i,
                    f"{rates[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="white" if rates[i, j] > 0.5 else "black",
                    fontsize=8,
                )
        ax.set_xlabel("predicted (nearest support)")
        ax.set_ylabel("true class")
        ax.set_title(f"{r.name}: {r.episodes.name}")
        fig.tight_layout()
        path = out / f"{slug}-confusion.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_report(
    out: Path,
    data: Path,
    classes: list[str],
    results: list[MethodResult],
    supervised: list[SupervisedResult],
    protocol: dict[str, Any],
    figures: bool,
) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(classes, results, supervised)
    payload = {
        "data": str(data),
        "classes": classes,
        "protocol": protocol,
        "results": [r.as_dict() for r in results],
        "supervised": [s.as_dict() for s in supervised],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    (out / "results.md").write_text(table)
    if figures:
        save_figures(results, out)
    return table

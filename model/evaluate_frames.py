"""``python -m model evaluate-frames``: is there a defect on the frame, where, and what kind,
with only K good frames (and one example per defect type) to go on.

The contract (docs/architecture.md, *Frames and findings*): DIR has one folder
per class, one of them good surface; optional masks in ``DIR/masks/<class>/``;
optional ``DIR/groups.csv`` or ``DIR/tile_groups.csv`` (``file,group``): a
group's images are never split between references and test images. For each
K, over repeated draws: image ROC AUC (defective against good), false alarms
and recall at the threshold calibrated from the K good frames alone, pixel ROC
AUC where masks exist, the share of defective images whose highest-scoring
point lies on the defect, and the share of the found defects named right.
Two rules are scored side by side: the good-surface memory (``patch-memory``,
the top-level result) and today's whole-image rule (``whole-image``).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from model.data import IMAGE_SUFFIXES
from model.embedder import Embedder
from model.frames import (
    CALIBRATION_MARGIN,
    FrameFeatures,
    GoodSurfaceMemory,
    PatchFeatures,
    calibrate_threshold,
    calibration_margin,
)
from model.metrics import roc_auc

log = logging.getLogger(__name__)

METRICS = ("image_auroc", "false_alarm_rate", "recall", "pixel_auroc", "located", "naming_accuracy")
#: pixels of an image's map that enter the pixel ROC AUC, at most (a random sample)
PIXELS_PER_IMAGE = 4000
#: the highest-scoring point counts as on the defect within this many pixels of its mask
LOCATED_TOLERANCE_PX = 4
#: the side of the crop around a finding (and around a naming reference's defect)
CROP_SIDE = 96


@dataclass
class Sample:
    path: Path
    label: str
    group: str
    mask: np.ndarray | None = None  # bool, the image's size; None without a mask
    image: Image.Image = field(init=False, repr=False)

    def __post_init__(self) -> None:
        with Image.open(self.path) as image:
            self.image = image.convert("L")


def load_frames(data: Path, good_class: str) -> list[Sample]:
    """Every image of every class folder of ``data`` (``masks`` is not a class)."""
    classes = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name != "masks")
    if good_class not in classes:
        raise ValueError(f"no folder {good_class!r} in {data}; classes: {', '.join(classes)}")
    groups = read_groups(data)
    samples = []
    for label in classes:
        for path in sorted((data / label).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            relative = f"{label}/{path.name}"
            mask_path = data / "masks" / label / path.name
            mask = None
            if mask_path.is_file():
                with Image.open(mask_path) as m:
                    mask = np.asarray(m.convert("L")) >= 128
            samples.append(Sample(path, label, groups.get(relative, relative), mask))
    return samples


def read_groups(data: Path) -> dict[str, str]:
    for name in ("groups.csv", "tile_groups.csv"):
        if (data / name).is_file():
            with open(data / name, newline="") as handle:
                return {row["file"]: str(row["group"]) for row in csv.DictReader(handle)}
    return {}


@dataclass
class Draw:
    good_refs: list[Sample]
    naming_refs: dict[str, Sample]  # defect class -> its one example
    test: list[Sample]


def draw_split(
    samples: list[Sample], good_class: str, k: int, rng: np.random.Generator, max_good: int
) -> Draw:
    """K good references (from distinct groups where there are enough), one example
    per defect class, and the test images of every group neither of them touches."""
    good = [s for s in samples if s.label == good_class]
    by_group: dict[str, list[Sample]] = {}
    for sample in good:
        by_group.setdefault(sample.group, []).append(sample)
    order = [by_group[g] for g in rng.permutation(sorted(by_group))]
    refs: list[Sample] = []
    while len(refs) < k:
        for members in order:
            remaining = [m for m in members if m not in refs]
            if remaining and len(refs) < k:
                refs.append(remaining[int(rng.integers(len(remaining)))])
    used = {s.group for s in refs}
    naming = {}
    for label in sorted({s.label for s in samples} - {good_class}):
        candidates = [
            s
            for s in samples
            if s.label == label and s.group not in used and s.mask is not None and s.mask.any()
        ]
        if candidates:
            naming[label] = candidates[int(rng.integers(len(candidates)))]
            used.add(naming[label].group)
    test = [s for s in samples if s.group not in used]
    test_good = [s for s in test if s.label == good_class]
    if len(test_good) > max_good:
        keep = set(rng.choice(len(test_good), size=max_good, replace=False).tolist())
        test = [s for s in test if s.label != good_class] + [
            s for i, s in enumerate(test_good) if i in keep
        ]
    return Draw(refs, naming, test)


def defect_crop(image: Image.Image, point: tuple[int, int], side: int = CROP_SIDE) -> Image.Image:
    """A ``side`` x ``side`` crop of ``image`` centred on ``point`` (row, column), kept inside."""
    row, col = point
    half = side // 2
    left = int(np.clip(col - half, 0, max(0, image.width - side)))
    top = int(np.clip(row - half, 0, max(0, image.height - side)))
    return image.crop((left, top, left + side, top + side))


def mask_centre(mask: np.ndarray) -> tuple[int, int]:
    """The centre of the mask's largest connected region."""
    labels, count = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    rows, cols = np.nonzero(largest)
    return int(rows.mean()), int(cols.mean())


def score_draw(
    embedder: Embedder,
    features: dict[Path, FrameFeatures],
    codes: dict[Path, np.ndarray],
    draw: Draw,
    good_class: str,
    rng: np.random.Generator,
    margin: float = CALIBRATION_MARGIN,
) -> dict[str, dict[str, float | None]]:
    """Both rules' metrics on one draw."""
    test = draw.test
    defective = np.array([s.label != good_class for s in test])
    # the good-surface memory
    ref_features = [features[s.path] for s in draw.good_refs]
    memory = GoodSurfaceMemory.from_frames(ref_features)
    threshold = calibrate_threshold(ref_features, margin)
    maps = [memory.anomaly_map(features[s.path]) for s in test]
    scores = np.array([float(m.max()) for m in maps])
    naming_codes = {
        label: embedder.embed([defect_crop(s.image, mask_centre(s.mask))])[0]
        for label, s in draw.naming_refs.items()
        if s.mask is not None
    }
    memory_metrics = image_metrics(scores, defective, threshold)
    memory_metrics.update(localisation(maps, test, defective, rng))
    memory_metrics["naming_accuracy"] = naming(
        embedder, maps, test, scores > threshold, naming_codes, good_class
    )
    # today's rule: the whole image's code against the nearest good reference
    ref_codes = np.stack([codes[s.path] for s in draw.good_refs])
    whole = np.array(
        [float(np.min(np.linalg.norm(ref_codes - codes[s.path], axis=1))) for s in test]
    )
    whole_metrics = image_metrics(whole, defective, embedder.threshold)
    whole_metrics.update(pixel_auroc=None, located=None, naming_accuracy=None)
    return {"patch-memory": memory_metrics, "whole-image": whole_metrics}


def image_metrics(scores: np.ndarray, defective: np.ndarray, threshold: float) -> dict[str, Any]:
    flagged = scores > threshold
    return {
        "image_auroc": roc_auc(scores, defective),
        "false_alarm_rate": float(flagged[~defective].mean()),
        "recall": float(flagged[defective].mean()),
        "threshold": float(threshold),
    }


def localisation(
    maps: list[np.ndarray], test: list[Sample], defective: np.ndarray, rng: np.random.Generator
) -> dict[str, float | None]:
    """Pixel ROC AUC over a sample of every test image's pixels (good images' pixels all
    count as good), and how often a defective image's peak lies on its defect."""
    with_masks = [i for i, s in enumerate(test) if defective[i] and s.mask is not None]
    if not with_masks:
        return {"pixel_auroc": None, "located": None}
    values, truth, on_defect = [], [], []
    for i, (sample, amap) in enumerate(zip(test, maps, strict=True)):
        mask = sample.mask if sample.mask is not None else np.zeros(amap.shape, bool)
        if defective[i] and sample.mask is None:
            continue  # a defective image without a mask: its pixels are unknown
        flat = rng.choice(amap.size, size=min(PIXELS_PER_IMAGE, amap.size), replace=False)
        values.append(amap.ravel()[flat])
        truth.append(mask.ravel()[flat])
        if i in with_masks and mask.any():
            near = ndimage.binary_dilation(mask, iterations=LOCATED_TOLERANCE_PX)
            on_defect.append(bool(near.ravel()[int(np.argmax(amap))]))
    return {
        "pixel_auroc": roc_auc(np.concatenate(values), np.concatenate(truth)),
        "located": float(np.mean(on_defect)) if on_defect else None,
    }


def naming(
    embedder: Embedder,
    maps: list[np.ndarray],
    test: list[Sample],
    flagged: np.ndarray,
    references: dict[str, np.ndarray],
    good_class: str,
) -> float | None:
    """Of the defective images flagged, the share whose crop around the peak is
    nearest to the example of its own class."""
    found = [i for i, s in enumerate(test) if s.label != good_class and flagged[i]]
    if not found or not references:
        return None
    labels = list(references)
    library = np.stack([references[label] for label in labels])
    crops = [
        defect_crop(test[i].image, np.unravel_index(int(np.argmax(maps[i])), maps[i].shape))
        for i in found
    ]
    codes = embedder.embed(crops)
    nearest = np.linalg.norm(codes[:, None] - library[None], axis=2).argmin(axis=1)
    return float(np.mean([labels[j] == test[i].label for i, j in zip(found, nearest, strict=True)]))


def summarise(values: list[float | None]) -> tuple[float | None, list[float] | None]:
    """Mean over draws and its 95% interval (normal approximation); None when unknown."""
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    if known.size == 0:
        return None, None
    mean = float(known.mean())
    half = 1.96 * float(known.std(ddof=1)) / np.sqrt(known.size) if known.size > 1 else 0.0
    return mean, [mean - half, mean + half]


def evaluate_frames(
    embedder: Embedder,
    data: Path,
    good_class: str,
    good_references: list[int],
    draws: int = 5,
    seed: int = 0,
    max_test_good: int = 300,
    scale: float = 1.0,
    stages: tuple[int, ...] = (1, 2),
    keep: Callable[[Sample], bool] | None = None,
    margin: float | None = None,
    feature_model: Embedder | None = None,
) -> dict[str, Any]:
    """The whole evaluation, as the JSON the command writes; ``keep`` limits it to
    some images (the selection rule's halves of the tile groups)."""
    samples = [s for s in load_frames(data, good_class) if keep is None or keep(s)]
    # the memory's features may come from another model than the naming's
    if margin is None:
        margin = calibration_margin(feature_model or embedder)
    extract = PatchFeatures(feature_model or embedder, scale, stages)
    features = {s.path: extract(s.image) for s in tqdm(samples, desc="features", leave=False)}
    whole_codes = embedder.embed([s.image for s in samples])
    codes = dict(zip([s.path for s in samples], whole_codes, strict=True))
    rng = np.random.default_rng(seed)
    results: dict[str, dict[str, Any]] = {"patch-memory": {}, "whole-image": {}}
    for k in good_references:
        per_rule: dict[str, list[dict[str, Any]]] = {rule: [] for rule in results}
        for _ in tqdm(range(draws), desc=f"K={k}", leave=False):
            draw = draw_split(samples, good_class, k, rng, max_test_good)
            for rule, metrics in score_draw(
                embedder, features, codes, draw, good_class, rng, margin
            ).items():
                per_rule[rule].append(metrics)
        for rule, runs in per_rule.items():
            row: dict[str, Any] = {"draws": len(runs)}
            for name in (*METRICS, "threshold"):
                mean, interval = summarise([r.get(name) for r in runs])
                row[name], row[f"{name}_ci95"] = mean, interval
            results[rule][str(k)] = row
    return {
        "data": str(data),
        "good_class": good_class,
        "model_version": embedder.version,
        "frame_model_version": (feature_model or embedder).version,
        "scale": scale,
        "draws": draws,
        "seed": seed,
        "rule": "patch-memory",
        "by_good_references": results["patch-memory"],
        "rules": {rule: {"by_good_references": rows} for rule, rows in results.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    """The JSON as a table: a row per rule and K."""
    lines = [
        "| rule | K | image AUROC | false alarms | recall | pixel AUROC | located | naming |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for rule, block in result["rules"].items():
        for k, row in block["by_good_references"].items():
            cells = []
            for name in METRICS:
                value, interval = row[name], row[f"{name}_ci95"]
                cells.append(
                    "–" if value is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
                )
            lines.append(f"| {rule} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_result(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))

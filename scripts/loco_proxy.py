"""Leave-one-class-out proxy: choosing a design without looking at the unseen classes.

Each fold is a checkpoint trained on two of the three NEU training classes
(``runs/loco/<run>-<fold>``; docs/experiments.md has the commands). It is
scored with 3-way one-shot episodes (1000, seed 0) and pair ROC AUC on the
held-out third class (all its images) and the two trained classes' validation
images, under one or more ways of viewing an image at inference:

* ``whole``: the image resized to 100x100 (one pass);
* ``quadrants``: its four 100x100 quadrants at full resolution;
* ``native``: the image at the network's own input size (one pass; at 200x200,
  full resolution, for a ``texture_net`` student with ``input_size = 200``);

joined with ``+`` (codes of all views averaged: ``whole+quadrants`` is how the
five-view teacher looks), optionally centred on the mean code of the fold's
training images (``--center``, as a recipe's ``center = true`` does; the fold
checkpoints themselves are trained without it).

    python scripts/loco_proxy.py --run blur --views whole+quadrants --center
    python scripts/loco_proxy.py --run student --views native --center

Views tried and dropped (nine crops, mid-size corners, turns and mirrors, a
CLBP hybrid, ensembles of runs) are in the git tag ``experiments/before-cleanup``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.checkpoint import load_checkpoint
from model.data import list_class_images, load_tensors, split_per_class
from model.evaluate import one_shot_episodes, pair_verification
from model.networks import SiameseNetwork

TRAIN_CLASSES = ("inclusion", "patches", "rolled-in_scale")
FOLDS = {"R": "rolled-in_scale", "P": "patches", "I": "inclusion"}


def proxy_files(data: Path, held_out: str) -> dict[str, list[Path]]:
    trained = [c for c in TRAIN_CLASSES if c != held_out]
    _, val = split_per_class(list_class_images(data, trained), 0.2, 0)
    return {**{c: val[c] for c in trained}, held_out: list_class_images(data, [held_out])[held_out]}


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)


def quadrants(x: torch.Tensor) -> list[torch.Tensor]:
    """The four 100x100 quadrants of 200x200 images, at full resolution."""
    return [x[..., t : t + 100, s : s + 100] for t in (0, 100) for s in (0, 100)]


VIEWS = {"whole": lambda x: [resize(x, 100)], "quadrants": quadrants}


def view_list(network: SiameseNetwork, x: torch.Tensor, name: str) -> list[torch.Tensor]:
    if name == "native":
        return [resize(x, network.input_size)]
    return VIEWS[name](x)


@torch.inference_mode()
def embed(network: SiameseNetwork, x: torch.Tensor, views: str) -> torch.Tensor:
    out = []
    for start in range(0, len(x), 32):
        batch = x[start : start + 32]
        parts = [v for name in views.split("+") for v in view_list(network, batch, name)]
        codes = torch.stack([network.forward_once(v) for v in parts]).mean(0)
        out.append(F.normalize(codes, dim=1))
    return torch.cat(out)


def threshold_shift(
    data: Path,
    network: SiameseNetwork,
    held_out: str,
    views: str,
    codes: dict[str, torch.Tensor],
    mean: torch.Tensor | None = None,
) -> str:
    """How far the best threshold for pairs with a new class lies from the one
    calibrated on the trained classes' validation pairs: the best-accuracy threshold
    on 900 of them, as training calibrates (pairs drawn by the evaluation's sampler).
    With ``mean``, ``codes`` are centred on it and so are the validation codes."""
    trained = [c for c in TRAIN_CLASSES if c != held_out]
    _, val = split_per_class(list_class_images(data, trained), 0.2, 0)
    x = {c: load_tensors(files, 200) for c, files in val.items()}
    val_codes = {}
    for c, batch in x.items():
        v = embed(network, batch, views)
        val_codes[c] = (v if mean is None else F.normalize(v - mean, dim=1)).numpy()
    calibrated = pair_verification(val_codes, None, 900, 1).best_threshold
    proxy = pair_verification({c: v.numpy() for c, v in codes.items()}, calibrated, 900, 0)
    return (
        f"fold without {held_out}: calibrated threshold {calibrated:.3f}, best on the proxy "
        f"{proxy.best_threshold:.3f} (x{proxy.best_threshold / calibrated:.2f}); pair accuracy "
        f"{proxy.accuracy_at_threshold.mean:.3f} at the calibrated one, "
        f"{proxy.accuracy_at_best.mean:.3f} at the best"
    )


def score(codes: dict[str, torch.Tensor]) -> tuple[float, float]:
    arrays = {c: v.numpy() for c, v in codes.items()}
    episodes = one_shot_episodes(arrays, 1000, 5, 0)
    pairs = pair_verification(arrays, None, 900, 0)
    return episodes.accuracy.mean, pairs.roc_auc.mean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/neu-cls"))
    parser.add_argument("--runs", type=Path, default=Path("runs/loco"))
    parser.add_argument("--run", default="base", help="fold checkpoints are RUNS/<run>-<fold>")
    parser.add_argument("--folds", default="R,P,I")
    parser.add_argument("--views", default="whole,whole+quadrants")
    parser.add_argument(
        "--thresholds",
        action="store_true",
        help="also compare each fold's calibrated threshold (validation pairs of its two "
        "classes, as training does) with the best threshold on the proxy's pairs, for the "
        "last --views entry (centred, with --center)",
    )
    parser.add_argument(
        "--center",
        action="store_true",
        help="also score every --views entry centred on the mean code of the fold's "
        "training images (model.networks.CenteredEmbedding)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, list[tuple[float, float]]] = {}
    for fold in args.folds.split(","):
        held_out = FOLDS[fold]
        network, _ = load_checkpoint(args.runs / f"{args.run}-{fold}" / "checkpoint.pt")
        network = getattr(network, "tower", network)  # the views are made here
        x = {c: load_tensors(files, 200) for c, files in proxy_files(args.data, held_out).items()}
        trained = [c for c in TRAIN_CLASSES if c != held_out]
        train_files, _ = split_per_class(list_class_images(args.data, trained), 0.2, 0)
        if args.center:
            t = load_tensors([p for files in train_files.values() for p in files], 200)
        for views in args.views.split(","):
            codes = {c: embed(network, batch, views) for c, batch in x.items()}
            rows.setdefault(views, []).append(score(codes))
            print(f"fold {fold} {views}: 3-way {rows[views][-1][0]:.3f}", file=sys.stderr)
            if args.center:
                mean = embed(network, t, views).mean(dim=0)
                centred = {c: F.normalize(v - mean, dim=1) for c, v in codes.items()}
                rows.setdefault(f"{views}, centred", []).append(score(centred))
        if args.thresholds:
            shift = (
                threshold_shift(args.data, network, held_out, views, centred, mean)
                if args.center
                else threshold_shift(args.data, network, held_out, views, codes)
            )
            print(shift, file=sys.stderr)
    folds = args.folds.split(",")
    print("| views | " + " | ".join(f"fold {f} 3-way (AUC)" for f in folds) + " | mean 3-way |")
    print("|---|" + "---:|" * (len(folds) + 1))
    for name, scores in rows.items():
        cells = " | ".join(f"{a:.3f} ({u:.3f})" for a, u in scores)
        print(f"| {name} | {cells} | {np.mean([a for a, _ in scores]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

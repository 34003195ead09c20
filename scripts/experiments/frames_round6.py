"""Round 6 of the frames (docs/experiments.md, *Frames*): calibration rules compared
on the development half, over many draws, on cached features.

    python scripts/experiments/frames_round6.py cache [--checkpoint C] --out F
    python scripts/experiments/frames_round6.py rank F              # AUROC, located per class
    python scripts/experiments/frames_round6.py calibration F --draws 30

Draws as ``evaluate_frames.draw_split`` makes them (K good tiles, one per group,
at most 300 good test tiles), without the naming examples.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from model import load_embedder
from model.evaluate_frames import load_frames
from model.frames import SMOOTH_CELLS, PatchFeatures, gaussian_smooth, load_frame_inspector
from model.metrics import roc_auc

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "magnetic-tile"


def cache(checkpoint: Path | None, out: Path) -> None:
    embedder = load_embedder(None, device="cpu")
    inspector = load_frame_inspector(checkpoint, "cpu", fallback=embedder)
    extract = PatchFeatures(inspector.embedder, 1.0, (1, 2))
    rows = []
    for s in load_frames(DATA, "free"):
        f = extract(s.image)
        rows.append(
            {"label": s.label, "group": s.group, "grid": f.grid, "size": f.size,
             "rows": f.rows.half(), "mask": s.mask}
        )  # fmt: skip
    torch.save(rows, out)


def draws(data: list[dict], k: int, n: int, seed: int, max_good: int = 300) -> list:
    rng = np.random.default_rng(seed)
    good = [i for i, d in enumerate(data) if d["label"] == "free"]
    groups = sorted({data[i]["group"] for i in good})
    out = []
    for _ in range(n):
        refs = []
        for group in rng.permutation(groups)[:k]:
            members = [i for i in good if data[i]["group"] == group]
            refs.append(members[int(rng.integers(len(members)))])
        used = {data[i]["group"] for i in refs}
        test = [i for i, d in enumerate(data) if d["group"] not in used]
        test_good = [i for i in test if data[i]["label"] == "free"]
        if len(test_good) > max_good:
            keep = set(rng.choice(test_good, size=max_good, replace=False).tolist())
            test = [i for i in test if data[i]["label"] != "free" or i in keep]
        out.append((refs, test))
    return out


def cells(memory: torch.Tensor, d: dict) -> np.ndarray:
    index = faiss.IndexFlatL2(memory.shape[1])
    index.add(np.ascontiguousarray(memory.numpy()))
    squared, _ = index.search(np.ascontiguousarray(d["rows"].numpy()), 1)
    grid = torch.from_numpy(np.sqrt(np.maximum(squared[:, 0], 0))).view(*d["grid"])[None, None]
    return gaussian_smooth(grid, SMOOTH_CELLS)[0, 0].numpy()


def located(d: dict, grid: np.ndarray) -> bool | None:
    if d["mask"] is None or not d["mask"].any():
        return None
    full = F.interpolate(torch.from_numpy(grid)[None, None], size=d["size"], mode="bilinear")
    near = ndimage.binary_dilation(d["mask"], iterations=4)
    return bool(near.ravel()[int(full.argmax())])


def rank(data: list[dict], n: int) -> None:
    aucs, where = defaultdict(list), defaultdict(list)
    for refs, test in draws(data, 5, n, 0):
        memory = torch.cat([data[i]["rows"] for i in refs])
        scores = {}
        for i in test:
            grid = cells(memory, data[i])
            scores[i] = grid.max()
            if (on := located(data[i], grid)) is not None:
                where[data[i]["label"]].append(on)
                where["all"].append(on)
        good = [scores[i] for i in test if data[i]["label"] == "free"]
        for label in [*sorted({data[i]["label"] for i in test} - {"free"}), "all"]:
            bad = [
                s
                for i, s in scores.items()
                if data[i]["label"] != "free" and label in ("all", data[i]["label"])
            ]
            truth = np.r_[np.zeros(len(good)), np.ones(len(bad))]
            aucs[label].append(roc_auc(np.array(good + bad), truth))
    for label in aucs:
        print(f"{label}: AUROC {np.mean(aucs[label]):.3f}, located {np.mean(where[label]):.3f}")


def calibration(data: list[dict], n: int) -> None:
    """Each rule's statistic of the good frames' leave-one-out maps, the smallest margin
    with at most 5% false alarms over the draws, and its recall."""
    stats, scored = defaultdict(list), []
    for refs, test in draws(data, 5, n, 7):
        rows = [data[i]["rows"] for i in refs]
        maxima, pooled = [], []
        for j, i in enumerate(refs):
            grid = cells(torch.cat([r for q, r in enumerate(rows) if q != j]), data[i])
            maxima.append(grid.max())
            pooled.append(grid.ravel())
        every = np.concatenate(pooled)
        for name, value in {
            "highest": max(maxima), "mean": np.mean(maxima), "median": np.median(maxima),
            "cells q99": np.quantile(every, 0.99), "cells q99.9": np.quantile(every, 0.999),
            "cells mean + 3 sd": every.mean() + 3 * every.std(),
        }.items():  # fmt: skip
            stats[name].append(value)
        memory = torch.cat(rows)
        score = np.array([cells(memory, data[i]).max() for i in test])
        bad = np.array([data[i]["label"] != "free" for i in test])
        scored.append((score[~bad], score[bad]))
    for name, values in stats.items():
        for margin in np.arange(0.8, 4.01, 0.05):
            alarms = [(g > margin * v).mean() for (g, _), v in zip(scored, values, strict=True)]
            if np.mean(alarms) <= 0.05:
                caught = [(b > margin * v).mean() for (_, b), v in zip(scored, values, strict=True)]
                recall = np.mean(caught)
                print(f"{name}: margin {margin:.2f}, false alarms {np.mean(alarms):.3f} (worst "
                      f"{max(alarms):.3f}), recall {recall:.3f}")  # fmt: skip
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["cache", "rank", "calibration"])
    parser.add_argument("features", type=Path, nargs="?")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args()
    if args.what == "cache":
        cache(args.checkpoint, args.out)
        return
    data = torch.load(args.features, weights_only=False)
    for d in data:
        d["rows"] = d["rows"].float()
    half = [d for d in data if d["group"].isdigit() and int(d["group"]) % 2 == 0]
    (rank if args.what == "rank" else calibration)(half, args.draws)


if __name__ == "__main__":
    main()

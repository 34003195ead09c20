# ruff: noqa  (a dropped experiment kept for the record: docs/experiments.md, Frames, round 5)
"""Scratch: frame scoring variants on the development half (K=5, 5 draws, seed 0)."""

from __future__ import annotations
import sys, time
from pathlib import Path
import numpy as np, torch

sys.path.insert(0, "/work/main")
from model import load_embedder
from model.evaluate_frames import load_frames, draw_split, localisation, mask_centre
from model.frames import (
    PatchFeatures,
    GoodSurfaceMemory,
    calibrate_threshold,
    gaussian_smooth,
    SMOOTH_CELLS,
    AnomalyGrid,
    subsample,
)
from model.metrics import roc_auc
import faiss
import os
import model.frames

model.frames.EDGE_WEIGHT = float(os.environ.get("EDGE", "0"))

DATA = Path("/work/shared/data/magnetic-tile")
half = sys.argv[1] if len(sys.argv) > 1 else "even"
ckpt = sys.argv[2] if len(sys.argv) > 2 else "/work/main/model/weights/frames.pt"
stages = tuple(int(s) for s in (sys.argv[3] if len(sys.argv) > 3 else "1,2").split(","))
scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
parity = 0 if half == "even" else 1
samples = [s for s in load_frames(DATA, "free") if s.group.isdigit() and int(s.group) % 2 == parity]
emb = load_embedder(Path(ckpt), device="cpu")
ext = PatchFeatures(emb, scale, stages)
t = time.time()
feats = {s.path: ext(s.image) for s in samples}
ext_half = PatchFeatures(emb, scale * 0.5, stages)
feats_half = {s.path: ext_half(s.image) for s in samples}
print(f"features {time.time() - t:.0f}s, dim {next(iter(feats.values())).rows.shape}")


def knn(mem_rows, rows, k):
    index = faiss.IndexFlatL2(mem_rows.shape[1])
    index.add(mem_rows.numpy())
    d, _ = index.search(np.ascontiguousarray(rows.numpy()), k)
    return np.sqrt(np.maximum(d, 0)).mean(axis=1)


def grid_of(dist, f):
    g = torch.from_numpy(dist.astype(np.float32)).view(*f.grid)[None, None]
    return gaussian_smooth(g, SMOOTH_CELLS)[0, 0].numpy()


VARIANTS = {
    "base": dict(k=1, size=5000, score="max"),
    "border-aware": dict(k=1, size=10**9, score="max", border=True),
    "scales-mean": dict(k=1, size=5000, score="max", scales="mean"),
    "scales-max": dict(k=1, size=5000, score="max", scales="max"),
    "self-R2": dict(k=1, size=5000, score="max", self=2, combine="self"),
    "self-R4": dict(k=1, size=5000, score="max", self=4, combine="self"),
    "min-R2": dict(k=1, size=5000, score="max", self=2, combine="min"),
    "min-R4": dict(k=1, size=5000, score="max", self=4, combine="min"),
    "mean-R4": dict(k=1, size=5000, score="max", self=4, combine="mean"),
}


def border_class(f):
    h, w = f.grid
    r = torch.arange(h).repeat_interleave(w)
    c = torch.arange(w).repeat(h)
    d = torch.minimum(torch.minimum(r, h - 1 - r), torch.minimum(c, w - 1 - c))
    return d.clamp(max=2).numpy()


def self_distance(f, radius):
    """Each cell's distance to the nearest cell of its own frame more than `radius` cells away."""
    h, w = f.grid
    x = f.rows
    d = torch.cdist(x, x)
    r = torch.arange(h).repeat_interleave(w)
    c = torch.arange(w).repeat(h)
    near = ((r[:, None] - r[None]).abs() <= radius) & ((c[:, None] - c[None]).abs() <= radius)
    d[near] = float("inf")
    return d.min(dim=1).values.numpy()


import os

if os.environ.get("ONLY"):
    VARIANTS = {k: v for k, v in VARIANTS.items() if k in os.environ["ONLY"].split(",")}
rng = np.random.default_rng(0)
res = {v: [] for v in VARIANTS}
for d in range(5):
    draw = draw_split(samples, "free", 5, rng, 300)
    test = draw.test
    defective = np.array([s.label != "free" for s in test])
    labels = np.array([s.label for s in test])
    refs = [feats[s.path] for s in draw.good_refs]
    allrows = torch.cat([f.rows for f in refs])
    for name, v in VARIANTS.items():
        mem = subsample(allrows, v["size"], 0) if v["size"] < len(allrows) else allrows
        grids = []
        for s in test:
            f = feats[s.path]
            if v.get("border"):
                dist = np.zeros(len(f.rows))
                fb = border_class(f)
                for b in range(3):
                    mrows = torch.cat(
                        [
                            feats[r.path].rows[border_class(feats[r.path]) == b]
                            for r in draw.good_refs
                        ]
                    )
                    if (fb == b).any():
                        dist[fb == b] = knn(mrows, f.rows[fb == b], 1)
            else:
                dist = knn(mem, f.rows, v["k"])
            if "self" in v:
                own = self_distance(f, v["self"])
                dist = {"self": own, "min": np.minimum(dist, own), "mean": (dist + own) / 2}[
                    v["combine"]
                ]
            grid = grid_of(dist, f)
            if "scales" in v:
                fh = feats_half[s.path]
                memh = torch.cat([feats_half[r.path].rows for r in draw.good_refs])
                gh = torch.from_numpy(grid_of(knn(memh, fh.rows, 1), fh))[None, None]
                gh = torch.nn.functional.interpolate(
                    gh, size=grid.shape, mode="bilinear", align_corners=False
                )[0, 0].numpy()
                grid = (grid + gh) / 2 if v["scales"] == "mean" else np.maximum(grid, gh)
            grids.append(grid)
        if v["score"] == "max":
            sc = np.array([g.max() for g in grids])
        elif v["score"] == "max-median":
            sc = np.array([g.max() - np.median(g) for g in grids])
        elif v["score"] == "max/median":
            sc = np.array([g.max() / np.median(g) for g in grids])
        else:
            sc = np.array([np.sort(g.ravel())[-max(1, g.size // 100) :].mean() for g in grids])
        maps = [AnomalyGrid(g, feats[s.path].size).full() for g, s in zip(grids, test)]
        loc = localisation(maps, test, defective, np.random.default_rng(1))["located"]
        per = {
            c: roc_auc(
                np.concatenate([sc[~defective], sc[labels == c]]),
                np.concatenate([np.zeros((~defective).sum()), np.ones((labels == c).sum())]),
            )
            for c in sorted(set(labels) - {"free"})
            if (labels == c).any()
        }
        # threshold at 5% false alarms on this draw's good test frames (an oracle: how far calibration could go)
        thr = np.quantile(sc[~defective], 0.95)
        res[name].append((roc_auc(sc, defective), loc, float((sc[defective] > thr).mean()), per))
for name, runs in res.items():
    au = np.mean([r[0] for r in runs])
    lo = np.mean([r[1] for r in runs])
    rc = np.mean([r[2] for r in runs])
    per = {c: np.mean([r[3][c] for r in runs if c in r[3]]) for c in runs[0][3]}
    print(
        f"{name:12s} AUROC {au:.3f} located {lo:.3f} score {au + lo:.3f} recall@5%FA(oracle) {rc:.3f} | "
        + " ".join(f"{c} {x:.2f}" for c, x in per.items())
    )

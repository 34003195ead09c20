# ruff: noqa  (a dropped experiment kept for the record: docs/experiments.md, Frames, round 5)
"""Scratch: calibration rules on one half (K=5, 5 draws, seed 0): FA and recall per rule and margin."""

from __future__ import annotations
import sys
from pathlib import Path
import numpy as np, torch

sys.path.insert(0, "/work/main")
from model import load_embedder
from model.evaluate_frames import load_frames, draw_split
from model.frames import PatchFeatures, GoodSurfaceMemory, subsample

DATA = Path("/work/shared/data/magnetic-tile")
half = sys.argv[1]
ckpt = sys.argv[2]
k = int(sys.argv[3]) if len(sys.argv) > 3 else 5
parity = 0 if half == "even" else 1
samples = [s for s in load_frames(DATA, "free") if s.group.isdigit() and int(s.group) % 2 == parity]
emb = load_embedder(Path(ckpt), device="cpu")
ext = PatchFeatures(emb, 1.0, (1, 2))
feats = {s.path: ext(s.image) for s in samples}
rng = np.random.default_rng(0)
RULES = {
    "frame-max": [1.0, 1.1, 1.25, 1.3, 1.4, 1.5, 2.0],
    "frame-mean": [1.1, 1.25, 1.4, 1.5, 1.75, 2.0],
    "cell-q99": [1.1, 1.25, 1.4, 1.5, 1.75, 2.0],
    "cell-q999": [1.0, 1.1, 1.25, 1.4, 1.5, 1.75],
}
out = {(r, m): [] for r, ms in RULES.items() for m in ms}
for d in range(5):
    draw = draw_split(samples, "free", k, rng, 300)
    refs = [feats[s.path] for s in draw.good_refs]
    mem = GoodSurfaceMemory.from_frames(refs)
    frame_scores, cells = [], []
    for i, f in enumerate(refs):
        others = torch.cat([r.rows for j, r in enumerate(refs) if j != i])
        g = GoodSurfaceMemory(subsample(others, 5000, 0)).score([f]).cells
        frame_scores.append(g.max())
        cells.append(g.ravel())
    cells = np.concatenate(cells)
    base = {
        "frame-max": max(frame_scores),
        "frame-mean": float(np.mean(frame_scores)),
        "cell-q99": float(np.quantile(cells, 0.99)),
        "cell-q999": float(np.quantile(cells, 0.999)),
    }
    sc = np.array([mem.score([feats[s.path]]).score for s in draw.test])
    bad = np.array([s.label != "free" for s in draw.test])
    for r, m in out:
        t = base[r] * m
        out[(r, m)].append(((sc[~bad] > t).mean(), (sc[bad] > t).mean()))
for (r, m), v in out.items():
    fa = np.array([a for a, _ in v])
    rc = np.array([b for _, b in v])
    print(f"{r:10s} x{m:<5} FA {fa.mean():.3f} (max {fa.max():.3f}) recall {rc.mean():.3f}")

"""Frames: local features at a fixed scale, a good-surface memory, anomaly maps, and
``evaluate-frames`` on a small surface made here (noise texture, bright spots)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model import load_embedder
from model.evaluate_frames import evaluate_frames, markdown
from model.frames import FrameInspector, GoodSurfaceMemory, PatchFeatures, calibrate_threshold

KEYS = ("image_auroc", "false_alarm_rate", "recall", "pixel_auroc", "located", "naming_accuracy")


def texture(rng: np.random.Generator, size: tuple[int, int] = (120, 180)) -> np.ndarray:
    return np.clip(rng.normal(128, 18, size), 0, 255)


def write_surface(folder, rng: np.random.Generator) -> None:
    """12 good frames, and 5 with a bright spot (and its mask); a group per frame."""
    rows = ["file,group"]
    (folder / "good").mkdir(parents=True)
    for i in range(12):
        Image.fromarray(texture(rng).astype(np.uint8)).save(folder / "good" / f"g{i}.png")
        rows.append(f"good/g{i}.png,{i}")
    for label in ("spot",):
        (folder / label).mkdir()
        (folder / "masks" / label).mkdir(parents=True)
        for i in range(5):
            image, mask = texture(rng), np.zeros((120, 180), bool)
            r, c = rng.integers(20, 100), rng.integers(20, 160)
            mask[r - 8 : r + 8, c - 8 : c + 8] = True
            image[mask] = 250
            Image.fromarray(image.astype(np.uint8)).save(folder / label / f"s{i}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                folder / "masks" / label / f"s{i}.png"
            )
            rows.append(f"{label}/s{i}.png,{100 + i}")
    (folder / "groups.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(device="cpu")


def test_a_spot_on_good_surface_stands_out_where_it_is(embedder):
    rng = np.random.default_rng(0)
    extract = PatchFeatures(embedder)
    good = [extract(Image.fromarray(texture(rng).astype(np.uint8))) for _ in range(3)]
    spotted = texture(rng)
    spotted[50:66, 90:106] = 250
    frame = extract(Image.fromarray(spotted.astype(np.uint8)))
    memory = GoodSurfaceMemory.from_frames(good)
    amap = memory.anomaly_map(frame)
    assert amap.shape == (120, 180)  # the frame's own size: never squashed
    row, col = np.unravel_index(int(np.argmax(amap)), amap.shape)
    assert 42 <= row <= 74 and 82 <= col <= 114
    threshold = calibrate_threshold(good)
    assert amap.max() > threshold > 0
    assert calibrate_threshold(good[:1]) > 0  # one good frame: its halves


def test_evaluate_frames_writes_the_contracted_keys(embedder, tmp_path):
    write_surface(tmp_path / "surface", np.random.default_rng(1))
    result = evaluate_frames(embedder, tmp_path / "surface", "good", [1, 3], draws=2, seed=0)
    json.dumps(result)  # plain JSON
    for k in ("1", "3"):
        row = result["by_good_references"][k]
        for key in KEYS:
            assert key in row and f"{key}_ci95" in row, key
        assert row["image_auroc"] > 0.9  # bright spots on noise are plain to see
        assert row["located"] > 0.5
    whole = result["rules"]["whole-image"]["by_good_references"]["3"]
    assert whole["pixel_auroc"] is None and 0.0 <= whole["image_auroc"] <= 1.0
    assert "| patch-memory | 3 |" in markdown(result)


def test_a_long_strip_is_read_in_bands_that_join_without_seams(embedder):
    rng = np.random.default_rng(2)
    extract = PatchFeatures(embedder, band_pixels=200 * 1344)  # bands of 1024 + margins
    strip = Image.fromarray(texture(rng, (200, 3000)).astype(np.uint8))
    assert extract.is_banded(strip)
    whole = extract(strip)
    bands = list(extract.bands(strip))
    assert len(bands) == 3 and all(b.axis == 1 for b in bands)
    joined = torch.cat([b.rows.view(*b.grid, -1) for b in bands], dim=1)
    assert joined.shape == whole.rows.view(*whole.grid, -1).shape
    # the network standardises each band by its own statistics: close, not equal
    difference = (joined - whole.rows.view(*whole.grid, -1)).abs().mean()
    assert difference < 0.1 * whole.rows.abs().mean()


def test_the_frame_inspector_finds_names_and_draws_what_differs(embedder):
    rng = np.random.default_rng(3)
    inspector = FrameInspector(embedder, band_pixels=150 * 800)  # the strip in bands
    good = [Image.fromarray(texture(rng, (160, 400)).astype(np.uint8)) for _ in range(3)]
    rows, threshold = inspector.build(good, 1.0)
    assert rows.shape[1] > 0 and threshold > 0
    spotted = texture(rng, (160, 400))
    spotted[70:86, 300:316] = 250
    strip = texture(rng, (150, 2000))
    strip[60:76, 1800:1816] = 250
    images = [
        Image.fromarray(a.astype(np.uint8)) for a in (texture(rng, (160, 400)), spotted, strip)
    ]
    clean, found, far = inspector.inspect(images, rows, threshold, 1.0)
    assert clean.regions == [] and clean.grid.score <= threshold
    for verdict, (row, col) in ((found, (78, 308)), (far, (68, 1808))):
        top = verdict.regions[0]
        assert top.x <= col <= top.x + top.width and top.y <= row <= top.y + top.height
        assert abs(top.peak[0] - row) <= 12 and abs(top.peak[1] - col) <= 12
        assert verdict.crops[0].size == (96, 96)  # named at the model's scale
    heat = far.grid.heat_map(threshold)
    assert heat.mode == "RGBA" and heat.size == far.grid.cells.shape[::-1]
    # at half the scale the model sees a quarter of the pixels; the spot still stands out
    half_rows, half_threshold = inspector.build(good, 0.5)
    (half,) = inspector.inspect([images[1]], half_rows, half_threshold, 0.5)
    assert half.grid.size == (160, 400) and half.regions


def test_train_frames_writes_a_checkpoint_the_inspector_reads(tmp_path):
    from model.frames import load_frame_inspector
    from model.surface import ROOT, train_frames

    recipe = (ROOT / "model" / "recipes" / "frames" / "surface.toml").read_text()
    recipe = recipe.replace("steps = 600", "steps = 2").replace("batch = 16", "batch = 4")
    recipe = recipe.replace('"../shared/data/neu-cls"', '"data/sample"')
    (tmp_path / "tiny.toml").write_text(recipe)
    path = train_frames(str(tmp_path / "tiny.toml"), tmp_path / "frames.pt")
    inspector = load_frame_inspector(path, "cpu")
    assert inspector.reader(1.0).normalize  # trained for the memory: unit features
    assert inspector.embedder.meta["frame_features"]["steps"] == 2
    rng = np.random.default_rng(4)
    good = [Image.fromarray(texture(rng).astype(np.uint8)) for _ in range(2)]
    rows, threshold = inspector.build(good, 1.0)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4) and threshold > 0

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
from model.frames import (
    EDGE_CELLS,
    EDGE_WEIGHT,
    FrameInspector,
    GoodSurfaceMemory,
    PatchFeatures,
    calibrate_threshold,
    with_edges,
)

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
    recipe = recipe.replace("steps = 1500", "steps = 2").replace("batch = 16", "batch = 4")
    recipe = recipe.replace('"../shared/data/neu-cls"', '"data/sample"')
    (tmp_path / "tiny.toml").write_text(recipe)
    path = train_frames(str(tmp_path / "tiny.toml"), tmp_path / "frames.pt")
    inspector = load_frame_inspector(path, "cpu")
    assert inspector.reader(1.0).normalize  # trained for the memory: unit features
    assert inspector.embedder.meta["frame_features"]["steps"] == 2
    rng = np.random.default_rng(4)
    good = [Image.fromarray(texture(rng).astype(np.uint8)) for _ in range(2)]
    rows, threshold = inspector.build(good, 1.0)
    features = rows[:, : -(EDGE_CELLS + 1)]  # the rest: the cell's distance to an edge
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-4) and threshold > 0


def test_training_views_differ_by_a_light_ramp_and_procedural_surfaces_are_new_textures():
    from model.surface import photometric, procedural_surfaces

    g = torch.Generator().manual_seed(0)
    flat = torch.full((64, 1, 32, 48), 128.0)
    lit = photometric(flat, g, illumination=40)
    # each view a plane: its left and right edges differ by at most the ramp (and noise)
    across = (lit[..., -1].mean(dim=2) - lit[..., 0].mean(dim=2)).abs()
    assert float(across.max()) > 10 and float(across.max()) < 40 + 6
    plain = photometric(flat, g)
    assert float((plain[..., -1].mean(dim=2) - plain[..., 0].mean(dim=2)).abs().max()) < 6
    surfaces = procedural_surfaces(3, 64, g)
    assert surfaces.shape == (3, 1, 64, 64) and surfaces.dtype == torch.uint8
    assert not torch.equal(surfaces[0], surfaces[1]) and float(surfaces.float().std()) > 1


def test_a_cell_is_described_with_its_distance_to_the_frame_edge_band_or_whole():
    rows = torch.zeros(6 * 4, 3)
    whole = with_edges(rows, (6, 4), 0, 0, 6)[:, 3:].argmax(dim=1).view(6, 4)
    assert whole.tolist() == [
        [0, 0, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 0],
    ]
    assert float(with_edges(rows, (6, 4), 0, 0, 6)[:, 3:].sum(dim=1).min()) == EDGE_WEIGHT
    # a middle band of a long strip lying along its width (axis 1): no end in it
    band = with_edges(torch.zeros(5 * 7, 3), (5, 7), 1, 10, None)[:, 3:].argmax(dim=1).view(5, 7)
    assert band[2].tolist() == [2] * 7 and band[0].tolist() == [0] * 7
    assert band[1].tolist() == [1] * 7
    # the strip's last band: its last columns are the frame's end
    last = with_edges(torch.zeros(5 * 7, 3), (5, 7), 1, 10, 17)[:, 3:].argmax(dim=1).view(5, 7)
    assert last[2].tolist() == [2, 2, 2, 2, 2, 1, 0]


def test_the_threshold_statistic_is_the_good_cells_mean_plus_their_spread():
    from model.frames import CALIBRATION_SPREAD, high_point

    rng = np.random.default_rng(3)
    grids = [rng.gamma(2.0, 0.1, size=shape) for shape in ((25, 38), (38, 25), (1, 900))]
    every = np.concatenate([g.ravel() for g in grids])
    expected = every.mean() + CALIBRATION_SPREAD * every.std()
    assert high_point(every.astype(np.float32)) == pytest.approx(expected, rel=1e-5)
    assert high_point(every, 0.0) == pytest.approx(every.mean(), rel=1e-5)
    # one outlying cell of a frame (three times the highest) moves it little
    assert high_point(np.append(every, every.max() * 3)) < expected * 1.1

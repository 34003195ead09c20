"""The model package: networks, loss, metrics, checkpoints, embedding, recipes and training."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model import DEFAULT_CHECKPOINT, FIVE_VIEW_CHECKPOINT, load_embedder
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import (
    DistillConfig,
    ViewsConfig,
    apply_overrides,
    config_from_recipe,
    load_recipe,
    recipe_names,
)
from model.losses import contrastive_loss
from model.metrics import accuracy_at, best_threshold, roc_auc
from model.networks import Deshpande2020, build_network
from tests.conftest import ROOT, SAMPLE

NEU_TRAIN_CLASSES = ["inclusion", "patches", "rolled-in_scale"]


def test_paper_network_matches_the_paper():
    net = Deshpande2020()
    convs = [m for m in net.cnn if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 4, (3, 3), (1, 1)),
        (4, 8, (3, 3), (1, 1)),
        (8, 8, (3, 3), (1, 1)),
    ]
    linears = [m for m in net.fc if isinstance(m, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [
        (80000, 500),
        (500, 500),
        (500, 5),
    ]
    assert net.cnn(torch.zeros(1, 1, 100, 100)).shape == (1, 8, 100, 100)  # size kept
    a, b = net(torch.zeros(2, 1, 100, 100), torch.ones(2, 1, 100, 100))
    assert a.shape == b.shape == (2, 5)


def test_texture_network_embeds_on_the_unit_sphere():
    net = build_network("texture_net").eval()
    codes = net.forward_once(torch.randn(3, 1, 100, 100))
    assert codes.shape == (3, 128)
    assert torch.allclose(codes.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("compact_texture")  # retired: the tag experiments/round-01 has it


def test_contrastive_loss_pulls_same_and_pushes_different_to_the_margin():
    d = torch.tensor([0.0, 1.0, 3.0, 1.0])
    different = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # same: d^2 -> 0, 1; different: max(0, 2-d)^2 -> 0 (beyond margin), 1
    assert contrastive_loss(d, different, margin=2.0).item() == pytest.approx((0 + 1 + 0 + 1) / 4)


def test_threshold_and_auc_on_known_distances():
    distances = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 1.0])
    different = np.array([False, False, False, True, True, True])
    threshold, accuracy = best_threshold(distances, different)
    assert 0.3 < threshold < 0.8 and accuracy == 1.0
    assert roc_auc(distances, different) == 1.0
    assert roc_auc(np.ones(6), different) == 0.5  # a constant distance is chance
    assert accuracy_at(distances, different, 0.0) == 0.5


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    net = build_network("texture_net", embedding_dim=16).eval()
    meta = {
        "arch": "texture_net",
        "arch_kwargs": {"embedding_dim": 16},
        "input_size": 100,
        "embedding_dim": 16,
        "threshold": 0.42,
        "metrics": {"auc": np.float64(0.9)},
    }
    path = save_checkpoint(tmp_path / "c.pt", net, meta)
    payload = torch.load(path, weights_only=True)  # plain types only, or this raises
    assert payload["meta"]["threshold"] == 0.42
    loaded, loaded_meta = load_checkpoint(path)
    x = torch.randn(2, 1, 100, 100)
    assert torch.equal(loaded.forward_once(x), net.forward_once(x))
    assert json.dumps(loaded_meta)


def test_default_checkpoint_is_small_and_trained_on_three_classes_only():
    assert DEFAULT_CHECKPOINT.stat().st_size < 5 * 1024 * 1024
    embedder = load_embedder(device="cpu")
    assert sorted(embedder.meta["train_classes"]) == ["inclusion", "patches", "rolled-in_scale"]
    assert embedder.threshold > 0 and embedder.version.startswith(embedder.arch)
    assert "python -m model train" in embedder.meta["training"]["command"]


def test_default_checkpoint_is_a_one_pass_student_of_the_five_view_model():
    embedder = load_embedder(device="cpu")
    meta = embedder.meta
    assert (meta["views"], embedder.input_size, meta["arch_kwargs"]) == (
        "whole",
        200,
        {"input_size": 200, "fine_stage1": True},  # first stage at 50x50 (thirteenth round)
    )
    assert meta["training"]["objective"] == "distill"
    assert "model/weights/five-view.pt" in meta["training"]["teacher"]
    teacher = load_embedder(FIVE_VIEW_CHECKPOINT, device="cpu")
    assert (teacher.meta["views"], teacher.input_size) == ("whole+quadrants", 200)
    assert teacher.meta["train_classes"] == meta["train_classes"]
    # each is centred on the training images' mean code as it sees them
    assert len(meta["center"]) == len(teacher.meta["center"]) == embedder.embedding_dim
    # the readable metadata beside each checkpoint is its own, not an older model's
    for model, path in ((embedder, DEFAULT_CHECKPOINT), (teacher, FIVE_VIEW_CHECKPOINT)):
        assert json.loads(path.with_suffix(".json").read_text()) == model.meta
    assert FIVE_VIEW_CHECKPOINT.stat().st_size < 5 * 1024 * 1024


SHIPPED_EMBEDDINGS = ROOT / "tests" / "data" / "shipped_embeddings.json"


@pytest.mark.parametrize("name", ["default.pt", "five-view.pt"])
def test_shipped_checkpoints_embed_as_when_they_were_recorded(name):
    # Codes recorded from the shipped checkpoints before the dropped experiments'
    # code left model/: whatever changes there, the references a line has stored
    # must still match what the same checkpoint embeds today.
    recorded = json.loads(SHIPPED_EMBEDDINGS.read_text())
    images = []
    for spec in recorded["images"]:
        with Image.open(SAMPLE / spec["file"]) as image:
            image.load()
            images.append(image.crop(tuple(spec["crop"])) if spec["crop"] else image.copy())
    embedder = load_embedder(DEFAULT_CHECKPOINT.with_name(name), device="cpu")
    expected = recorded["checkpoints"][name]
    assert embedder.version == expected["version"]
    codes = embedder.embed(images)
    assert codes.dtype == np.float32
    assert np.allclose(codes, np.array(expected["embeddings"], dtype=np.float32), atol=1e-5)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (200, 200), (120, 30, 200)),
        Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)),  # 16-bit
        Image.new("L", (1, 1), 7),  # tiny
        Image.new("L", (640, 80), 200),  # non-square
        Image.new("CMYK", (50, 50), (0, 50, 100, 0)),
        Image.new("P", (30, 30), 3),
        Image.new("RGBA", (40, 40), (0, 0, 0, 0)),
    ],
    ids=["rgb", "16-bit", "tiny", "non-square", "cmyk", "palette", "rgba"],
)
def test_embed_accepts_any_mode_and_size(image):
    embedder = load_embedder(device="cpu")
    codes = embedder.embed([image, Image.open(sorted(SAMPLE.glob("*/*.png"))[0])])
    assert codes.shape == (2, embedder.embedding_dim) and codes.dtype == np.float32
    assert np.isfinite(codes).all()


def test_16_bit_is_scaled_not_clipped():
    from model.preprocess import to_grayscale_array

    mid = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert to_grayscale_array(mid)[0, 0] == 128


def test_distance_is_euclidean_for_vectors_and_matrices():
    embedder = load_embedder(device="cpu")
    a, b = np.array([0.0, 3.0]), np.array([4.0, 0.0])
    assert embedder.distance(a, b) == pytest.approx(5.0)
    matrix = embedder.distance(np.stack([a, b]), np.stack([a, b, a]))
    assert matrix.shape == (2, 3) and matrix[0, 1] == pytest.approx(5.0)


# What the dropped experiments' options were when the shipped checkpoints were
# trained: every one off, so leaving them out of the code leaves these recipes whole.
RETIRED_OPTIONS_OFF = {
    "pool_max": False,
    "quadrant_codes": False,
    "teacher_views": "whole+quadrants",
    "mixup": 0.0,
    "texture_weight": 0.0,
    "local_views": 0,
    "synthetic_model": "basic",
    "synthetic_backgrounds": 0.0,
    "embedding_dim": None,
    "width": None,
    "keep": "last",
}


@pytest.mark.parametrize("name", ["default", "five-view"])
def test_a_shipped_checkpoints_recipe_holds_what_it_was_trained_with(name):
    from model.train import network_kwargs

    config = config_from_recipe(load_recipe(name), name)
    meta = json.loads(DEFAULT_CHECKPOINT.with_name(f"{name}.json").read_text())
    trained = meta["training"]  # the options of the command that made it, flat
    assert network_kwargs(config) == meta["arch_kwargs"]
    assert (config.network.arch, config.objective.name) == (meta["arch"], trained["objective"])
    assert config.inference_views == meta["views"] and config.center == trained["center"]
    for key in ("train_classes", "epochs", "lr", "weight_decay", "schedule", "seed"):
        assert getattr(config, key) == trained[key], key
    assert config.val_fraction == trained["val_fraction"]
    for f in fields(config.objective):
        value = getattr(config.objective, f.name)
        recorded = trained[f.name]
        assert (str(value) if f.name == "teacher" else value) == (
            recorded[0] if f.name == "teacher" else recorded
        ), f.name
    assert {k: trained[k] for k in RETIRED_OPTIONS_OFF} == RETIRED_OPTIONS_OFF
    if isinstance(config.objective, DistillConfig):
        assert trained["blur"] == 0.0  # the student's own images are sharp


def test_recipe_values_are_checked_and_can_be_overridden():
    assert {"default", "five-view", "paper-lr0.0005", "paper-lr0.005", "conventional-cnn"} <= set(
        recipe_names()
    )
    recipe = load_recipe("default")
    changed = apply_overrides(recipe, ["distill.shading=1.0", "center=false", "network.arch=x"])
    assert changed["distill"]["shading"] == 1.0 and changed["center"] is False
    assert recipe["distill"]["shading"] == 0.5  # the recipe itself is left as it was
    config = config_from_recipe(apply_overrides(recipe, ["epochs=2", "distill.per_class=4"]))
    assert config.epochs == 2 and config.objective == replace(
        config_from_recipe(recipe).objective, per_class=4
    )
    assert config_from_recipe(apply_overrides(recipe, ["lr=1"])).lr == 1.0  # an int is a float
    for bad, message in [
        (["distill.mixup=0.5"], "unknown setting mixup"),
        (["distill.per_class=many"], "per_class must be int"),
        (["center=1"], "center must be bool"),
        (["objective=views"], "table distill belongs to another objective"),
        (["objective=gan"], "objective must be one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            config_from_recipe(apply_overrides(recipe, bad))
    del recipe["distill"]["teacher"]
    with pytest.raises(ValueError, match="teacher must be given"):
        config_from_recipe(recipe)
    with pytest.raises(ValueError, match="no recipe 'fast'"):
        load_recipe("fast")


def sample_distillation(per_class: int = 4, **settings):
    """A distillation objective on the bundled sample, taught by the five-view model."""
    from model.data import list_class_images, split_per_class
    from model.objectives import DistillObjective
    from model.train import load_teacher

    teacher = load_teacher(FIVE_VIEW_CHECKPOINT)
    train_files, val_files = split_per_class(list_class_images(SAMPLE, NEU_TRAIN_CLASSES), 0.2, 0)
    config = DistillConfig(teacher=FIVE_VIEW_CHECKPOINT, per_class=per_class, **settings)
    objective = DistillObjective(
        teacher,
        train_files,
        val_files,
        size=200,
        settings=config,
        seed=0,
        device=torch.device("cpu"),
    )
    return objective, teacher


def test_multi_view_embedding_averages_the_whole_image_and_its_quadrants(tmp_path):

    from model.networks import CenteredEmbedding, MultiViewEmbedding, with_views

    torch.manual_seed(0)
    tower = build_network("texture_net", embedding_dim=16).eval()
    net = with_views(tower, "whole+quadrants")
    assert isinstance(net, MultiViewEmbedding) and net.input_size == 200
    x = torch.randn(3, 1, 200, 200)
    views = [F.interpolate(x, size=(100, 100), mode="bilinear", antialias=True)]
    views += [x[..., :100, :100], x[..., :100, 100:], x[..., 100:, :100], x[..., 100:, 100:]]
    with torch.inference_mode():
        expected = F.normalize(torch.stack([tower.forward_once(v) for v in views]).mean(0), dim=1)
        assert torch.allclose(net.forward_once(x), expected, atol=1e-5)
        many = torch.randn(MultiViewEmbedding.SMALL_BATCH, 1, 200, 200)  # one pass per view
        assert torch.allclose(net.forward_once(many)[:3], net.forward_once(many[:3]), atol=1e-5)
        # a checkpoint keeps the tower's weights and rebuilds the views from its metadata
        meta = {
            "arch": "texture_net",
            "arch_kwargs": {"embedding_dim": 16},
            "views": "whole+quadrants",
            "input_size": 200,
            "threshold": 0.5,
        }
        loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.pt", net, meta))
        assert isinstance(loaded, MultiViewEmbedding)
        assert torch.allclose(loaded.forward_once(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="unknown views"):
        with_views(tower, "whole+mid4+quadrants")  # nine views: retired
    with pytest.raises(ValueError, match="must normalise"):  # the paper's 5-d codes are not
        with_views(build_network("deshpande2020"), "whole+quadrants")
    with pytest.raises(ValueError, match="must normalise"):
        CenteredEmbedding(build_network("deshpande2020"), torch.zeros(5))


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("texture_net", {}),
        ("texture_net", {"input_size": 200, "fine_stage1": True}),
        ("deshpande2020", {}),
    ],
)
def test_inference_optimizations_keep_the_outputs(arch, kwargs):
    import copy

    from model.networks import StridedMaxPool2x2, TextureNet, optimize_for_inference

    torch.manual_seed(0)
    net = build_network(arch, **kwargs)
    size = net.input_size
    net.train()
    net.forward_once(torch.randn(8, 1, size, size))  # give batch norm running statistics
    net.eval()
    fast = optimize_for_inference(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.MaxPool2d) for m in fast.modules())
    # the two-pass statistics replace torch.std at inference only
    assert all(m.fast_statistics for m in fast.modules() if isinstance(m, TextureNet))
    assert not any(m.fast_statistics for m in net.modules() if isinstance(m, TextureNet))
    x = torch.randn(4, 1, size, size) * torch.rand(4, 1, 1, 1) + torch.rand(4, 1, 1, 1)
    with torch.inference_mode():
        assert torch.allclose(net.forward_once(x), fast.forward_once(x), atol=1e-5)
    odd = torch.randn(2, 3, 25, 25)
    assert torch.equal(StridedMaxPool2x2()(odd), torch.nn.MaxPool2d(2)(odd))


def test_a_fine_first_stage_keeps_the_weights_and_doubles_its_resolution():
    plain = build_network("texture_net", input_size=200)
    fine = build_network("texture_net", input_size=200, fine_stage1=True)
    # same weights by name and shape: a fine student starts from its teacher
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in fine.state_dict().items()
    }
    fine.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 200, 200)
    with torch.no_grad():
        s1, s2, s3 = fine.feature_maps(x)
        plain_s1 = plain.feature_maps(x)[0]
    assert s1.shape[-1] == 50 and plain_s1.shape[-1] == 25
    assert s2.shape[-1] == 25 and s3.shape[-1] == 12
    assert fine.forward_once(x).shape == (2, 128)


def test_synthetic_classes_are_textures_whose_images_share_their_statistics():
    from model.synthetic import synthetic_batch

    def draw(seed: int) -> list[torch.Tensor]:
        return synthetic_batch(6, 4, 64, torch.Generator().manual_seed(seed))

    groups = draw(3)
    assert all(g.shape == (4, 1, 64, 64) and g.dtype == torch.uint8 for g in groups)
    assert all(torch.equal(a, b) for a, b in zip(groups, draw(3), strict=True))  # seeded
    assert not torch.equal(groups[0], draw(4)[0])
    # a class's images are new samples (not copies), yet alike: described by their
    # mean, spread and power spectrum, each image is nearer the other images of its
    # class than those of other classes, for most images
    images = torch.cat(groups).float().squeeze(1) / 255
    assert all(not torch.equal(g[0], g[1]) for g in groups)
    spectrum = torch.fft.rfft2(images - images.mean((1, 2), keepdim=True)).abs()
    radius = torch.fft.fftfreq(64).abs().view(64, 1).maximum(torch.fft.rfftfreq(64).view(1, 33))
    bands = [
        (spectrum * ((radius >= lo) & (radius < lo * 2))).sum((1, 2))
        for lo in (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)
    ]
    stats = torch.stack([images.mean((1, 2)), images.std((1, 2)), *(b.log() for b in bands)], 1)
    stats = (stats - stats.mean(0)) / stats.std(0)
    distances = torch.cdist(stats, stats).fill_diagonal_(float("inf"))
    labels = torch.arange(6).repeat_interleave(4)
    assert (labels[distances.argmin(1)] == labels).float().mean() >= 0.8


def test_shading_lights_a_view_unevenly_and_smoothly_and_off_leaves_it_even():
    from model.augment import ViewAugmenter

    flat = torch.full((1, 200, 200), 128, dtype=torch.uint8)
    # off (the default): an evenly grey surface stays evenly grey
    plain = ViewAugmenter(size=100, noise=0.0)
    assert float(plain.view(flat, torch.Generator().manual_seed(2)).std()) < 1e-6
    # on: an evenly grey surface comes out lit unevenly, smoothly, within exp(+-strength)
    field = ViewAugmenter(size=100, shading=0.5).illumination(torch.Generator().manual_seed(0), 0.5)
    assert field.shape == (1, 100, 100)
    assert float(field.min()) >= np.exp(-0.5) - 1e-5 and float(field.max()) <= np.exp(0.5) + 1e-5
    assert float(field.max() / field.min()) > 1.1
    assert float(field.diff(dim=1).abs().max()) < 0.05  # no edges: light, not texture
    shaded = ViewAugmenter(size=100, noise=0.0, shading=0.5)
    views = shaded.views(flat.expand(8, 1, 200, 200), torch.Generator().manual_seed(3))
    assert float(views.flatten(1).std(dim=1).max()) > 0.02


def test_blur_softens_a_view_and_keeps_its_light():
    from model.augment import ViewAugmenter, gaussian_blur

    checker = (torch.arange(100).view(1, 100, 1) // 2 + torch.arange(100).view(1, 1, 100) // 2) % 2
    checker = checker.float()
    soft = gaussian_blur(checker, 1.0)
    # fine texture loses contrast, the mean light stays, and the image stays in range
    assert float(soft.std()) < 0.5 * float(checker.std())
    assert abs(float(soft.mean()) - float(checker.mean())) < 1e-3
    assert float(soft.min()) >= 0.0 and float(soft.max()) <= 1.0
    # wider is softer; under a tenth of a pixel, nothing changes
    assert float(gaussian_blur(checker, 2.0).std()) < float(soft.std())
    assert torch.equal(gaussian_blur(checker, 0.05), checker)
    # a blur wider than a small view still works (the kernel is cut at its side)
    assert gaussian_blur(checker[:, :8, :8], 10.0).shape == (1, 8, 8)
    image = (torch.rand((1, 200, 200), generator=torch.Generator().manual_seed(0)) * 255).byte()
    blurred = ViewAugmenter(size=100, blur=2.0, noise=0.0).views(
        image.expand(8, 1, 200, 200), torch.Generator().manual_seed(4)
    )
    sharp = ViewAugmenter(size=100, noise=0.0).views(
        image.expand(8, 1, 200, 200), torch.Generator().manual_seed(4)
    )

    # neighbouring pixels of random noise agree more once blurred
    def roughness(v: torch.Tensor) -> float:
        return float(v.diff(dim=-1).abs().mean())

    assert roughness(blurred) < roughness(sharp)


def test_views_batches_add_new_synthetic_classes_after_the_real_ones():
    from model.data import list_class_images, split_per_class
    from model.objectives import ViewObjective

    classes = ["inclusion", "patches"]
    train_files, val_files = split_per_class(list_class_images(SAMPLE, classes), 0.2, 0)
    settings = ViewsConfig(per_class=4, synthetic_classes=3, synthetic_per_class=2)
    objective = ViewObjective(
        train_files, val_files, size=100, settings=settings, seed=0, device=torch.device("cpu")
    )
    first, second = next(objective.train_batches()), next(objective.train_batches())
    views, instances, labels = first
    # 4 images of each real class and 2 of each of 3 synthetic classes, two views each
    assert views.shape == (2 * (2 * 4 + 3 * 2), 1, 100, 100)
    assert labels.tolist() == 2 * ([0] * 4 + [1] * 4 + [2, 2, 3, 3, 4, 4])
    assert torch.equal(instances, torch.arange(14).repeat(2))
    # the synthetic images differ from batch to batch; validation has none
    assert not torch.equal(views[8:14], second[0][8:14])
    assert set(next(objective.val_batches())[2].tolist()) == {0, 1}


def test_distillation_batches_can_add_synthetic_textures_with_the_teachers_codes():
    objective, teacher = sample_distillation(
        per_class=2, synthetic_classes=2, synthetic_per_class=3
    )
    images, targets = next(objective.train_batches())
    assert images.shape == (3 * 2 + 2 * 3, 1, 200, 200)
    with torch.inference_mode():
        assert torch.allclose(targets, teacher.forward_once(images), atol=1e-5)

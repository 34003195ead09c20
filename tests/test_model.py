"""The model package: networks, loss, metrics, checkpoints, embedding, a tiny training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model import DEFAULT_CHECKPOINT, load_embedder
from model.checkpoint import load_checkpoint, save_checkpoint
from model.losses import contrastive_loss
from model.metrics import accuracy_at, best_threshold, roc_auc
from model.networks import Deshpande2020, build_network
from model.train import TrainConfig, train
from tests.conftest import SAMPLE


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


def test_compact_network_embeds_on_the_unit_sphere():
    net = build_network("compact_texture").eval()
    codes = net.forward_once(torch.randn(3, 1, 100, 100))
    assert codes.shape == (3, 64)
    assert torch.allclose(codes.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("resnet9000")


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
    net = build_network("compact_texture", embedding_dim=16).eval()
    meta = {
        "arch": "compact_texture",
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
    from model import FIVE_VIEW_CHECKPOINT

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


def test_tiny_training_run_on_the_sample_lowers_the_loss(tmp_path):
    config = TrainConfig(
        data=SAMPLE,
        train_classes=["inclusion", "patches", "rolled-in_scale"],
        out=tmp_path / "run",
        arch="compact_texture",
        epochs=12,
        batch_size=8,
        lr=0.003,
        margin=1.0,
        seed=3,
    )
    result = train(config)
    losses = [h["train_loss"] for h in result.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    embedder = load_embedder(result.checkpoint, device="cpu")
    assert embedder.meta["train_classes"] == config.train_classes


@pytest.mark.parametrize(
    ("arch", "objective", "classes"),
    [
        ("texture_net", "views", ["inclusion", "patches", "rolled-in_scale"]),
        ("texture_net", "views+quadrants", ["inclusion", "patches", "rolled-in_scale"]),
        ("deshpande2020_cnn", "classify", sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())),
    ],
)
def test_every_objective_trains_and_saves_a_loadable_checkpoint(tmp_path, arch, objective, classes):
    objective, _, quadrants = objective.partition("+")
    config = TrainConfig(
        data=SAMPLE,
        train_classes=classes,
        out=tmp_path / objective,
        arch=arch,
        objective=objective,
        epochs=2,
        batch_size=8,
        per_class=4,
        lr=0.001,
        seed=1,
        schedule="onecycle",
        weight_decay=1e-4,
        views="whole+quadrants" if quadrants else "whole",
        center=bool(quadrants),
        texture_weight=1.0 if quadrants else 0.0,
    )
    result = train(config)
    assert len(result.history) == 2
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in result.history)
    embedder = load_embedder(result.checkpoint, device="cpu")
    assert embedder.meta["training"]["objective"] == objective
    codes = embedder.embed([Image.open(sorted(SAMPLE.glob("*/*.png"))[0])])
    assert codes.shape == (1, embedder.embedding_dim)
    if objective == "classify":
        assert 0.0 <= result.meta["metrics"]["val_accuracy"] <= 1.0
    if quadrants:  # embeds 200x200 images; the threshold was calibrated that way
        assert embedder.input_size == 200 and embedder.meta["views"] == "whole+quadrants"
        # centred: the stored center is the mean of the training images' codes
        # (before centring), so centred, those codes average to zero
        from torch.nn import functional as F

        from model.data import list_class_images, load_tensors, split_per_class
        from model.networks import CenteredEmbedding

        network, _ = load_checkpoint(result.checkpoint)
        assert isinstance(network, CenteredEmbedding)
        train_files, _ = split_per_class(list_class_images(SAMPLE, classes), 0.2, config.seed)
        images = torch.cat([load_tensors(f, 200) for f in train_files.values()])
        with torch.inference_mode():
            uncentred = network.network.forward_once(images)
            centred = network.forward_once(images)
        center = torch.tensor(embedder.meta["center"])
        assert torch.allclose(uncentred.mean(0), center, atol=1e-5)
        assert torch.allclose(centred, F.normalize(uncentred - center, dim=1), atol=1e-6)


def test_distillation_teaches_a_one_pass_student_the_teachers_five_view_codes(tmp_path):
    from model import FIVE_VIEW_CHECKPOINT
    from model.networks import MultiViewEmbedding, with_views
    from model.train import load_teacher

    classes = ["inclusion", "patches", "rolled-in_scale"]
    config = TrainConfig(
        data=SAMPLE,
        train_classes=classes,
        out=tmp_path / "student",
        arch="texture_net",
        input_size=200,
        objective="distill",
        teacher=[FIVE_VIEW_CHECKPOINT],
        init_from_teacher=True,
        epochs=8,
        per_class=4,
        lr=0.002,
        seed=2,
        center=True,
    )
    result = train(config)
    losses = [h["train_loss"] for h in result.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    embedder = load_embedder(result.checkpoint, device="cpu")
    assert embedder.input_size == 200 and embedder.meta["views"] == "whole"
    assert embedder.meta["arch_kwargs"] == {"input_size": 200}
    assert embedder.embed([Image.open(sorted(SAMPLE.glob("*/*.png"))[0])]).shape == (1, 128)
    # the targets are the teacher's uncentred codes from the whole image and its
    # quadrants (the five-view checkpoint itself is centred)
    shipped, _ = load_checkpoint(FIVE_VIEW_CHECKPOINT)
    teacher = load_teacher(config)
    assert isinstance(teacher, MultiViewEmbedding)
    x = torch.rand(2, 1, 200, 200) * 2 - 1
    with torch.inference_mode():
        expected = with_views(shipped.tower, "whole+quadrants").forward_once(x)
        assert torch.allclose(teacher.forward_once(x), expected, atol=1e-6)
        assert not torch.allclose(shipped.forward_once(x), expected, atol=1e-3)


def sample_distillation(tmp_path, per_class: int = 4, **options):
    """A distillation objective on the bundled sample, taught by the five-view model."""
    from model import FIVE_VIEW_CHECKPOINT
    from model.data import list_class_images, split_per_class
    from model.objectives import DistillObjective
    from model.train import load_teacher

    classes = ["inclusion", "patches", "rolled-in_scale"]
    config = TrainConfig(
        data=SAMPLE, train_classes=classes, out=tmp_path, teacher=[FIVE_VIEW_CHECKPOINT]
    )
    teacher = load_teacher(config)
    train_files, val_files = split_per_class(list_class_images(SAMPLE, classes), 0.2, 0)
    objective = DistillObjective(
        teacher, train_files, val_files, 200, per_class, 0.35, 0, torch.device("cpu"), **options
    )
    return objective, teacher


def test_mixup_blends_the_chosen_fraction_of_a_distillation_batch(tmp_path):
    objective, _ = sample_distillation(tmp_path, mixup=0.5)
    images = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(400)])
    blended = objective.blend(images)
    unchanged = (blended == images).flatten(1).all(1)
    assert 0.4 < unchanged.float().mean() < 0.6  # about half of them are blends
    # a blend is a weighted mean of two images of the batch: flat, between 0 and 399
    changed = blended[~unchanged]
    assert torch.all(changed.amin((1, 2, 3)) == changed.amax((1, 2, 3)))
    assert changed.min() >= 0 and changed.max() <= 399


def test_max_pooling_adds_every_feature_maps_maximum(tmp_path):
    from model.networks import mean_std_pool, optimize_for_inference

    fmap = torch.randn(2, 3, 5, 5)
    pooled = mean_std_pool(fmap, with_max=True)
    assert pooled.shape == (2, 9)
    assert torch.equal(pooled[:, 6:], fmap.amax(dim=(2, 3)))
    assert torch.equal(pooled[:, :6], mean_std_pool(fmap))
    net = build_network("texture_net", input_size=200, pool_max=True).eval()
    assert net.head[0].in_features == 3 * (32 + 64 + 128)
    path = save_checkpoint(
        tmp_path / "max.pt",
        net,
        {
            "arch": "texture_net",
            "arch_kwargs": {"input_size": 200, "pool_max": True},
            "input_size": 200,
            "threshold": 1.0,
        },
    )
    loaded, _ = load_checkpoint(path)
    x = torch.randn(3, 1, 200, 200)
    with torch.inference_mode():
        assert torch.allclose(
            optimize_for_inference(loaded).forward_once(x), net.forward_once(x), atol=1e-5
        )


def test_an_ensemble_teacher_averages_its_members_unit_codes():
    from torch.nn import functional as F

    from model.networks import EnsembleEmbedding, with_views

    torch.manual_seed(1)
    members = [with_views(build_network("texture_net").eval(), "whole+quadrants") for _ in "ab"]
    ensemble = EnsembleEmbedding(members)
    assert ensemble.input_size == 200 and ensemble.normalized
    x = torch.rand(3, 1, 200, 200) * 2 - 1
    with torch.inference_mode():
        mean = (members[0].forward_once(x) + members[1].forward_once(x)) / 2
        assert torch.allclose(ensemble.forward_once(x), F.normalize(mean, dim=1), atol=1e-6)
    with pytest.raises(ValueError, match="different input sizes"):
        EnsembleEmbedding([members[0], build_network("texture_net")])
    with pytest.raises(ValueError, match="must normalise"):
        EnsembleEmbedding([build_network("deshpande2020")])


def test_multi_view_embedding_averages_the_whole_image_and_its_quadrants(tmp_path):
    from torch.nn import functional as F

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
        # with mid4, also the four 140x140 corners resized to 100x100 (nine views)
        corners = [
            F.interpolate(
                x[..., r : r + 140, c : c + 140], size=(100, 100), mode="bilinear", antialias=True
            )
            for r in (0, 60)
            for c in (0, 60)
        ]
        nine = torch.stack([tower.forward_once(v) for v in views + corners]).mean(0)
        nine_views = with_views(tower, "whole+mid4+quadrants")
        assert torch.allclose(nine_views.forward_once(x), F.normalize(nine, dim=1), atol=1e-5)
    with pytest.raises(ValueError, match="unknown views"):
        with_views(tower, "corners")
    with pytest.raises(ValueError, match="must normalise"):  # the paper's 5-d codes are not
        with_views(build_network("deshpande2020"), "whole+quadrants")
    with pytest.raises(ValueError, match="must normalise"):
        CenteredEmbedding(build_network("deshpande2020"), torch.zeros(5))


def test_torch_lbp_codes_match_scikit_image():
    import warnings

    from skimage.feature import local_binary_pattern

    from model.lbp import SCALES, neighbour_differences, riu2, uniform_lbp_histograms

    image = np.random.default_rng(0).integers(0, 256, (40, 50)).astype(np.uint8)
    x = torch.from_numpy(image).float()
    for points, radius in SCALES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skimage warns about floats; these are integers
            expected = local_binary_pattern(image, points, radius, method="uniform")
        ours = riu2(neighbour_differences(x[None], points, radius) >= -1e-6)[0]
        assert np.array_equal(ours.numpy(), expected[radius:-radius, radius:-radius])
    histograms = uniform_lbp_histograms(x[None, None].repeat(2, 1, 1, 1))
    assert [h.shape for h in histograms] == [(2, p + 2) for p, _ in SCALES]
    assert all(torch.allclose(h.sum(1), torch.ones(2)) for h in histograms)


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("compact_texture", {}),
        ("texture_net", {}),
        ("texture_net", {"input_size": 200, "pool_max": True}),
        ("texture_net", {"input_size": 200, "fine_stage1": True}),
        ("texture_net", {"input_size": 200, "fine_stage1": True, "quadrant_codes": True}),
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


def test_quadrant_codes_average_the_whole_image_and_its_quadrants_per_image():
    from model.networks import mean_std_pool, quadrants

    torch.manual_seed(0)
    plain = build_network("texture_net", input_size=200, fine_stage1=True)
    net = build_network("texture_net", input_size=200, fine_stage1=True, quadrant_codes=True)
    # the same weights: a quadrant-code student starts from its teacher too
    net.load_state_dict(plain.state_dict())
    net.train()
    net.forward_once(torch.randn(8, 1, 200, 200))  # batch norm statistics
    net.eval()
    plain.load_state_dict(net.state_dict())
    plain.eval()
    odd = torch.arange(2 * 25 * 25.0).view(1, 2, 25, 25)
    assert [q.shape[-2:] for q in quadrants(odd)] == [(12, 12), (12, 13), (13, 12), (13, 13)]
    assert sum(float(q.sum()) for q in quadrants(odd)) == float(odd.sum())  # a partition
    # textures that differ between quadrants: fine noise on the left, coarse on the right
    x = torch.randn(3, 1, 200, 200) * torch.rand(3, 1, 1, 1)
    x[..., 100:] = F.interpolate(x[..., :50, :25], size=(200, 100), mode="nearest")
    with torch.inference_mode():
        batch = net.forward_once(x)
        # each image's code is its own: the five codes of one image are averaged,
        # never codes of different images in the batch
        alone = torch.cat([net.forward_once(x[i : i + 1]) for i in range(3)])
        assert torch.allclose(batch, alone, atol=1e-6)
        assert torch.allclose(batch.norm(dim=1), torch.ones(3))
        # the average of five codes: the whole image's and each quadrant's, from
        # the maps of one pass
        maps = plain.feature_maps(x)
        codes = [
            F.normalize(plain.head(torch.cat([mean_std_pool(region(m)) for m in maps], 1)), dim=1)
            for region in [lambda m: m] + [lambda m, q=q: quadrants(m)[q] for q in range(4)]
        ]
        assert torch.allclose(batch, F.normalize(sum(codes), dim=1), atol=1e-6)


@pytest.mark.parametrize("texture_model", ["basic", "rich"])
def test_synthetic_classes_are_textures_whose_images_share_their_statistics(texture_model):
    from model.synthetic import synthetic_batch

    def draw(seed: int) -> list[torch.Tensor]:
        return synthetic_batch(6, 4, 64, torch.Generator().manual_seed(seed), texture_model)

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


def test_crack_networks_are_thin_connected_cell_edges():
    from dataclasses import replace

    from model.synthetic import crack_network, draw_rich_parameters, synthetic_batch

    generator = torch.Generator().manual_seed(0)
    p = replace(draw_rich_parameters(generator), cells=25.0, crack_width=1.0, crack_warp=0.05)
    edges = crack_network(p, 2, 200, generator)
    assert edges.shape == (2, 200, 200) and float(edges.max()) <= 1.0
    # thin lines: most of the image is far from an edge, yet every row and column
    # of a 5x5 tessellation crosses several edges
    assert float((edges < 0.1).float().mean()) > 0.7
    on_edge = edges > 0.5
    assert bool(on_edge.any(2).all()) and bool(on_edge.any(1).all())
    with pytest.raises(ValueError, match="unknown synthetic texture model"):
        synthetic_batch(1, 1, 64, generator, "fancy")


def test_synthetic_classes_can_lie_over_real_surfaces():
    from model.objectives import load_uint8
    from model.synthetic import on_backgrounds, synthetic_batch

    backgrounds = [load_uint8(sorted((SAMPLE / name).glob("*.png"))) for name in ("patches",)]
    classes = synthetic_batch(4, 3, 200, torch.Generator().manual_seed(0))
    # off: the same tensors, and the generator untouched, so earlier commands remake
    generator = torch.Generator().manual_seed(5)
    assert on_backgrounds(classes, backgrounds, 0.0, generator) is classes
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(5).get_state())
    laid = on_backgrounds(classes, backgrounds, 1.0, torch.Generator().manual_seed(1))
    assert [g.shape for g in laid] == [g.shape for g in classes]
    assert all(g.dtype == torch.uint8 for g in laid)
    for before, after in zip(classes, laid, strict=True):
        # the real surface shows through, and each image keeps its brightness
        assert not torch.equal(before, after)
        mean_before = before.float().mean((1, 2, 3))
        assert torch.allclose(after.float().mean((1, 2, 3)), mean_before, atol=12)
        # the texture is still there: each laid image correlates with its own texture
        a = before.float().flatten(1) - mean_before.view(-1, 1)
        b = after.float().flatten(1) - after.float().mean((1, 2, 3)).view(-1, 1)
        assert bool((torch.nn.functional.cosine_similarity(a, b, dim=1) > 0.5).all())
    with pytest.raises(ValueError, match="not in 0-1"):
        on_backgrounds(classes, backgrounds, 1.5, generator)


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
    objective = ViewObjective(
        train_files,
        val_files,
        100,
        4,
        0.1,
        1.0,
        0.35,
        0,
        torch.device("cpu"),
        synthetic_classes=3,
        synthetic_per_class=2,
        synthetic_model="rich",
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


def test_local_views_add_small_positives_of_each_image_after_the_large_views():
    from model.augment import ViewAugmenter
    from model.data import list_class_images, split_per_class
    from model.networks import build_network
    from model.objectives import ViewObjective

    train_files, val_files = split_per_class(
        list_class_images(SAMPLE, ["inclusion", "patches"]), 0.2, 0
    )

    def objective(local_views: int) -> ViewObjective:
        args = (train_files, val_files, 100, 4, 0.1, 1.0, 0.35, 0, torch.device("cpu"))
        return ViewObjective(
            *args, synthetic_classes=1, synthetic_per_class=2, local_views=local_views
        )

    with_small = objective(3)
    batch = next(with_small.train_batches())
    views, instances, labels, small, small_instances, small_labels = batch
    # 4 images of each real class and 2 synthetic ones: two large views, three small
    assert views.shape == (2 * 10, 1, 100, 100) and small.shape == (3 * 10, 1, 50, 50)
    assert torch.equal(instances, torch.arange(10).repeat(2))
    assert torch.equal(small_instances, torch.arange(10).repeat(3))
    assert torch.equal(small_labels, labels[:10].repeat(3))
    assert small.min() >= -1.0 and small.max() <= 1.0
    # the large views are drawn first, as without small ones; validation has none
    assert torch.equal(views, next(objective(0).train_batches())[0])
    assert len(next(with_small.val_batches())) == 3
    network = build_network("texture_net")
    loss = with_small.loss(network, batch)
    assert loss.isfinite() and loss.requires_grad
    # a small view is a crop of 6-25% of the image's area: 49-100 of its 200 columns
    image = torch.arange(200.0).repeat(200, 1).to(torch.uint8)[None]  # pixel = its column
    plain = {"noise": 0.0, "gamma": (1.0, 1.0), "contrast": (1.0, 1.0), "brightness": 0.0}
    local = with_small.local_augmenter
    local = ViewAugmenter(
        size=local.size, min_crop=local.min_crop, max_crop=local.max_crop, **plain
    )
    for seed in range(20):
        crop = local.view(image, torch.Generator().manual_seed(seed))
        columns = (crop.max() - crop.min()) / 2 * 255  # back to pixel values
        assert crop.shape == (1, 50, 50) and 45 < columns < 100


def test_distillation_batches_can_add_synthetic_textures_with_the_teachers_codes(tmp_path):
    objective, teacher = sample_distillation(
        tmp_path, per_class=2, synthetic_classes=2, synthetic_per_class=3
    )
    images, targets = next(objective.train_batches())
    assert images.shape == (3 * 2 + 2 * 3, 1, 200, 200)
    with torch.inference_mode():
        assert torch.allclose(targets, teacher.forward_once(images), atol=1e-5)

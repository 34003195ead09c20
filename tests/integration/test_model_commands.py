"""The model's commands end to end: every recipe trains on the sample, `python -m model
train` dry-runs the default after its teacher, distillation teaches its student, and
`evaluate` and `compare` write what they promise. Real training runs: slower than the
unit tests (tests/unit/test_model.py), needing no services."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model import FIVE_VIEW_CHECKPOINT, load_embedder
from model.checkpoint import load_checkpoint
from model.config import (
    DistillConfig,
    NetworkConfig,
    TrainConfig,
    apply_overrides,
    config_from_recipe,
    load_recipe,
)
from model.train import train
from tests.conftest import ROOT, SAMPLE
from tests.unit.test_model import NEU_TRAIN_CLASSES


@pytest.mark.parametrize("name", ["paper-lr0.0005", "five-view", "conventional-cnn", "default"])
def test_every_recipe_trains_on_the_sample_and_saves_a_loadable_checkpoint(tmp_path, name):
    recipe = apply_overrides(load_recipe(name), ["epochs=2"])
    for table in ("views", "distill"):
        if table in recipe:
            # the sample has 8 training images a class; fewer synthetic ones keep it quick
            recipe[table].update(per_class=4, synthetic_classes=2)
    recipe.update(data=str(SAMPLE), out=str(tmp_path / name))
    config = config_from_recipe(recipe, name)
    result = train(config)
    assert len(result.history) == 2
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in result.history)
    assert (tmp_path / name / "loss.png").stat().st_size > 0
    embedder = load_embedder(result.checkpoint, device="cpu")
    training = embedder.meta["training"]
    assert (training["recipe"], training["objective"]) == (name, config.objective.name)
    assert embedder.meta["train_classes"] == config.train_classes
    codes = embedder.embed([Image.open(sorted(SAMPLE.glob("*/*.png"))[0])])
    assert codes.shape == (1, embedder.embedding_dim)
    if name == "conventional-cnn":
        assert 0.0 <= result.meta["metrics"]["val_accuracy"] <= 1.0
    if name == "five-view":  # embeds 200x200 images; the threshold was calibrated that way
        assert embedder.input_size == 200 and embedder.meta["views"] == "whole+quadrants"
        # centred: the stored center is the mean of the training images' codes
        # (before centring), so centred, those codes average to zero
        from model.data import list_class_images, load_tensors, split_per_class
        from model.networks import CenteredEmbedding

        network, _ = load_checkpoint(result.checkpoint)
        assert isinstance(network, CenteredEmbedding)
        classes = config.train_classes
        train_files, _ = split_per_class(list_class_images(SAMPLE, classes), 0.2, config.seed)
        images = torch.cat([load_tensors(f, 200) for f in train_files.values()])
        with torch.inference_mode():
            uncentred = network.network.forward_once(images)
            centred = network.forward_once(images)
        center = torch.tensor(embedder.meta["center"])
        assert torch.allclose(uncentred.mean(0), center, atol=1e-5)
        assert torch.allclose(centred, F.normalize(uncentred - center, dim=1), atol=1e-6)


def test_train_command_dry_runs_the_default_after_its_teacher(tmp_path):
    command = [sys.executable, "-m", "model", "train", "--recipe", "default", "--dry-run"]
    command += ["--teacher", "five-view", "--data", str(SAMPLE), "--out", str(tmp_path)]
    command += ["--set", "distill.per_class=4", "--seed", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    teacher = tmp_path / "teacher" / "checkpoint.pt"
    assert "five-view: checkpoint" in result.stdout and "default: checkpoint" in result.stdout
    student = load_embedder(tmp_path / "checkpoint.pt", device="cpu")
    assert student.meta["training"]["distill"]["teacher"] == str(teacher)
    assert student.meta["training"]["distill"]["per_class"] == 4
    assert load_embedder(teacher, device="cpu").meta["training"]["recipe"] == "five-view"
    assert student.meta["training"]["epochs"] == 1  # a dry run: one epoch of two batches


def test_train_command_lists_few_options_and_explains_a_bad_recipe():
    def train_command(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "model", "train", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)

    result = train_command("--help")
    options = [line for line in result.stdout.splitlines() if line.startswith("  -")]
    assert result.returncode == 0 and len(options) <= 20
    assert "five-view" in result.stdout and "paper-lr0.005" in result.stdout
    bad = train_command("--recipe", "fast")
    assert bad.returncode == 2 and "no recipe 'fast'; known: conventional-cnn" in bad.stderr
    wrong = train_command("--recipe", "five-view", "--teacher", "x.pt", "--data", str(SAMPLE))
    assert wrong.returncode == 2 and "--teacher is for distill recipes" in wrong.stderr


def test_distillation_teaches_a_one_pass_student_the_teachers_five_view_codes(tmp_path):
    from model.networks import MultiViewEmbedding, with_views
    from model.train import load_teacher

    config = TrainConfig(
        data=SAMPLE,
        train_classes=NEU_TRAIN_CLASSES,
        out=tmp_path / "student",
        network=NetworkConfig(arch="texture_net", input_size=200),
        objective=DistillConfig(teacher=FIVE_VIEW_CHECKPOINT, init_from_teacher=True, per_class=4),
        epochs=8,
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
    # quadrants, the views it was made with (the five-view checkpoint itself is centred)
    shipped, _ = load_checkpoint(FIVE_VIEW_CHECKPOINT)
    teacher = load_teacher(FIVE_VIEW_CHECKPOINT)
    assert isinstance(teacher, MultiViewEmbedding)
    x = torch.rand(2, 1, 200, 200) * 2 - 1
    with torch.inference_mode():
        expected = with_views(shipped.tower, "whole+quadrants").forward_once(x)
        assert torch.allclose(teacher.forward_once(x), expected, atol=1e-6)
        assert not torch.allclose(shipped.forward_once(x), expected, atol=1e-3)


def test_evaluate_command_writes_json_and_markdown(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "model",
            "evaluate",
            "--data",
            str(SAMPLE),
            "--classes",
            "crazing,pitted_surface,scratches",
            "--checkpoint",
            "default=model/weights/default.pt",
            "--baseline",
            "pixels",
            "--baseline",
            "lbp",
            "--episodes",
            "50",
            "--pairs",
            "60",
            "--out",
            str(tmp_path),
            "--figures",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in payload["results"]] == ["default", "pixels", "lbp"]
    for row in payload["results"]:
        accuracy = row["episodes"]["accuracy"]
        assert accuracy["low"] <= accuracy["mean"] <= accuracy["high"]
        assert 0.0 <= row["pairs"]["roc_auc"]["mean"] <= 1.0
    assert "3-way one-shot" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "default-confusion.png").stat().st_size > 0


def test_evaluate_command_takes_several_references_per_class(tmp_path):
    command = [sys.executable, "-m", "model", "evaluate", "--data", str(SAMPLE)]
    command += ["--classes", "crazing,pitted_surface,scratches", "--baseline", "pixels"]
    command += ["--episodes", "40", "--pairs", "60", "--shots", "3", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["protocol"]["shots"] == 3
    episodes = payload["results"][0]["episodes"]
    assert episodes["shots"] == 3 and sum(map(sum, episodes["confusion"])) == 40 * 3 * 5
    assert "3-way 3-shot" in (tmp_path / "results.md").read_text()


def test_compare_command_prints_score_call_and_nearest_references():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "model",
            "compare",
            str(SAMPLE / "scratches" / "Sc_2.png"),
            str(SAMPLE / "crazing" / "Cr_2.png"),
            "--references",
            str(SAMPLE),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "dissimilarity:" in result.stdout and "threshold:" in result.stdout
    assert "Sc_2.png: nearest reference scratches" in result.stdout
    assert "Cr_2.png: nearest reference crazing" in result.stdout


def test_compare_command_explains_a_bad_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    result = subprocess.run(
        [sys.executable, "-m", "model", "compare", str(bad), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "not a readable image" in result.stderr

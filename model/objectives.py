"""Training objectives: what a batch is and what its loss is.

* ``pairs``: the paper's objective. Random pairs, same class with p = 0.5, 90-degree
  rotations and flips, contrastive loss with a margin.
* ``views``: two augmented views of every image in a class-balanced batch;
  instance discrimination plus supervised contrast (``model.losses``),
  optionally with procedurally generated texture classes in every batch
  (``model.synthetic``).
* ``classify``: cross-entropy over the classes, for the conventional CNN baseline.
* ``distill``: a student network learns to give, in one pass over the whole
  image at full resolution, the code a trained teacher gives from several views
  of the same augmented image (``DistillObjective``).

Each takes its settings as one dataclass of ``model.config``, by keyword. The
training loop (``model.train``) is the same for all four.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader

from model.augment import ViewAugmenter
from model.config import ClassifyConfig, DistillConfig, PairsConfig, ViewsConfig
from model.data import ClassTensors, PairDataset, augment_dihedral, load_tensors
from model.losses import contrastive_loss, instance_and_class_loss, pair_distance
from model.networks import SiameseNetwork
from model.synthetic import SyntheticClasses

Batch = tuple[torch.Tensor, ...]


def load_uint8(files: list[Path]) -> torch.Tensor:
    """Original images as an (N, 1, H, W) uint8 tensor (all the same size)."""
    arrays = []
    for path in files:
        with Image.open(path) as image:
            arrays.append(np.array(image.convert("L"), dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1)


def pick_per_class(
    groups: list[torch.Tensor], generator: torch.Generator, per_class: int | None
) -> tuple[torch.Tensor, list[int]]:
    """Up to ``per_class`` random images of each class (all of them with None),
    stacked, and the class index of each."""
    images, classes = [], []
    for c, group in enumerate(groups):
        pick = torch.randperm(len(group), generator=generator)[:per_class]
        images.append(group[pick])
        classes.extend([c] * len(pick))
    return torch.cat(images), classes


def class_balanced_steps(groups: list[torch.Tensor], per_class: int) -> int:
    """Batches of ``per_class`` images of each class that make about one epoch."""
    return max(1, sum(len(g) for g in groups) // (per_class * len(groups)))


class Objective:
    name = ""

    def train_batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def val_batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def loss(self, network: SiameseNetwork, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, network: SiameseNetwork) -> dict[str, Any]:
        """Extra validation metrics, computed once after training."""
        return {}


class PairObjective(Objective):
    name = "pairs"

    def __init__(
        self,
        train: ClassTensors,
        val: ClassTensors,
        *,
        settings: PairsConfig,
        seed: int,
        device: torch.device,
        val_pairs: int,
    ) -> None:
        self.margin = settings.margin
        self.device = device
        self.train_loader = DataLoader(
            PairDataset(train, seed=seed), batch_size=settings.batch_size
        )
        self.val_loader = DataLoader(
            PairDataset(val, seed=seed + 1, augment=False, fixed=True, length=val_pairs),
            batch_size=128,
        )

    def train_batches(self) -> Iterator[Batch]:
        return iter(self.train_loader)

    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def val_batches(self) -> Iterator[Batch]:
        return iter(self.val_loader)

    def loss(self, network: SiameseNetwork, batch: Batch) -> torch.Tensor:
        a, b, different = (t.to(self.device) for t in batch)
        code_a, code_b = network(a, b)
        return contrastive_loss(pair_distance(code_a, code_b), different, self.margin)


class ViewObjective(Objective):
    name = "views"

    def __init__(
        self,
        train_files: dict[str, list[Path]],
        val_files: dict[str, list[Path]],
        *,
        size: int,
        settings: ViewsConfig,
        seed: int,
        device: torch.device,
    ) -> None:
        self.train = [load_uint8(files) for files in train_files.values()]
        self.synthetic = SyntheticClasses(settings.synthetic_classes, settings.synthetic_per_class)
        self.val = [load_uint8(files) for files in val_files.values()]
        self.per_class = settings.per_class
        self.temperature = settings.temperature
        self.class_weight = settings.class_weight
        self.device = device
        self.seed = seed
        self.augmenter = ViewAugmenter(
            size=size, min_crop=settings.min_crop, shading=settings.shading, blur=settings.blur
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = class_balanced_steps(self.train, self.per_class)

    def _batch(
        self,
        groups: list[torch.Tensor],
        generator: torch.Generator,
        per_class: int | None,
        synthetic: list[torch.Tensor] | None = None,
    ) -> Batch:
        stack, classes = pick_per_class(groups, generator, per_class)
        if synthetic:
            # each synthetic class is a class of its own, after the real ones
            classes += [len(groups) + c for c, group in enumerate(synthetic) for _ in group]
            stack = torch.cat([stack, *synthetic])
        views = torch.cat(
            [self.augmenter.views(stack, generator), self.augmenter.views(stack, generator)]
        )
        n = len(stack)
        return views, torch.arange(n).repeat(2), torch.tensor(classes).repeat(2)

    def train_batches(self) -> Iterator[Batch]:
        for _ in range(self.steps):
            # new synthetic classes every batch: the network never sees one twice
            size = int(self.train[0].shape[-1])  # the size of the real images
            synthetic = self.synthetic.draw(size, self.generator)
            yield self._batch(self.train, self.generator, self.per_class, synthetic)

    def steps_per_epoch(self) -> int:
        return self.steps

    def val_batches(self) -> Iterator[Batch]:
        # the same views every epoch, so validation losses are comparable
        yield self._batch(self.val, torch.Generator().manual_seed(self.seed + 1), None)

    def loss(self, network: SiameseNetwork, batch: Batch) -> torch.Tensor:
        views, instances, classes = (t.to(self.device) for t in batch)
        return instance_and_class_loss(
            network.forward_once(views), instances, classes, self.temperature, self.class_weight
        )


class DistillObjective(Objective):
    """Function matching (Beyer et al., "Knowledge distillation: a good teacher is
    patient and consistent", 2022): teacher and student see the same augmented
    image, and the student's code is pulled to the teacher's.

    The teacher is a trained tower looking at the image through several views
    (five passes: the whole image and its full-resolution quadrants); the
    student looks once, at the whole image at full resolution
    (``texture_net`` with ``input_size = 200``), so it can keep what the quadrants see.
    The loss is the squared distance between the two unit codes. Images are
    augmented at full size: a random square crop resized back to the image's
    size, any of the 8 orientations, gamma, contrast, brightness and noise.

    With ``synthetic_classes`` > 0, each batch also holds procedurally generated
    textures (``model.synthetic``), with the teacher's codes as targets.
    """

    name = "distill"

    def __init__(
        self,
        teacher: SiameseNetwork,
        train_files: dict[str, list[Path]],
        val_files: dict[str, list[Path]],
        *,
        size: int,
        settings: DistillConfig,
        seed: int,
        device: torch.device,
    ) -> None:
        if not teacher.normalized:
            raise ValueError("the teacher must give unit embeddings")
        self.teacher = teacher.to(device).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.train = [load_uint8(files) for files in train_files.values()]
        self.synthetic = SyntheticClasses(settings.synthetic_classes, settings.synthetic_per_class)
        self.per_class = settings.per_class
        self.device = device
        self.augmenter = ViewAugmenter(
            size=size, min_crop=settings.min_crop, shading=settings.shading
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = class_balanced_steps(self.train, self.per_class)
        # Validation: the held-out images as they are, their teacher codes computed once.
        self.val_images = load_tensors([p for files in val_files.values() for p in files], size)
        self.val_targets = self.teacher_codes(self.val_images)

    @torch.no_grad()
    def teacher_codes(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.teacher.forward_once(images[start : start + 64].to(self.device))
                for start in range(0, len(images), 64)
            ]
        )

    def train_batches(self) -> Iterator[Batch]:
        for _ in range(self.steps):
            originals, _ = pick_per_class(self.train, self.generator, self.per_class)
            if self.synthetic.classes:
                # the teacher's codes of textures no training class has: the student
                # learns the teacher's function off the training classes too
                synthetic = self.synthetic.draw(int(originals.shape[-1]), self.generator)
                originals = torch.cat([originals, *synthetic])
            images = self.augmenter.views(originals, self.generator)
            yield images, self.teacher_codes(images)

    def steps_per_epoch(self) -> int:
        return self.steps

    def val_batches(self) -> Iterator[Batch]:
        for start in range(0, len(self.val_images), 128):
            end = start + 128
            yield self.val_images[start:end], self.val_targets[start:end]

    def loss(self, network: SiameseNetwork, batch: Batch) -> torch.Tensor:
        images, targets = (t.to(self.device) for t in batch)
        codes = network.forward_once(images)
        return ((codes - targets) ** 2).sum(dim=1).mean()


class ClassifyObjective(Objective):
    name = "classify"

    def __init__(
        self,
        train: ClassTensors,
        val: ClassTensors,
        *,
        settings: ClassifyConfig,
        seed: int,
        device: torch.device,
    ) -> None:
        self.images = torch.cat(train.images)
        self.labels = torch.cat([torch.full((len(t),), c) for c, t in enumerate(train.images)])
        self.val_images = torch.cat(val.images)
        self.val_labels = torch.cat([torch.full((len(t),), c) for c, t in enumerate(val.images)])
        self.batch_size = settings.batch_size
        self.device = device
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def steps_per_epoch(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def train_batches(self) -> Iterator[Batch]:
        order = torch.randperm(len(self.images), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = torch.stack([augment_dihedral(x, self.rng) for x in self.images[index]])
            yield images, self.labels[index]

    def val_batches(self) -> Iterator[Batch]:
        for start in range(0, len(self.val_images), 128):
            yield (self.val_images[start : start + 128], self.val_labels[start : start + 128])

    def loss(self, network: SiameseNetwork, batch: Batch) -> torch.Tensor:
        images, labels = (t.to(self.device) for t in batch)
        return F.cross_entropy(network.logits(images), labels)  # type: ignore[operator]

    @torch.inference_mode()
    def metrics(self, network: SiameseNetwork) -> dict[str, Any]:
        network.eval()
        correct = 0
        for images, labels in self.val_batches():
            predicted = network.logits(images.to(self.device)).argmax(1).cpu()  # type: ignore[operator]
            correct += int((predicted == labels).sum())
        n = len(self.val_labels)
        return {"val_images": n, "val_correct": correct, "val_accuracy": correct / n}

"""Comparing two images, as the original desktop tool did, plus their nearest references."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.data import IMAGE_SUFFIXES
from model.embedder import Embedder


@dataclass
class NearestReference:
    label: str
    name: str
    distance: float


@dataclass
class Comparison:
    dissimilarity: float
    threshold: float
    same_class: bool
    nearest: list[NearestReference | None]  # one per compared image
    codes: np.ndarray  # the two images' embeddings, (2, D)


@dataclass
class ReferenceLibrary:
    """Reference images embedded once: labels, names and an (M, D) array."""

    labels: list[str]
    names: list[str]
    codes: np.ndarray

    @classmethod
    def from_folder(cls, folder: Path, embedder: Embedder) -> ReferenceLibrary:
        """Every image in each class sub-folder of ``folder`` is a reference of that class."""
        labels, names, images = [], [], []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for path in sorted(sub.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    with Image.open(path) as image:
                        images.append(image.copy())
                    labels.append(sub.name)
                    names.append(path.name)
        if not images:
            raise ValueError(f"no reference images in the class sub-folders of {folder}")
        return cls(labels, names, embedder.embed(images))

    def nearest(self, code: np.ndarray) -> NearestReference:
        distances = np.sqrt(((self.codes - code[None, :]) ** 2).sum(axis=1))
        i = int(distances.argmin())
        return NearestReference(self.labels[i], self.names[i], float(distances[i]))


def compare_images(
    embedder: Embedder,
    a: Image.Image,
    b: Image.Image,
    references: ReferenceLibrary | None = None,
    threshold: float | None = None,
) -> Comparison:
    """The dissimilarity of ``a`` and ``b``, the same-class call at ``threshold`` (the
    embedder's calibrated one unless given) and, with ``references``, each one's
    nearest reference. The command line and the admin site's Compare page both use it."""
    codes = embedder.embed([a, b])
    distance = float(np.linalg.norm(codes[0] - codes[1]))
    limit = embedder.threshold if threshold is None else threshold
    nearest = [references.nearest(c) if references else None for c in codes]
    return Comparison(distance, limit, distance <= limit, nearest, codes)

"""Evaluation protocols on embeddings: N-way one-shot episodes and pair verification.

Both work on a mapping of class name to an (N_c, D) embedding array, so any
embedder (a checkpoint, raw pixels, LBP histograms) is measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.metrics import accuracy_at, best_threshold, roc_auc

Z_95 = 1.959964  # two-sided 95% normal quantile


@dataclass
class Estimate:
    """A mean with a 95% interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass
class EpisodeResult:
    ways: int
    episodes: int
    queries_per_class: int
    accuracy: Estimate
    classes: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted
    shots: int = 1  # references (supports) per class

    @property
    def name(self) -> str:
        """``3-way one-shot``, ``3-way 3-shot`` ..."""
        return f"{self.ways}-way {'one' if self.shots == 1 else self.shots}-shot"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ways": self.ways,
            "shots": self.shots,
            "episodes": self.episodes,
            "queries_per_class": self.queries_per_class,
            "accuracy": self.accuracy.as_dict(),
            "classes": self.classes,
            "confusion": self.confusion,
        }


@dataclass
class PairResult:
    pairs: int
    threshold: float | None
    accuracy_at_threshold: Estimate | None
    best_threshold: float
    accuracy_at_best: Estimate
    roc_auc: Estimate
    same_distances: list[float] = field(repr=False, default_factory=list)
    different_distances: list[float] = field(repr=False, default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "threshold": self.threshold,
            "accuracy_at_threshold": (
                self.accuracy_at_threshold.as_dict() if self.accuracy_at_threshold else None
            ),
            "best_threshold": self.best_threshold,
            "accuracy_at_best": self.accuracy_at_best.as_dict(),
            "roc_auc": self.roc_auc.as_dict(),
        }


def normal_interval(values: np.ndarray) -> Estimate:
    """Mean of per-episode scores with a normal-approximation 95% interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    half = Z_95 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return Estimate(mean, mean - half, mean + half)


def one_shot_episodes(
    embeddings: dict[str, np.ndarray],
    episodes: int = 1000,
    queries_per_class: int = 5,
    seed: int = 0,
    shots: int = 1,
) -> EpisodeResult:
    """N-way one-shot: each episode draws one support per class and up to
    ``queries_per_class`` other images per class as queries, and predicts each
    query's class as that of its nearest support (Euclidean distance).

    With ``shots`` K > 1, K supports per class (K-shot), and a query takes the
    class of the nearest of all supports: the rule the service applies to a
    reference library holding K references per label. ``shots=1`` draws the
    same episodes as before the option existed."""
    classes = list(embeddings)
    if len(classes) < 2:
        raise ValueError("one-shot episodes need at least 2 classes")
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    for name, codes in embeddings.items():
        if len(codes) < shots + 1:
            raise ValueError(
                f"class {name!r} needs at least {shots + 1} images ({shots} supports and a query)"
            )
    rng = np.random.default_rng(seed)
    ways = len(classes)
    confusion = np.zeros((ways, ways), dtype=np.int64)
    scores = np.empty(episodes)
    for e in range(episodes):
        supports, queries, truth = [], [], []
        for c, name in enumerate(classes):
            codes = embeddings[name]
            n_query = min(queries_per_class, len(codes) - shots)
            picked = rng.choice(len(codes), size=shots + n_query, replace=False)
            supports.append(codes[picked[:shots]])
            queries.append(codes[picked[shots:]])
            truth.extend([c] * n_query)
        support = np.concatenate(supports)  # class c's supports: rows c*shots ... c*shots+shots-1
        query = np.concatenate(queries)
        distances = ((query[:, None, :] - support[None, :, :]) ** 2).sum(axis=2)
        predicted = distances.argmin(axis=1) // shots
        truth_arr = np.asarray(truth)
        np.add.at(confusion, (truth_arr, predicted), 1)
        scores[e] = float((predicted == truth_arr).mean())
    return EpisodeResult(
        ways,
        episodes,
        queries_per_class,
        normal_interval(scores),
        classes,
        confusion.tolist(),
        shots,
    )


def bootstrap_interval(
    statistic: Any,
    distances: np.ndarray,
    different: np.ndarray,
    rng: np.random.Generator,
    resamples: int = 1000,
) -> Estimate:
    """The statistic on all pairs, with a percentile-bootstrap 95% interval."""
    value = float(statistic(distances, different))
    samples = []
    n = len(distances)
    for _ in range(resamples):
        index = rng.integers(0, n, size=n)
        d, y = distances[index], different[index]
        if y.all() or not y.any():
            continue
        samples.append(float(statistic(d, y)))
    low, high = np.percentile(samples, [2.5, 97.5])
    return Estimate(value, float(low), float(high))


def pair_verification(
    embeddings: dict[str, np.ndarray],
    threshold: float | None,
    pairs: int = 900,
    seed: int = 0,
) -> PairResult:
    """Random pairs, half of the same class, as in the authors' evaluation:
    accuracy at the given threshold, at the best threshold, and ROC AUC."""
    classes = list(embeddings)
    rng = np.random.default_rng(seed)
    distances = np.empty(pairs)
    different = np.zeros(pairs, dtype=bool)
    for i in range(pairs):
        same = i % 2 == 0
        c1 = classes[rng.integers(len(classes))]
        c2 = (
            c1
            if same
            else classes[rng.choice([k for k in range(len(classes)) if classes[k] != c1])]
        )
        a = rng.integers(len(embeddings[c1]))
        b = rng.integers(len(embeddings[c2]))
        while same and b == a:
            b = rng.integers(len(embeddings[c2]))
        distances[i] = float(np.linalg.norm(embeddings[c1][a] - embeddings[c2][b]))
        different[i] = not same
    best, _ = best_threshold(distances, different)
    at_best = bootstrap_interval(lambda d, y: best_threshold(d, y)[1], distances, different, rng)
    at_threshold = (
        bootstrap_interval(lambda d, y: accuracy_at(d, y, threshold), distances, different, rng)
        if threshold is not None
        else None
    )
    auc = bootstrap_interval(roc_auc, distances, different, rng)
    return PairResult(
        pairs,
        threshold,
        at_threshold,
        best,
        at_best,
        auc,
        distances[~different].tolist(),
        distances[different].tolist(),
    )

"""The evaluation protocols on toy embeddings whose answers are known, and the CLIs."""

from __future__ import annotations

import numpy as np
import pytest

from model.evaluate import one_shot_episodes, pair_verification
from model.report import wilson_interval


def perfect_embeddings(classes: int = 3, per_class: int = 20) -> dict[str, np.ndarray]:
    """Every class a tight cluster far from the others."""
    rng = np.random.default_rng(1)
    return {
        f"c{k}": np.eye(classes)[k] * 10 + rng.normal(0, 0.01, (per_class, classes))
        for k in range(classes)
    }


def constant_embeddings(classes: int = 3, per_class: int = 20) -> dict[str, np.ndarray]:
    return {f"c{k}": np.zeros((per_class, 4)) for k in range(classes)}


def test_a_perfect_embedder_scores_one():
    result = one_shot_episodes(perfect_embeddings(), episodes=200, seed=0)
    assert result.accuracy.mean == 1.0
    assert result.accuracy.low == result.accuracy.high == 1.0
    pairs = pair_verification(perfect_embeddings(), threshold=5.0, pairs=300, seed=0)
    assert pairs.roc_auc.mean == 1.0
    assert pairs.accuracy_at_best.mean == 1.0 and pairs.accuracy_at_threshold.mean == 1.0


@pytest.mark.parametrize("ways", [3, 6])
def test_a_constant_embedder_scores_chance(ways):
    # all distances tie: the nearest support is always the first class
    result = one_shot_episodes(constant_embeddings(ways), episodes=300, seed=0)
    assert result.accuracy.mean == pytest.approx(1 / ways)
    pairs = pair_verification(constant_embeddings(ways), threshold=1.0, pairs=300, seed=0)
    assert pairs.roc_auc.mean == pytest.approx(0.5)
    assert pairs.accuracy_at_threshold.mean == pytest.approx(0.5)


def test_random_embeddings_score_near_chance_within_the_interval():
    rng = np.random.default_rng(7)
    codes = {f"c{k}": rng.normal(size=(40, 8)) for k in range(3)}
    result = one_shot_episodes(codes, episodes=1000, seed=3)
    assert result.accuracy.low < 1 / 3 < result.accuracy.high + 0.02
    assert abs(result.accuracy.mean - 1 / 3) < 0.04


def test_queries_never_include_the_support():
    # two images per class: the one query must be the other image, never the support
    codes = {"a": np.array([[0.0], [100.0]]), "b": np.array([[50.0], [51.0]])}
    result = one_shot_episodes(codes, episodes=50, queries_per_class=5, seed=0)
    assert sum(map(sum, result.confusion)) == 50 * 2  # one query per class per episode


def test_k_shot_episodes_take_the_nearest_of_k_supports_per_class():
    # one-shot is unchanged by the option: the same episodes, the same numbers
    rng = np.random.default_rng(7)
    codes = {f"c{k}": rng.normal(k * 0.7, 1.0, size=(40, 8)) for k in range(3)}
    plain, one = (
        one_shot_episodes(codes, 300, seed=3),
        one_shot_episodes(codes, 300, seed=3, shots=1),
    )
    assert plain.as_dict() == one.as_dict() and plain.name == "3-way one-shot"
    # a perfect embedder still scores 1.0; the supports are never queries
    perfect = one_shot_episodes(perfect_embeddings(), episodes=200, seed=0, shots=5)
    assert perfect.accuracy.mean == 1.0 and perfect.name == "3-way 5-shot"
    assert sum(map(sum, perfect.confusion)) == 200 * 3 * 5
    # three images of a class, two supports: one query left, and it is never a support
    small = {"a": np.array([[0.0], [1.0], [100.0]]), "b": np.array([[50.0], [51.0], [52.0]])}
    assert sum(map(sum, one_shot_episodes(small, 50, seed=0, shots=2).confusion)) == 50 * 2
    # overlapping classes: more references per class find more queries' class
    scores = [one_shot_episodes(codes, 1000, seed=3, shots=k).accuracy.mean for k in (1, 3, 5)]
    assert scores[0] < scores[1] < scores[2]
    with pytest.raises(ValueError, match="needs at least 6 images"):
        one_shot_episodes(small, 10, shots=5)


def test_pairs_are_half_same_class():
    result = pair_verification(perfect_embeddings(), threshold=None, pairs=400, seed=0)
    assert len(result.same_distances) == len(result.different_distances) == 200
    assert result.accuracy_at_threshold is None


def test_wilson_interval_contains_the_proportion():
    estimate = wilson_interval(90, 100)
    assert estimate.low < 0.9 < estimate.high and estimate.mean == 0.9

"""Pair-verification metrics on distances: threshold calibration and ROC AUC."""

from __future__ import annotations

import numpy as np


def best_threshold(distances: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """The distance threshold that best separates same (d <= t) from different pairs.

    Returns (threshold, accuracy). Candidates are midpoints between consecutive
    sorted distances, so the threshold never sits exactly on a sample.
    """
    distances = np.asarray(distances, dtype=np.float64)
    different = np.asarray(different, dtype=bool)
    if distances.shape != different.shape or distances.size == 0:
        raise ValueError("need as many labels as distances, and at least one pair")
    order = np.argsort(distances, kind="stable")
    d_sorted, diff_sorted = distances[order], different[order]
    n = d_sorted.size
    # accuracy when the first k pairs (smallest distances) are called "same"
    same_called_correct = np.concatenate([[0], np.cumsum(~diff_sorted)])
    diff_called_correct = diff_sorted.sum() - np.concatenate([[0], np.cumsum(diff_sorted)])
    accuracy = (same_called_correct + diff_called_correct) / n
    k = int(np.argmax(accuracy))
    if k == 0:
        threshold = float(d_sorted[0]) - 1e-6
    elif k == n:
        threshold = float(d_sorted[-1]) + 1e-6
    else:
        threshold = float((d_sorted[k - 1] + d_sorted[k]) / 2.0)
    return threshold, float(accuracy[k])


def accuracy_at(distances: np.ndarray, different: np.ndarray, threshold: float) -> float:
    """Fraction of pairs called right when d <= threshold means "same class"."""
    called_same = np.asarray(distances) <= threshold
    return float(np.mean(called_same == ~np.asarray(different, dtype=bool)))


def roc_auc(distances: np.ndarray, different: np.ndarray) -> float:
    """Probability that a random different pair lies farther apart than a random
    same pair (ties count half): the area under the ROC curve, by ranks."""
    distances = np.asarray(distances, dtype=np.float64)
    different = np.asarray(different, dtype=bool)
    n_diff, n_same = int(different.sum()), int((~different).sum())
    if n_diff == 0 or n_same == 0:
        raise ValueError("ROC AUC needs both same-class and different-class pairs")
    order = np.argsort(distances, kind="mergesort")
    ranks = np.empty(distances.size, dtype=np.float64)
    sorted_d = distances[order]
    # average ranks over ties
    i = 0
    while i < sorted_d.size:
        j = i
        while j + 1 < sorted_d.size and sorted_d[j + 1] == sorted_d[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = ranks[different].sum()
    return float((rank_sum - n_diff * (n_diff + 1) / 2.0) / (n_diff * n_same))

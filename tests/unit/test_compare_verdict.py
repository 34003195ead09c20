"""Compare's one verdict (admin.compare_verdict): the nearest references decide when
both images have one within its threshold, the pairwise distance only otherwise, and
two images nearest to different classes are never called "the same class"."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from admin.compare import nearest_reference
from admin.compare_verdict import CompareVerdict, NearestReference, compare_verdict
from core.tables import UNKNOWN_LABEL
from core.thresholds import Thresholds
from core.verdict import ReferenceSet, decide

THRESHOLD = 0.8
SCRATCHES = NearestReference("scratches", 6, 0.31, THRESHOLD)
PATCHES = NearestReference("patches", 4, 0.28, THRESHOLD)
FAR_SCRATCHES = NearestReference("scratches", 6, 1.2, THRESHOLD)
FAR_PATCHES = NearestReference("patches", 4, 0.95, THRESHOLD)


def verdict(first, second, distance: float) -> CompareVerdict:
    return compare_verdict((first, second), distance, THRESHOLD)


def test_same_label_within_the_threshold_is_the_same_class():
    result = verdict(SCRATCHES, NearestReference("scratches", 9, 0.5, THRESHOLD), 0.41)
    assert (result.basis, result.same) == ("references", True)
    assert result.headline == "Same class: scratches"
    assert result.explanation == (
        "Both are nearest to scratches references (#6 and #9), within the threshold, "
        "and their distance 0.4100 is under the threshold 0.8000."
    )


def test_same_reference_says_so_even_when_their_own_distance_is_over():
    result = verdict(SCRATCHES, NearestReference("scratches", 6, 0.7, THRESHOLD), 0.95)
    assert (result.basis, result.same, result.headline) == (
        "references",
        True,
        "Same class: scratches",
    )
    assert "the same reference, scratches #6" in result.explanation
    assert "though their distance 0.9500 is over the threshold 0.8000" in result.explanation


def test_different_labels_under_the_threshold_are_different_classes_and_say_why():
    # the case: a scratch and a patch the model finds alike
    result = verdict(SCRATCHES, PATCHES, 0.41)
    assert (result.basis, result.same) == ("references", False)
    assert result.headline == "Different classes: scratches vs patches"
    assert "same class" not in result.headline.lower()
    assert result.explanation == (
        "Their distance 0.4100 is under the threshold 0.8000, but they are nearest to "
        "different references: scratches #6 at 0.3100 and patches #4 at 0.2800."
    )


def test_different_labels_over_the_threshold():
    result = verdict(SCRATCHES, PATCHES, 1.3)
    assert (result.basis, result.same) == ("references", False)
    assert result.headline == "Different classes: scratches vs patches"
    assert result.explanation.startswith(
        "They are nearest to different references and their distance 1.3000 is over "
        "the threshold 0.8000: scratches #6"
    )


@pytest.mark.parametrize(("distance", "same"), [(0.41, True), (0.95, False)])
def test_no_references_fall_back_to_the_pairwise_call_and_say_so(distance, same):
    result = verdict(None, None, distance)
    assert (result.basis, result.same) == ("pairwise", same)
    call = "the same class" if same else "different classes"
    side = "under" if same else "over"
    assert (
        result.headline == f"{'Same class' if same else 'Different classes'}, by their own distance"
    )
    assert result.explanation == (
        f"No references to compare with; by their own distance ({distance:.4f}, {side} "
        f"the threshold 0.8000) the model calls them {call}."
    )


def test_no_reference_within_the_threshold_falls_back_to_the_pairwise_call():
    result = verdict(FAR_SCRATCHES, FAR_PATCHES, 0.41)
    assert (result.basis, result.same) == ("pairwise", True)
    assert result.headline == "Same class, by their own distance"
    assert result.explanation == (
        "No reference within the threshold; by their own distance (0.4100, under the "
        "threshold 0.8000) the model calls them the same class."
    )


def test_only_one_image_near_a_reference_falls_back_and_names_it():
    result = verdict(FAR_SCRATCHES, PATCHES, 1.1)
    assert (result.basis, result.same) == ("pairwise", False)
    assert result.headline == "Different classes, by their own distance"
    assert result.explanation.startswith(
        "Only the second image has a reference within the threshold (patches #4 at 0.2800); "
        "by their own distance (1.1000, over the threshold 0.8000)"
    )


def test_never_the_same_class_when_the_nearest_labels_differ():
    near = [SCRATCHES, PATCHES, FAR_SCRATCHES, FAR_PATCHES, None]
    for first, second, distance in itertools.product(near, near, (0.1, 0.8, 2.0)):
        result = verdict(first, second, distance)
        if result.basis == "pairwise":
            # says it is the pairwise call, and makes it as the original tool did
            assert "by their own distance" in result.explanation
            assert result.same == (distance <= THRESHOLD)
            continue
        assert first is not None and second is not None and first.within and second.within
        assert result.same == (first.label == second.label)
        assert ("same class" in result.headline.lower()) == result.same


def test_within_agrees_with_the_lines_verdict_at_the_threshold():
    # the page's "within" must match what the line would decide for the image
    references = ReferenceSet(
        [6, 4], ["scratches", "patches"], ["defect", "defect"], np.zeros((2, 2), np.float32)
    )
    thresholds = Thresholds(0.8, {"patches": 0.3})
    for distances in ([0.8, 2.0], [0.8000001, 2.0], [2.0, 0.3], [2.0, 0.31]):
        line = decide(np.array(distances, dtype=np.float32), references, thresholds)
        nearest = nearest_reference(line)
        assert nearest is not None
        assert nearest.reference_id == line.nearest_reference_id
        assert nearest.threshold == line.threshold
        assert nearest.within == (line.label != UNKNOWN_LABEL)
    assert nearest_reference(None) is None
    assert nearest_reference(decide(np.empty(0), ReferenceSet.empty(2), thresholds)) is None

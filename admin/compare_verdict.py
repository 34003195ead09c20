"""Compare's one verdict on two images, derived from their nearest references.

Two images can lie within the threshold of each other and still be nearest to
references of different classes (a scratch and a patch that look alike to the
model): calling them "the same class" from their own distance contradicts what
the line would label them. So the references decide when both images have one
within its threshold; only when they do not does the pairwise call stand, and
the text says which of the two it is. Pure: no Flask, no database, no model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NearestReference:
    """One image's nearest active reference, and the threshold for its label."""

    label: str
    reference_id: int
    distance: float
    threshold: float

    @property
    def within(self) -> bool:
        # the same comparison as core.verdict.decide, so Compare and the line agree
        return self.distance <= self.threshold

    def describe(self) -> str:
        return f"{self.label} #{self.reference_id} at {self.distance:.4f}"


@dataclass(frozen=True)
class CompareVerdict:
    basis: str  # "references": their nearest references decide; "pairwise": their distance
    same: bool
    headline: str
    explanation: str


def _number(value: float) -> str:
    return f"{value:.4f}"


def _pairwise(
    reason: str, distance: float, threshold: float, same_by_distance: bool
) -> CompareVerdict:
    call = "the same class" if same_by_distance else "different classes"
    side = "under" if same_by_distance else "over"
    headline = "Same class" if same_by_distance else "Different classes"
    explanation = (
        f"{reason}; by their own distance ({_number(distance)}, {side} the threshold "
        f"{_number(threshold)}) the model calls them {call}."
    )
    return CompareVerdict(
        "pairwise", same_by_distance, f"{headline}, by their own distance", explanation
    )


def compare_verdict(
    nearest: tuple[NearestReference | None, NearestReference | None],
    distance: float,
    threshold: float,
) -> CompareVerdict:
    """The headline and its reason for two images ``distance`` apart, where
    ``threshold`` is the pairwise (global) one and ``nearest`` holds each image's
    nearest reference (None where there are no references)."""
    first, second = nearest
    same_by_distance = distance <= threshold
    side = "under" if same_by_distance else "over"
    own = f"their distance {_number(distance)} is {side} the threshold {_number(threshold)}"
    if first is None or second is None:
        return _pairwise("No references to compare with", distance, threshold, same_by_distance)
    if not first.within and not second.within:
        return _pairwise("No reference within the threshold", distance, threshold, same_by_distance)
    if not (first.within and second.within):
        slot, matched = ("first", first) if first.within else ("second", second)
        return _pairwise(
            f"Only the {slot} image has a reference within the threshold ({matched.describe()})",
            distance,
            threshold,
            same_by_distance,
        )
    if first.label == second.label:
        where = (
            f"the same reference, {first.label} #{first.reference_id}"
            if first.reference_id == second.reference_id
            else f"{first.label} references (#{first.reference_id} and #{second.reference_id})"
        )
        link = "and" if same_by_distance else "though"
        return CompareVerdict(
            "references",
            True,
            f"Same class: {first.label}",
            f"Both are nearest to {where}, within the threshold, {link} {own}.",
        )
    nearest_pair = f"{first.describe()} and {second.describe()}"
    if same_by_distance:
        reason = f"{own[0].upper()}{own[1:]}, but they are nearest to different references"
    else:
        reason = f"They are nearest to different references and {own}"
    return CompareVerdict(
        "references",
        False,
        f"Different classes: {first.label} vs {second.label}",
        f"{reason}: {nearest_pair}.",
    )

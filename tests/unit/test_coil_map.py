"""The coil rules' arithmetic and the coil map's geometry, without services: the
densest stretch along a strip, what a rule says of a set of marks, and where the map
draws marks, density bins and ticks."""

from __future__ import annotations

import pytest

from admin.coil_map import (
    MAP_WIDTH,
    MARK_RADIUS,
    PALETTE,
    STRIP_HEIGHT,
    UNKNOWN_COLOUR,
    label_colours,
    map_layout,
    nice_step,
    strip_width,
)
from core.coil_verdicts import Mark, apply_rule, check_rule, densest_stretch, judge_marks, rule_text
from core.tables import CoilRule


def marks(label: str, *positions: float | None) -> list[Mark]:
    return [Mark(i, label, p, 0.5, 1.0) for i, p in enumerate(positions)]


@pytest.mark.parametrize(
    ("positions", "per_m", "expected"),
    [
        ([], 100.0, (0, None)),
        ([5.0], 100.0, (1, 5.0)),
        ([0, 40, 70, 100], 100.0, (4, 0)),  # both ends of the stretch count
        ([0, 40, 70, 100.5], 100.0, (3, 0)),
        ([900, 0, 300, 600], 100.0, (1, 0)),
        ([10, 500, 520, 540, 560, 900], 60.0, (4, 500)),
    ],
)
def test_the_densest_stretch(positions, per_m, expected):
    assert densest_stretch(positions, per_m) == expected


def rule(label: str, max_count: int, per_m: float | None = None) -> CoilRule:
    return CoilRule(id=7, label=label, max_count=max_count, per_m=per_m, active=True)


def test_rules_hold_by_stretch_by_coil_and_by_any_label():
    scratches = marks("scratches", 410, 440, 470, 505, None)
    assert apply_rule(rule("scratches", 3, 100.0), scratches)["count"] == 4
    assert apply_rule(rule("scratches", 4, 100.0), scratches) is None
    whole = apply_rule(rule("scratches", 4), scratches)  # the unplaced one counts here
    assert whole is not None and whole["count"] == 5 and whole["per_m"] is None
    assert apply_rule(rule("crazing", 0), scratches) is None
    assert apply_rule(rule("*", 0), scratches)["count"] == 5

    judged = judge_marks([*scratches, *marks("crazing", 3.0)], [rule("crazing", 0)], 600.0)
    assert judged.verdict == "hold" and judged.counts == {"crazing": 1, "scratches": 5}
    assert judged.reasons[0]["text"] == "1 'crazing' on the coil; at most 0 allowed"
    assert judge_marks(scratches, [], None).verdict == "ship"


def test_rules_read_as_people_say_them_and_are_checked():
    assert rule_text(rule("scratches", 3, 100.0)) == "more than 3 'scratches' per 100 m: hold"
    assert rule_text(rule("crazing", 0)) == "any 'crazing': hold"
    assert rule_text(rule("*", 0)) == "any mark: hold"
    assert rule_text(rule("*", 9)) == "more than 9 marks of any label on the coil: hold"
    assert check_rule(" scratches ", 3, None) == ("scratches", 3, None)
    for label, count, per_m in [("", 1, None), ("a", -1, None), ("a", 1, 0.0), ("a", 1, 1e9)]:
        with pytest.raises(ValueError):
            check_rule(label, count, per_m)
    with pytest.raises(ValueError):
        check_rule("a", 1, float("nan"))


def test_labels_keep_their_colours_across_pages():
    known = ["crazing", "inclusion", "scratches", "unknown"]
    colours = label_colours(known, ["scratches", "unknown"])
    assert colours == {"scratches": PALETTE[2], "unknown": UNKNOWN_COLOUR}
    assert label_colours(known, ["scratches", "crazing"])["scratches"] == PALETTE[2]
    assert label_colours(known, ["new one"]) == label_colours([], ["new one"])


def test_the_map_places_marks_bins_and_ticks():
    drawn = [
        Mark(1, "scratches", 0.0, 0.0, 2.0),
        Mark(2, "scratches", 500.0, 1.5, 1.0),
        Mark(3, "crazing", 1000.0, None, 0.5, frame_x=0.25),
        Mark(4, "crazing", None, None, 0.4),
    ]
    layout = map_layout(
        drawn, 1000.0, {"scratches": "#111", "crazing": "#222"}, lambda i: f"/i/{i}"
    )
    assert layout["width_m"] == pytest.approx(1.65)  # the widest mark and a margin
    first, middle, last = layout["marks"]
    assert (first["x"], first["y"]) == (MARK_RADIUS, MARK_RADIUS)  # head, reference edge
    assert middle["x"] == pytest.approx(MAP_WIDTH / 2)
    assert last["x"] == MAP_WIDTH - MARK_RADIUS  # the tail
    assert last["y"] == pytest.approx(MARK_RADIUS + 0.25 * (STRIP_HEIGHT - 2 * MARK_RADIUS))
    assert [m["href"] for m in layout["marks"]] == ["/i/1", "/i/2", "/i/3"]
    assert [m["colour"] for m in layout["marks"]] == ["#111", "#111", "#222"]
    assert [m["inspection_id"] for m in layout["unplaced"]] == [4]
    assert [b["count"] for b in layout["bins"]] == [1, 1, 1]
    assert layout["bins"][0]["per_m"] == pytest.approx(1 / 20)  # 50 bins of 20 m
    assert [t["text"] for t in layout["ticks"]] == [f"{v} m" for v in range(0, 1001, 200)]
    assert layout["ticks"][0]["anchor"] == "start" and layout["ticks"][-1]["anchor"] == "end"


def test_a_strip_of_unknown_size():
    assert strip_width(marks("a", 1.0)[:0]) == 1.0
    assert strip_width([Mark(1, "a", 1.0, None, None)]) == 1.0
    layout = map_layout([], None, {}, str)
    assert layout["length_m"] == 1.0 and layout["marks"] == [] and layout["bins"] == []
    assert nice_step(1000) == 200 and nice_step(37) == 10 and nice_step(1) == 0.2

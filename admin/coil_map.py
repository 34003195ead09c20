"""The coil map's geometry: where each mark, each density bin and each tick of the
strip goes, in SVG units.

The page draws it as inline SVG, and ``static/coil_map.js`` redraws it from the same
geometry (``/coils/<id>/marks.json``), so the layout is worked out once, here. The
strip runs along x (its length, head at the left) and across y (its width, the
reference edge at the top); below it, a band shows marks per metre along the coil.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from core.coil_verdicts import Mark

MAP_WIDTH = 1000.0  # SVG units along the strip
STRIP_HEIGHT = 200.0  # SVG units across it
MARK_RADIUS = 6.0
BAND_TOP = STRIP_HEIGHT + 14.0
BAND_HEIGHT = 26.0
AXIS_Y = BAND_TOP + BAND_HEIGHT + 20.0
VIEW_HEIGHT = AXIS_Y + 6.0
BINS = 50
#: a strip whose width no frame tells is drawn 1 m wide; else the widest place seen
#: across it, and this much more (a mark on the far edge stays inside the strip)
UNKNOWN_WIDTH_M = 1.0
WIDTH_MARGIN = 0.1
#: at most this many marks are drawn (the highest scores); the band counts them all
MAX_DRAWN = 4000
#: colours told apart by most people, colour-blind ones too (Okabe-Ito, then Tol's)
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#d55e00",
    "#56b4e9",
    "#8c6d1f",
    "#332288",
    "#882255",
    "#44aa99",
    "#999933",
    "#aa4499",
)
UNKNOWN_COLOUR = "#5f6b76"


def label_colours(known: Sequence[str], present: Iterable[str]) -> dict[str, str]:
    """A colour for each label of ``present``: by its place in ``known`` (the label
    list, the same on every page), by a hash of its name for labels not in it."""
    colours = {}
    place = {label: i for i, label in enumerate(sorted(set(known) - {"unknown"}))}
    for label in sorted(set(present)):
        if label == "unknown":
            colours[label] = UNKNOWN_COLOUR
        elif label in place:
            colours[label] = PALETTE[place[label] % len(PALETTE)]
        else:
            colours[label] = PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]
    return colours


def strip_width(marks: Sequence[Mark]) -> float:
    across = [m.across_m for m in marks if m.across_m is not None]
    if not across or max(across) <= 0:
        return UNKNOWN_WIDTH_M
    widest = max(across)
    return widest + max(widest * WIDTH_MARGIN, 0.05)


def strip_length(marks: Sequence[Mark], length_m: float | None) -> float:
    """The length drawn: the coil's, or the furthest mark; at least 1 m."""
    furthest = max((m.position_m for m in marks if m.position_m is not None), default=0.0)
    return max(length_m or 0.0, furthest, 1.0)


def nice_step(span: float, ticks: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten that cuts ``span`` into about ``ticks``."""
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= raw)


def mark_y(mark: Mark, width_m: float) -> float:
    """Across the strip: the mark's place when known; else its place across its frame
    (a camera that sees the whole width); else the middle."""
    if mark.across_m is not None:
        share = mark.across_m / width_m
    elif mark.frame_x is not None:
        share = mark.frame_x
    else:
        share = 0.5
    share = min(max(share, 0.0), 1.0)
    return round(MARK_RADIUS + share * (STRIP_HEIGHT - 2 * MARK_RADIUS), 2)


def mark_x(position_m: float, length_m: float) -> float:
    share = min(max(position_m / length_m, 0.0), 1.0)
    return round(MARK_RADIUS + share * (MAP_WIDTH - 2 * MARK_RADIUS), 2)


def mark_title(mark: Mark) -> str:
    where = "no position" if mark.position_m is None else f"{mark.position_m:.1f} m"
    across = "" if mark.across_m is None else f", {mark.across_m:.2f} m across"
    score = "" if mark.score is None else f", score {mark.score:.3f}"
    return f"{mark.label} at {where}{across}{score} (inspection {mark.inspection_id})"


def density_bins(positions: Sequence[float], length_m: float) -> list[dict[str, Any]]:
    """Marks per metre in BINS equal stretches of the strip; the busiest bin darkest."""
    size = length_m / BINS
    counts = [0] * BINS
    for position in positions:
        counts[min(max(int(position / size), 0), BINS - 1)] += 1
    busiest = max(counts, default=0)
    width = (MAP_WIDTH - 2 * MARK_RADIUS) / BINS
    bins = []
    for i, count in enumerate(counts):
        if not count:
            continue
        bins.append(
            {
                "x": round(MARK_RADIUS + i * width, 2),
                "width": round(width, 2),
                "count": count,
                "per_m": round(count / size, 4),
                "opacity": round(0.15 + 0.85 * count / busiest, 3),
                "title": f"{count} mark(s) in {i * size:.1f}-{(i + 1) * size:.1f} m "
                f"({count / size:.2f} per m)",
            }
        )
    return bins


def ticks(length_m: float) -> list[dict[str, Any]]:
    step = nice_step(length_m)
    count = int(length_m / step + 1e-9)
    last = count
    return [
        {
            "x": mark_x(i * step, length_m),
            "text": f"{i * step:g} m",
            # the ends' labels stay inside the map
            "anchor": "start" if i == 0 else "end" if i == last else "middle",
        }
        for i in range(count + 1)
    ]


def map_layout(
    marks: Sequence[Mark],
    length_m: float | None,
    colours: dict[str, str],
    href: Callable[[int], str],
) -> dict[str, Any]:
    """Everything the map draws, as JSON-ready values."""
    length = strip_length(marks, length_m)
    width = strip_width(marks)
    placed = [m for m in marks if m.position_m is not None]
    drawn = sorted(placed, key=lambda m: -(m.score or 0.0))[:MAX_DRAWN]
    drawn.sort(key=lambda m: (m.position_m or 0.0, m.inspection_id))

    def view(mark: Mark) -> dict[str, Any]:
        return {
            "inspection_id": mark.inspection_id,
            "label": mark.label,
            "position_m": mark.position_m,
            "across_m": mark.across_m,
            "score": mark.score,
            "colour": colours.get(mark.label, UNKNOWN_COLOUR),
            "href": href(mark.inspection_id),
            "title": mark_title(mark),
        }

    bins = density_bins([m.position_m for m in placed if m.position_m is not None], length)
    return {
        "length_m": length,
        "width_m": round(width, 3),
        "view": {"width": MAP_WIDTH, "height": VIEW_HEIGHT},
        "strip": {"height": STRIP_HEIGHT, "band_top": BAND_TOP, "band_height": BAND_HEIGHT},
        "axis_y": AXIS_Y,
        "radius": MARK_RADIUS,
        "marks": [
            {**view(m), "x": mark_x(m.position_m or 0.0, length), "y": mark_y(m, width)}
            for m in drawn
        ],
        "unplaced": [view(m) for m in marks if m.position_m is None][:MAX_DRAWN],
        "total_marks": len(marks),
        "drawn_marks": len(drawn),
        "bins": bins,
        "busiest_per_m": max((b["per_m"] for b in bins), default=0.0),
        "ticks": ticks(length),
    }

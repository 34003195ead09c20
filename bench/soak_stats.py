"""What the soak's samples mean: memory growth, leaks, latency recovery, the Redis bound.

Pure functions over the samples ``bench/soak.py`` takes, so that the verdicts are
tested on their own (tests/unit/test_soak.py) and a saved JSON can be read again.
A *series* is a list of ``(t, value)`` pairs, ``t`` in epoch seconds, oldest first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

Series = Sequence[tuple[float, float]]

#: the issue's limits: resident memory may grow less than this after the first
#: minutes, and latency must be back to normal within this long after a burst
MAX_GROWTH_PCT = 5.0
RECOVERY_LIMIT_S = 60.0
#: samples whose median stands for a process's memory at a moment (one sample
#: can catch a batch's or a page's short-lived allocations)
MEDIAN_OF = 3
#: jemalloc, Redis's allocator, rounds each allocation up to a size class at most
#: a quarter larger than the one below: a message of N bytes takes at most 1.25 N
ALLOCATOR_SLACK = 1.25


def median_from(series: Series, t: float, n: int = MEDIAN_OF) -> float | None:
    """The median of the first ``n`` values at or after ``t``."""
    values = [v for s, v in series if s >= t][:n]
    return statistics.median(values) if values else None


def median_last(series: Series, n: int = MEDIAN_OF) -> float | None:
    values = [v for _, v in series][-n:]
    return statistics.median(values) if values else None


def growth_pct(before: float, after: float) -> float:
    return 100.0 * (after - before) / before if before else math.inf


def slope_per_hour(series: Series) -> float:
    """The least-squares trend of ``series``, in its unit per hour (0 for under 2 points)."""
    if len(series) < 2:
        return 0.0
    ts = [t for t, _ in series]
    vs = [v for _, v in series]
    t_mean, v_mean = statistics.fmean(ts), statistics.fmean(vs)
    spread = sum((t - t_mean) ** 2 for t in ts)
    if spread == 0:
        return 0.0
    return 3600.0 * sum((t - t_mean) * (v - v_mean) for t, v in zip(ts, vs, strict=True)) / spread


@dataclass
class MemoryGrowth:
    process: str
    at_grace_mb: float
    end_mb: float
    growth_pct: float
    trend_mb_per_h: float
    ok: bool


def memory_growth(
    process: str, rss_mb: Series, grace_end: float, limit_pct: float = MAX_GROWTH_PCT
) -> MemoryGrowth | None:
    """Resident memory at the end of the grace period (the first minutes, in which
    caches fill and pools open) against the end of the run; None without samples."""
    after = [(t, v) for t, v in rss_mb if t >= grace_end]
    at_grace, end = median_from(after, grace_end), median_last(after)
    if at_grace is None or end is None:
        return None
    growth = growth_pct(at_grace, end)
    return MemoryGrowth(process, at_grace, end, growth, slope_per_hour(after), growth < limit_pct)


@dataclass
class CountDrift:
    """A count that must not creep up: open files, database or Redis connections."""

    process: str
    what: str
    start: int  # the most seen up to the end of the grace period
    end: int
    peak: int
    ok: bool


def count_drift(
    process: str, what: str, series: Series, grace_end: float, tolerance: int = 0
) -> CountDrift | None:
    """A leak shows as a count at the end above any seen while the line settled
    (the grace period, when pools open their connections); ``tolerance`` allows
    for what comes and goes with single requests."""
    if not series:
        return None
    settled = [int(v) for t, v in series if t <= grace_end] or [int(series[0][1])]
    start, end = max(settled), int(series[-1][1])
    return CountDrift(
        process, what, start, end, int(max(v for _, v in series)), end <= start + tolerance
    )


def normal_latency_limit(baseline_p95_s: float) -> float:
    """The latency counted as normal again after a burst: twice the baseline's p95,
    and at least half a second above it (a shared 2-core machine jitters by that much)."""
    return max(2.0 * baseline_p95_s, baseline_p95_s + 0.5)


def recovery_seconds(
    windows: Sequence[tuple[float, float]], burst_end: float, limit_s: float, hold_s: float
) -> float | None:
    """How long after ``burst_end`` latency came back to normal and stayed there.

    ``windows``: (start, p95 latency in s) of consecutive windows of jobs by the
    time they were captured. Recovery is at the first window start, at or after
    ``burst_end``, from which every window for ``hold_s`` has a p95 within ``limit_s``;
    None when that never happened (or the run ended before ``hold_s`` could pass).
    """
    after = sorted((t, p) for t, p in windows if t >= burst_end)
    for i, (start, _) in enumerate(after):
        held = [p for t, p in after[i:] if t < start + hold_s]
        later = [t for t, _ in after[i:] if t >= start + hold_s]
        if held and all(p <= limit_s for p in held) and later:
            return max(0.0, start - burst_end)
    return None


def redis_bound_bytes(
    baseline: int,
    max_queue_length: int,
    held: int,
    overshoot: int,
    message_bytes: float,
) -> int:
    """Redis's memory bound implied by the configuration: its idle use, plus the
    queue at MAX_QUEUE_LENGTH, the jobs workers hold (``held``: prefetch) and what
    producers may send between two looks at the queue (``overshoot``), each a
    message of ``message_bytes`` rounded up by the allocator."""
    jobs = max_queue_length + held + overshoot
    return int(baseline + jobs * message_bytes * ALLOCATOR_SLACK)


def producer_overshoot(producers: int, rate_per_producer: float, check_interval_s: float) -> int:
    """Jobs producers may send past MAX_QUEUE_LENGTH: each counts the queue at most
    every ``check_interval_s`` and may send what its last count left room for."""
    return producers * math.ceil(rate_per_producer * check_interval_s)


def share_at_least(
    times: Sequence[float], values: Sequence[float], start: float, end: float, level: float
) -> float | None:
    """The share of the samples in [start, end) whose value was ``level`` or more."""
    inside = [v for t, v in zip(times, values, strict=True) if start <= t < end]
    return sum(v >= level for v in inside) / len(inside) if inside else None


def phase_at(phases: Sequence[tuple[str, float, float]], t: float) -> str:
    """The name of the phase (name, start, end) that ``t`` falls in; '' outside all."""
    for name, start, end in phases:
        if start <= t < end:
            return name
    return ""


def as_dict(item: MemoryGrowth | CountDrift) -> dict[str, object]:
    return asdict(item)

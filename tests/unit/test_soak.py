"""The soak's arithmetic and report (bench/soak_stats.py, soak_probes.py, soak_report.py):
what counts as memory growth, a leak, a recovery, and what the summary says."""

from __future__ import annotations

import copy

import pytest

from bench.soak_probes import attribute, client_ports, parse_client_ports, parse_tcp_table
from bench.soak_report import BEGIN, END, passed, render, section_of, splice, verdicts
from bench.soak_stats import (
    count_drift,
    growth_pct,
    memory_growth,
    normal_latency_limit,
    phase_at,
    producer_overshoot,
    recovery_seconds,
    redis_bound_bytes,
    share_at_least,
    slope_per_hour,
)

GRACE_END = 600.0


def series(values, start=0.0, step=30.0):
    return [(start + i * step, v) for i, v in enumerate(values)]


def test_memory_growth_is_measured_after_the_grace_period():
    # the first ten minutes fill caches (300 -> 500 MB); after that the process is flat
    rss = series([300, 350, 400, 450, 480, 500] + [500] * 15 + [500, 501, 500], step=100)
    growth = memory_growth("worker-0", rss, GRACE_END)
    assert growth is not None
    assert growth.at_grace_mb == 500 and growth.end_mb == 500
    assert growth.ok and abs(growth.growth_pct) < 0.5


def test_a_steady_climb_after_the_grace_period_is_growth():
    rss = series([500 + 5 * i for i in range(40)], step=100)  # +5 MB every 100 s
    growth = memory_growth("admin", rss, GRACE_END)
    assert growth is not None and not growth.ok
    assert growth.growth_pct > 5
    assert growth.trend_mb_per_h == pytest.approx(180.0)


def test_one_sample_at_a_batch_peak_does_not_decide():
    rss = series([500] * 10 + [560] + [500] * 10, start=GRACE_END)
    growth = memory_growth("worker-1", rss, GRACE_END)
    assert growth is not None and growth.ok and growth.end_mb == 500


def test_memory_growth_without_samples_after_the_grace_is_none():
    assert memory_growth("worker-0", series([500, 500]), GRACE_END) is None


def test_growth_and_slope_arithmetic():
    assert growth_pct(200, 210) == pytest.approx(5.0)
    assert slope_per_hour([(0, 1.0), (3600, 3.0)]) == pytest.approx(2.0)
    assert slope_per_hour([(0, 1.0)]) == 0.0


def test_counts_that_settle_are_no_leak_and_a_creeping_one_is():
    pool = count_drift("worker-0", "pg", series([1, 2, 3, 3, 3, 3, 3], step=150), GRACE_END)
    assert pool is not None and pool.ok and (pool.start, pool.end) == (3, 3)
    creeping = count_drift(
        "admin", "fds", series([10] * 5 + list(range(11, 30)), step=150), GRACE_END
    )
    assert creeping is not None and not creeping.ok and creeping.end == 29
    jitter = count_drift("admin", "fds", series([10] * 5 + [12, 14, 11], step=150), GRACE_END, 4)
    assert jitter is not None and jitter.ok and jitter.peak == 14


def test_recovery_is_the_first_window_from_which_latency_stays_normal():
    burst_end = 1000.0
    windows = [(burst_end - 10, 30.0), (burst_end - 5, 30.0)]  # the burst
    windows += [(burst_end + 5 * i, 30.0 - i) for i in range(10)]  # draining: 30 s ... 21 s
    windows += [(burst_end + 50, 0.2), (burst_end + 55, 5.0)]  # a relapse
    windows += [(burst_end + 60 + 5 * i, 0.2) for i in range(20)]  # normal for 100 s
    assert recovery_seconds(windows, burst_end, limit_s=0.7, hold_s=60) == 60
    assert recovery_seconds(windows[:-15], burst_end, limit_s=0.7, hold_s=60) is None  # too short
    assert recovery_seconds(windows, burst_end, limit_s=40, hold_s=60) == 0


def test_normal_latency_is_twice_the_baseline_at_least_half_a_second_above():
    assert normal_latency_limit(0.1) == pytest.approx(0.6)
    assert normal_latency_limit(2.0) == pytest.approx(4.0)


def test_the_redis_bound_follows_the_queue_limit():
    overshoot = producer_overshoot(producers=2, rate_per_producer=500, check_interval_s=0.25)
    assert overshoot == 250
    bound = redis_bound_bytes(
        baseline=2_000_000, max_queue_length=5000, held=128, overshoot=250, message_bytes=50_000
    )
    assert bound == 2_000_000 + int(5378 * 50_000 * 1.25)


def test_the_share_of_a_phase_with_a_full_queue():
    times, queue = [0, 1, 2, 3, 4, 5], [0, 500, 950, 1000, 990, 10]
    assert share_at_least(times, queue, 1, 5, 900) == 0.75
    assert share_at_least(times, queue, 10, 20, 900) is None


def test_phases_name_the_moment():
    phases = [("baseline", 0.0, 10.0), ("overload", 10.0, 20.0)]
    assert [phase_at(phases, t) for t in (0, 9.9, 10, 25)] == [
        "baseline",
        "baseline",
        "overload",
        "",
    ]


TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:D431 0100007F:1538 01 00000000:00000000 00:00000000 00000000  0  0 4242 1 0
   1: 0100007F:D432 0100007F:18EB 01 00000000:00000000 00:00000000 00000000  0  0 4343 1 0
   2: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 0 1 0
"""


def test_connections_are_counted_against_the_process_that_holds_them():
    sockets = parse_tcp_table(TCP)
    assert sockets == {4242: (0xD431, 5432), 4343: (0xD432, 6379)}
    worker = client_ports({4242, 4343, 99}, sockets, 5432)
    assert worker == {0xD431}
    counts, other = attribute([0xD431, 0xD431 + 100], {"worker-0": worker, "admin": set()})
    assert counts["worker-0"] == 1 and counts["admin"] == 0 and other == 1
    assert parse_client_ports(["127.0.0.1:54321", "[::1]:6000", "garbage"]) == [54321, 6000]


def a_result():
    """A run's result as bench/soak.py saves it, every criterion met."""
    memory = {"at_grace_mb": 700.0, "end_mb": 703.5, "growth_pct": 0.5, "trend_mb_per_h": 4.0}
    return {
        "started": "2026-12-05T12:00:00+00:00",
        "machine": "a CPU, 2 cores, Python 3.11",
        "command": "python -m bench.soak",
        "wall_minutes": 77.0,
        "load_average_start": 1.0,
        "load_average_end": 2.0,
        "image_bytes": 23_000.0,
        "plan": {
            "minutes": 60.0,
            "overload_minutes": 10.0,
            "grace_minutes": 10.0,
            "baseline_minutes": 2.0,
            "capacity_seconds": 60.0,
            "sample_seconds": 30.0,
            "hold_seconds": 60.0,
            "workers": 2,
            "producers": 2,
            "overload_factor": 5.0,
            "soak_share": 0.5,
            "max_queue_length": None,
            "supervisor_rate": 3.0,
            "batch_size": 32,
            "window_seconds": 5.0,
            "quick": False,
        },
        "phases": [("baseline", 0, 120), ("overload", 120, 720), ("soak", 720, 4320)],
        "fast": {"t": [200, 300, 400, 700], "queue": [100, 200, 2000, 1990]},
        "capacity": {"jobs_per_s": 200.0, "saturated": True, "queue_limit": 1000},
        "rates": {
            "half": 100.0,
            "overload": 1000.0,
            "max_queue_length": 2000,
            "configured_max_queue_length": 5000,
            "auto": True,
            "auto_seconds": 10.0,
            "taken_during_burst": 400.0,
            "committed_during_burst": 180.0,
        },
        "producers": [
            {"phase": "capacity", "submitted": 10_000, "held_back": 0, "waited_for_room_s": 5.0},
            {
                "phase": "main",
                "submitted": 600_000,
                "held_back": 300_000,
                "waited_for_room_s": 500.0,
            },
        ],
        "jobs": {
            "sent": 610_128,
            "sent_twice": 0,
            "rows": 610_128,
            "lost": 0,
            "duplicate_rows": 0,
            "unexpected_rows": 0,
            "by_status": {"flagged": 610_128},
        },
        "latency": {
            "before": {"jobs": 12_000, "p50_s": 0.05, "p95_s": 0.1, "p99_s": 0.2},
            "during": {"jobs": 240_000, "p50_s": 10.0, "p95_s": 11.0, "p99_s": 12.0},
            "first_minute_after": {"jobs": 6000, "p50_s": 5.0, "p95_s": 10.0, "p99_s": 11.0},
            "rest_of_soak": {"jobs": 354_000, "p50_s": 0.05, "p95_s": 0.1, "p99_s": 0.2},
            "normal_limit_s": 0.6,
            "recovery_s": 25.0,
            "recovery_limit_s": 60.0,
            "windows": [],
        },
        "redis": {
            "baseline": 2_000_000,
            "peak_sampled": 100_000_000,
            "peak_reported": 101_000_000,
            "bound": 150_000_000,
            "message_bytes": 51_000.0,
            "message_bytes_max": 60_000,
            "held": 128,
            "overshoot": 250,
            "queue_peak": 2010,
            "bytes_per_queued_job": 47_000.0,
            "watch_errors": 0,
        },
        "spool": {"peak_bytes": 0, "peak_files": 0, "spool_max_bytes": 2**30},
        "supervisor": {
            "requests": {"line": 5000, "dashboard": 200},
            "errors": {},
            "last_error": {},
            "p95_ms": {"line": 40.0, "dashboard": 900.0},
            "dashboard_queue_peak": 2008,
            "dashboard_shows_queue": True,
        },
        "soak": {
            "grace_end": 1320,
            "memory": [
                {"process": "worker-0", "judged": True, "ok": True, "pids": [1], **memory},
                {"process": "admin", "judged": True, "ok": True, "pids": [2], **memory},
                {"process": "camera-0", "judged": False, "ok": False, "pids": [3], **memory},
            ],
            "counts": [
                {
                    "process": "worker-0",
                    "what": "fds",
                    "start": 20,
                    "end": 20,
                    "peak": 21,
                    "ok": True,
                    "judged": True,
                },
                {
                    "process": "worker-0",
                    "what": "pg",
                    "start": 1,
                    "end": 1,
                    "peak": 1,
                    "ok": True,
                    "judged": True,
                },
            ],
            "totals": [
                {"process": "all", "what": "pg_total", "start": 6, "end": 6, "peak": 6, "ok": True},
                {
                    "process": "all",
                    "what": "redis_total",
                    "start": 30,
                    "end": 30,
                    "peak": 30,
                    "ok": True,
                },
            ],
        },
    }


def test_a_clean_run_meets_every_criterion_and_the_report_says_so():
    result = a_result()
    assert passed(result), verdicts(result)
    text = render(result)
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert "## Overload" in text and "## Soak" in text
    assert "**200 jobs/s**" in text
    assert "| rows / lost / duplicated / rows of no job sent | 610128 / 0 / 0 / 0 |" in text
    assert "**25 s** after the burst's end" in text
    assert "| worker-0 | 700 MB | 704 MB | +0.5% |" in text
    assert "camera-0 (not judged)" in text
    assert "| 50% |" in text  # of the burst's samples, the queue was full
    assert "**missed**" not in text


@pytest.mark.parametrize(
    ("change", "criterion"),
    [
        (lambda r: r["jobs"].update(lost=1), "no job lost"),
        (lambda r: r["jobs"].update(duplicate_rows=1), "no job duplicated"),
        (lambda r: r["latency"].update(recovery_s=None), "latency normal within 60 s"),
        (lambda r: r["latency"].update(recovery_s=75.0), "latency normal within 60 s"),
        (lambda r: r["redis"].update(peak_reported=200_000_000), "Redis memory within"),
        (lambda r: r["soak"]["memory"][1].update(ok=False), "memory grew"),
        (lambda r: r["soak"]["counts"][1].update(ok=False), "creeping up"),
        (lambda r: r["supervisor"].update(dashboard_shows_queue=False), "the dashboard showed"),
        (lambda r: r["supervisor"].update(errors={"dashboard": 1}), "the admin answered"),
    ],
)
def test_each_failure_is_named_in_the_verdicts(change, criterion):
    result = copy.deepcopy(a_result())
    change(result)
    missed = [name for name, ok in verdicts(result).items() if not ok]
    assert len(missed) == 1 and criterion in missed[0]
    assert not passed(result)
    assert "**missed**" in render(result)


def test_a_process_not_judged_does_not_fail_the_run():
    result = a_result()
    assert not result["soak"]["memory"][2]["ok"]  # the camera grew; it is not the line
    assert passed(result)


def test_the_soak_sections_are_spliced_in_and_the_rest_kept():
    report = (
        "# Benchmarks\n\nkept\n\n<!-- bench.frames: begin -->\nframes\n<!-- bench.frames: end -->\n"
    )
    first = splice(report, f"{BEGIN}\nold\n{END}\n")
    assert first.startswith(report.rstrip("\n")) and section_of(first) == f"{BEGIN}\nold\n{END}"
    second = splice(first + "\ntail\n", f"{BEGIN}\nnew\n{END}")
    assert "old" not in second and "new" in second and second.endswith("tail\n")
    assert second.count(BEGIN) == 1 and "kept" in second and "frames" in second

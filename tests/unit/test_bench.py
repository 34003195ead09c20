"""The benchmark harness itself: a scenario runs the workers it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.frames import (
    BEGIN,
    END,
    FRAME_STAGES,
    METRICS_THREAD,
    FramesLine,
    LineRun,
    StripRun,
    bounding_stage,
    frames_section,
    render_line,
    splice_section,
)
from bench.line import Line, Scenario
from bench.profile_worker import OTHER, breakdown
from core.settings import settings_from_env

PAPER_CHECKPOINT = Path("var/bench/paper.pt")


def test_a_scenario_checkpoint_reaches_the_workers(tmp_path):
    # The workers read their model from MODEL_CHECKPOINT; a scenario that names a
    # checkpoint (the paper network) must run with it, not the default.
    base = settings_from_env({})
    named = Line(base, Scenario("paper", 1, 1, 32, checkpoint=PAPER_CHECKPOINT), tmp_path)
    assert named.env()["MODEL_CHECKPOINT"] == str(PAPER_CHECKPOINT)
    assert settings_from_env(named.env()).model_checkpoint == PAPER_CHECKPOINT
    default = Line(base, Scenario("default", 1, 1, 32), tmp_path)
    assert settings_from_env(default.env()).model_checkpoint is None


def test_the_frames_section_is_spliced_in_and_the_rest_kept():
    # python -m bench.frames rewrites only its section; python -m bench keeps it
    section = f"{BEGIN}\n## Frames\n\nnew figures\n{END}\n"
    report = "# Benchmarks\n\n## Embedding ceiling\n\n| a | b |\n"
    appended = splice_section(report, section)
    assert appended == report + "\n" + section
    assert frames_section(appended) == section.strip("\n")

    old = f"{BEGIN}\n## Frames\n\nold figures\n{END}"
    before, after = "# Benchmarks\n\nintro\n\n", "\n\n## The queue\n\nrows\n"
    replaced = splice_section(before + old + after, section)
    assert replaced == before + section.strip("\n") + after
    assert splice_section(replaced, section) == replaced  # run twice: the same file

    assert frames_section(report) is None
    assert splice_section("", section) == section


def test_a_profile_counts_each_sample_once_in_its_first_stage(tmp_path):
    # py-spy's raw format: a stack of frames, then how many samples it had
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (tasks.py:1);inspect_batch (i.py:2);judge_frames (i.py:3);"
        "FrameInspector.inspect (f.py:4);GoodSurfaceMemory.nearest (f.py:5) 6\n"
        "run (tasks.py:1);inspect_batch (i.py:2);judge_frames (i.py:3);"
        "FrameInspector.inspect (f.py:4);PatchFeatures._maps (f.py:6) 2\n"
        "run (tasks.py:1);inspect_batch (i.py:2);judge_frames (i.py:3);save (Image.py:7) 1\n"
        "asynloop (loops.py:8) 1\n"
        "Thread.run (threading.py:9);BaseServer.serve_forever (socketserver.py:10) 90\n"
    )
    shares = dict(breakdown(raw, FRAME_STAGES, ignore=METRICS_THREAD))
    assert shares["search: nearest good-surface features (faiss)"] == 0.6
    assert shares["features: contrast normalisation and network forward"] == 0.2
    assert shares["heat map: drawn and PNG-encoded"] == 0.1
    assert shares[OTHER] == 0.1
    assert sum(shares.values()) == pytest.approx(1.0)
    # without leaving out the metrics endpoint's thread, its waiting dilutes the rest
    assert dict(breakdown(raw, FRAME_STAGES))[OTHER] == 0.91


def line_run(name, frames_per_s, profile):
    return LineRun(
        scenario=name,
        processes=1,
        threads=2,
        batch_size=32,
        frames=100,
        span_s=100 / frames_per_s,
        steady_fps=frames_per_s,
        rss_mb=[900.0],
        cpu_s=100 / frames_per_s * 1.9,
        cpu_share=0.95,
        latency_rate=frames_per_s / 2,
        latency_frames=30,
        p50_ms=400.0,
        p95_ms=600.0,
        profile=profile,
    )


def test_the_end_to_end_frames_part_names_the_bound_and_the_target_ratio():
    search, features = FRAME_STAGES[0][1], FRAME_STAGES[1][1]
    decode = "decode: the message's base64 and the PNG"
    slow = line_run("2 processes x 1 thread", 1.0, [(search, 0.5), (features, 0.3), (OTHER, 0.2)])
    fast = line_run("1 process x 2 threads", 1.5, [(search, 0.7), (features, 0.2), (decode, 0.1)])
    line = FramesLine(
        png_kb=950.0,
        build_s=9.0,
        memory_rows=5000,
        runs=[fast, slow],
        strips=StripRun(strips=8, png_mb=13.3, seconds=40.0, rss_mb=2500.0),
        db_kind="PostgreSQL",
        load=(0.1, 0.2),
    )
    text = "\n".join(render_line(line, model_fps=2.0))
    # 1.5 frames/s of 2048x1024: 3.15 MP/s, over the 2 MP/s target, under the goal of 4
    assert "| 1 process x 2 threads | 100 | 1.50 | **3.15** |" in text
    assert "/ 2 MP/s per host | 1.57x | 1x | met |" in text
    assert "4 MP/s per host | 0.79x | 1x | **missed** (79% of it) |" in text
    assert "**The stage that bounds it: search**" in text
    assert "70% of the samples of a worker of *1 process x 2 threads*" in text
    assert "50% in *2 processes x 1 thread*" in text
    assert "peak RSS **2500 MB** (target < 2048 MB: **missed**)" in text
    assert bounding_stage(slow.profile) == (search, 0.5)  # idle never bounds

"""The benchmark harness itself: a scenario runs the workers it names."""

from __future__ import annotations

from pathlib import Path

from bench.frames import BEGIN, END, frames_section, splice_section
from bench.line import Line, Scenario
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

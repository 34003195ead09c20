"""The benchmark harness itself: a scenario runs the workers it names."""

from __future__ import annotations

from pathlib import Path

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

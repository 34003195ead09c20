"""The benchmark harness itself: a scenario runs the workers it names."""

from __future__ import annotations

from bench.line import Line, Scenario
from core.settings import settings_from_env
from model import FAST_CHECKPOINT


def test_a_scenario_checkpoint_reaches_the_workers(tmp_path):
    # The workers read their model from MODEL_CHECKPOINT; a scenario that names a
    # checkpoint (the paper network, the fast model) must run with it, not the default.
    base = settings_from_env({})
    named = Line(base, Scenario("fast", 1, 1, 32, checkpoint=FAST_CHECKPOINT), tmp_path)
    assert named.env()["MODEL_CHECKPOINT"] == str(FAST_CHECKPOINT)
    assert settings_from_env(named.env()).model_checkpoint == FAST_CHECKPOINT
    default = Line(base, Scenario("default", 1, 1, 32), tmp_path)
    assert settings_from_env(default.env()).model_checkpoint is None

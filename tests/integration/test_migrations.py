"""Alembic: `upgrade head` creates every table and `check` finds no drift, on both backends."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect, text

from core.tables import Base
from tests.conftest import ROOT


def alembic(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inspection.db'}"
    return request.getfixturevalue("pg_url")


def test_upgrade_head_then_check_reports_no_drift(empty_database_url):
    upgraded = alembic("upgrade", "head", url=empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade" in upgraded.stderr

    engine = create_engine(empty_database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert {"inspections", "references", "users", "reference_embeddings"} <= tables

    checked = alembic("check", url=empty_database_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_downgrade_base_removes_every_table(empty_database_url):
    assert alembic("upgrade", "head", url=empty_database_url).returncode == 0
    downgraded = alembic("downgrade", "base", url=empty_database_url)
    assert downgraded.returncode == 0, downgraded.stderr
    engine = create_engine(empty_database_url)
    left = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert left == set()


def test_thresholds_set_before_0004_go_to_the_latest_model(empty_database_url):
    """Settings made before thresholds were kept per model version belong to the model
    registered last (the one they were tuned on), and a downgrade keeps them."""
    assert alembic("upgrade", "0003", url=empty_database_url).returncode == 0
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        for version, at in (("old-model", "2026-11-01"), ("newer-model", "2026-11-20")):
            connection.execute(
                text(
                    "INSERT INTO model_versions (version, arch, threshold, meta, first_loaded_at)"
                    " VALUES (:v, 'texture_net', 1.3, '{}', :at)"
                ),
                {"v": version, "at": at},
            )
        connection.execute(
            text(
                "INSERT INTO thresholds (label, value, updated_by, updated_at)"
                " VALUES ('crazing', 0.9, 'ada', '2026-11-21')"
            )
        )
    upgraded = alembic("upgrade", "head", url=empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT model_version, label, value FROM thresholds"))
        assert [tuple(r) for r in rows] == [("newer-model", "crazing", 0.9)]
    downgraded = alembic("downgrade", "0003", url=empty_database_url)
    assert downgraded.returncode == 0, downgraded.stderr
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT label, value FROM thresholds"))
        assert [tuple(r) for r in rows] == [("crazing", 0.9)]
    engine.dispose()

"""Running the Alembic migrations from Python (the demo and tests use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str, quiet: bool = True) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["quiet"] = quiet
    return config


def upgrade_to_head(database_url: str) -> None:
    """``alembic upgrade head`` against ``database_url``."""
    command.upgrade(alembic_config(database_url), "head")

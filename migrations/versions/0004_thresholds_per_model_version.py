"""thresholds per model version

An admin's threshold is a distance, and distances of two models are on different
scales (the default's calibrated threshold moved from 1.28 to 1.35 between two
releases). Settings are now kept per model version and apply only to it; a newly
deployed model starts from its own calibration.

Settings made before this revision are given to the most recently registered
model version (``model_versions.first_loaded_at``): the one they were most
likely tuned on. Their audit rows keep no version (NULL).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATEST_MODEL = sa.text("SELECT version FROM model_versions ORDER BY first_loaded_at DESC LIMIT 1")


def upgrade() -> None:
    latest = op.get_bind().execute(LATEST_MODEL).scalar() or ""
    with op.batch_alter_table("thresholds") as batch:
        batch.add_column(sa.Column("model_version", sa.String(length=64), nullable=True))
    op.execute(
        sa.text("UPDATE thresholds SET model_version = :version").bindparams(version=latest)
    )
    with op.batch_alter_table("thresholds") as batch:
        batch.alter_column("model_version", existing_type=sa.String(length=64), nullable=False)
        batch.drop_constraint("pk_thresholds", type_="primary")
        batch.create_primary_key("pk_thresholds", ["model_version", "label"])
    with op.batch_alter_table("threshold_changes") as batch:
        batch.add_column(sa.Column("model_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # One setting per label again: the latest model's are kept, the others dropped.
    latest = op.get_bind().execute(LATEST_MODEL).scalar() or ""
    op.execute(
        sa.text("DELETE FROM thresholds WHERE model_version != :version").bindparams(
            version=latest
        )
    )
    with op.batch_alter_table("threshold_changes") as batch:
        batch.drop_column("model_version")
    with op.batch_alter_table("thresholds") as batch:
        batch.drop_constraint("pk_thresholds", type_="primary")
        batch.drop_column("model_version")
        batch.create_primary_key("pk_thresholds", ["label"])

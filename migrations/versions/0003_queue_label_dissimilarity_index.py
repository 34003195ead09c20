"""queue index: status, label, dissimilarity

The queue filtered by label and sorted by dissimilarity read every row of the
label before this index (about 120 ms at a million rows on PostgreSQL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 00:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.tables import SORT_DISSIMILARITY

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_inspections_status_label_dissimilarity_id"


def upgrade() -> None:
    op.create_index(
        INDEX, "inspections", ["status", "label", sa.text(SORT_DISSIMILARITY), "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="inspections")

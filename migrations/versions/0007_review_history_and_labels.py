"""review history, the label list, embeddings of inspections, reasons for thresholds

- ``review_events``: every review of an inspection (who, when, what, comment, the
  state before and after), so that none is overwritten and the last can be undone;
  ``request_id`` makes a resubmitted review count once;
- ``labels``: the labels to choose from, seeded with every label in use; a label
  can be deactivated;
- ``inspections.embedding``: the naming network's code of the image, for "the most
  similar confirmed inspections";
- ``threshold_changes.reason``: why an admin changed a threshold.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 11:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("threshold_changes") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("state_before", sa.String(length=12), nullable=False),
        sa.Column("label_before", sa.String(length=80), nullable=True),
        sa.Column("state_after", sa.String(length=12), nullable=False),
        sa.Column("label_after", sa.String(length=80), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_review_events_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
        sa.UniqueConstraint("request_id", name=op.f("uq_review_events_request_id")),
    )
    op.create_index(
        "ix_review_events_inspection_id_id", "review_events", ["inspection_id", "id"]
    )
    labels = op.create_table(
        "labels",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_labels")),
    )
    # Every label already in use becomes a choice.
    in_use = sa.text(
        'SELECT label FROM "references" UNION SELECT label FROM inspections'
        " UNION SELECT review_label FROM inspections UNION SELECT label FROM findings"
    )
    names = sorted({row[0] for row in op.get_bind().execute(in_use) if row[0]})
    if names:
        now = datetime.now(UTC)
        op.bulk_insert(labels, [{"name": n, "active": True, "created_at": now} for n in names])


def downgrade() -> None:
    op.drop_table("labels")
    op.drop_index("ix_review_events_inspection_id_id", table_name="review_events")
    op.drop_table("review_events")
    with op.batch_alter_table("threshold_changes") as batch:
        batch.drop_column("reason")
    # Not a batch: on SQLite it would rebuild the table and lose the expression
    # index of revision 0003 (SQLite drops a plain column in place since 3.35).
    op.execute("ALTER TABLE inspections DROP COLUMN embedding")

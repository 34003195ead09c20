"""frames and findings: good-surface memories, findings, cameras

A frame is judged by its camera's good-surface memory where the camera has good
frames (``ok`` references with a camera); connected anomalous regions become
findings, each named by the nearest ``defect`` reference:

- ``references.camera``: the camera an ``ok`` reference is a good frame of;
- ``inspections.anomaly_key``: the frame's anomaly map in the image store;
- ``findings``: the regions of a frame (box, area, score, label, nearest reference);
- ``cameras``: the scale the model looks at a camera's frames;
- ``camera_thresholds``: admins' frame-score thresholds per camera and model version,
  audited in ``threshold_changes`` (its new ``camera`` column);
- ``surface_memories``: the memories, cached per camera, model version and good frames.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("references") as batch:
        batch.add_column(sa.Column("camera", sa.String(length=120), nullable=True))
        batch.create_index(batch.f("ix_references_camera"), ["camera"], unique=False)
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("anomaly_key", sa.String(length=80), nullable=True))
    with op.batch_alter_table("threshold_changes") as batch:
        batch.add_column(sa.Column("camera", sa.String(length=120), nullable=True))
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("reference_id", sa.Integer(), nullable=True),
        sa.Column("distance", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_findings_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reference_id"],
            ["references.id"],
            name=op.f("fk_findings_reference_id_references"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    op.create_index(op.f("ix_findings_inspection_id"), "findings", ["inspection_id"])
    op.create_index(op.f("ix_findings_label"), "findings", ["label"])
    op.create_table(
        "cameras",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=80), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cameras")),
    )
    op.create_table(
        "camera_thresholds",
        sa.Column("camera", sa.String(length=120), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=80), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("camera", "model_version", name=op.f("pk_camera_thresholds")),
    )
    op.create_table(
        "surface_memories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera", sa.String(length=120), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("rows", sa.LargeBinary(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surface_memories")),
        sa.UniqueConstraint(
            "camera",
            "model_version",
            "signature",
            name=op.f("uq_surface_memories_camera_model_version_signature"),
        ),
    )


def downgrade() -> None:
    op.drop_table("surface_memories")
    op.drop_table("camera_thresholds")
    op.drop_table("cameras")
    op.drop_index(op.f("ix_findings_label"), table_name="findings")
    op.drop_index(op.f("ix_findings_inspection_id"), table_name="findings")
    op.drop_table("findings")
    with op.batch_alter_table("threshold_changes") as batch:
        batch.drop_column("camera")
    # Not a batch: on SQLite it would rebuild the table and lose the expression
    # index of revision 0003 (SQLite drops a plain column in place since 3.35).
    op.execute("ALTER TABLE inspections DROP COLUMN anomaly_key")
    with op.batch_alter_table("references") as batch:
        batch.drop_index(batch.f("ix_references_camera"))
        batch.drop_column("camera")

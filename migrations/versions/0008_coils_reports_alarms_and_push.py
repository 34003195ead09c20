"""coils and traceability, coil rules, alarms, reports, and pushing results out

- ``inspections.coil_id``, ``frame_index``, ``position_m``, ``across_m``: where on
  which coil a frame was taken; ``cameras.frame_length_m`` and ``across_m``: what a
  job that does not say it takes from its camera;
- ``coils``: each coil seen, its counts, its end and its verdict; ``coil_rules``: the
  rules of that verdict; ``alarm_rules``: label rates the live dashboard watches;
- ``reports``: coil and shift reports (PDF and CSV in the image store);
- ``events``, ``webhooks``, ``deliveries``: the outbox of what plant systems are
  told, their endpoints, and the delivery log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alarm_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_rules")),
    )
    op.create_table(
        "coil_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.Column("per_m", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coil_rules")),
    )
    op.create_table(
        "coils",
        sa.Column("coil_id", sa.String(length=80), nullable=False),
        sa.Column("first_frame_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_frame_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Integer(), nullable=False),
        sa.Column("length_m", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict", sa.String(length=10), nullable=True),
        sa.Column("verdict_reasons", sa.JSON(), nullable=True),
        sa.Column("verdict_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("coil_id", name=op.f("pk_coils")),
    )
    with op.batch_alter_table("coils", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coils_ended_at"), ["ended_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_coils_last_frame_at"), ["last_frame_at"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("camera", sa.String(length=120), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fanned_out", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_fanned_out"), ["fanned_out"], unique=False)

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("made_by", sa.String(length=80), nullable=True),
        sa.Column("pdf_key", sa.String(length=80), nullable=False),
        sa.Column("csv_key", sa.String(length=80), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index("ix_reports_kind_subject", ["kind", "subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_made_at"), ["made_at"], unique=False)

    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("events", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=10), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_event_id"), ["event_id"], unique=False)
        batch_op.create_index(
            "ix_deliveries_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deliveries_webhook_id"), ["webhook_id"], unique=False)

    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frame_length_m", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("across_m", sa.Float(), nullable=True))

    # Plain statements, not a batch: on SQLite a batch may rebuild the table and lose
    # the expression index of revision 0003 (adding and dropping a plain column are
    # done in place).
    for column in (
        sa.Column("coil_id", sa.String(length=80), nullable=True),
        sa.Column("frame_index", sa.Integer(), nullable=True),
        sa.Column("position_m", sa.Float(), nullable=True),
        sa.Column("across_m", sa.Float(), nullable=True),
    ):
        op.add_column("inspections", column)
    op.create_index("ix_inspections_coil_id_position_m", "inspections", ["coil_id", "position_m"])


def downgrade() -> None:
    op.drop_index("ix_inspections_coil_id_position_m", table_name="inspections")
    for column in ("across_m", "position_m", "frame_index", "coil_id"):
        op.execute(f"ALTER TABLE inspections DROP COLUMN {column}")

    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.drop_column("across_m")
        batch_op.drop_column("frame_length_m")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_webhook_id"))
        batch_op.drop_index("ix_deliveries_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_deliveries_event_id"))

    op.drop_table("deliveries")
    op.drop_table("webhooks")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_made_at"))
        batch_op.drop_index("ix_reports_kind_subject")

    op.drop_table("reports")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_fanned_out"))

    op.drop_table("events")
    with op.batch_alter_table("coils", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coils_last_frame_at"))
        batch_op.drop_index(batch_op.f("ix_coils_ended_at"))

    op.drop_table("coils")
    op.drop_table("coil_rules")
    op.drop_table("alarm_rules")

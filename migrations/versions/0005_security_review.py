"""dead letters, session versions, API token scopes

A security review found messages that could stop the workers or vanish, cookies
that outlived logout, and tokens that could do everything:

- ``dead_letters``: broker messages from which no job id could be recovered
  (every other broken message becomes a rejected inspection row);
- ``users.session_version``: part of every session, raised on logout and on a
  password change, so older sessions end;
- ``api_tokens.scopes``: what a token may do. Tokens made before this revision
  could do everything and keep every scope; new tokens get only what they ask for.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALL_SCOPES = "submit read review metrics"


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=True),
        sa.Column("task_id", sa.String(length=200), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("body_bytes", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_received_at"), "dead_letters", ["received_at"], unique=False
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("scopes", sa.String(length=100), server_default="read", nullable=False)
        )
    op.execute(sa.text("UPDATE api_tokens SET scopes = :all").bindparams(all=ALL_SCOPES))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("scopes")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")
    op.drop_index(op.f("ix_dead_letters_received_at"), table_name="dead_letters")
    op.drop_table("dead_letters")

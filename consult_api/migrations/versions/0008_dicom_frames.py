"""DICOM image facts on materials: frames, transfer syntax, photometric, default window.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("materials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frames", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("transfer_syntax", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("photometric", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("window_center", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("window_width", sa.Float(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("materials", schema=None) as batch_op:
        batch_op.drop_column("window_width")
        batch_op.drop_column("window_center")
        batch_op.drop_column("photometric")
        batch_op.drop_column("transfer_syntax")
        batch_op.drop_column("frames")

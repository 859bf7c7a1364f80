"""Recordings received as bytes: stored directory, size, verified flag, status (attached,
unclaimed, discarded), the recording's time span; links of recordings to consultations with
a window; a consultation's bed room.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 15:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("artefacts", schema=None) as batch_op:
        batch_op.alter_column("consultation_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("status", sa.String(length=20), nullable=False,
                                      server_default="attached"))
        batch_op.add_column(sa.Column("stored_dir", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("size", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("verified", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_artefacts_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_artefacts_room"), ["room"], unique=False)
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bed_room", sa.String(length=100), nullable=True))
        batch_op.create_index(batch_op.f("ix_consultations_bed_room"), ["bed_room"],
                              unique=False)
    op.create_table(
        "artefact_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artefact_id", sa.Integer(), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attached_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["artefact_id"], ["artefacts.id"],
                                name=op.f("fk_artefact_links_artefact_id_artefacts")),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name=op.f("fk_artefact_links_consultation_id_consultations")),
        sa.ForeignKeyConstraint(["attached_by"], ["users.id"],
                                name=op.f("fk_artefact_links_attached_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artefact_links")),
        sa.UniqueConstraint("artefact_id", "consultation_id",
                            name="uq_artefact_links_artefact_consultation"),
    )
    with op.batch_alter_table("artefact_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artefact_links_artefact_id"), ["artefact_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_artefact_links_consultation_id"),
                              ["consultation_id"], unique=False)
    # Recordings handed off before this revision belong to their consultation: link them.
    op.execute("INSERT INTO artefact_links (artefact_id, consultation_id, attached_at) "
               "SELECT id, consultation_id, received_at FROM artefacts "
               "WHERE consultation_id IS NOT NULL")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("artefact_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artefact_links_consultation_id"))
        batch_op.drop_index(batch_op.f("ix_artefact_links_artefact_id"))
    op.drop_table("artefact_links")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultations_bed_room"))
        batch_op.drop_column("bed_room")
    op.execute("DELETE FROM artefacts WHERE consultation_id IS NULL")
    with op.batch_alter_table("artefacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artefacts_room"))
        batch_op.drop_index(batch_op.f("ix_artefacts_status"))
        batch_op.drop_column("ended_at")
        batch_op.drop_column("started_at")
        batch_op.drop_column("verified")
        batch_op.drop_column("size")
        batch_op.drop_column("stored_dir")
        batch_op.drop_column("status")
        batch_op.alter_column("consultation_id", existing_type=sa.Integer(), nullable=False)

"""Audit context: role, hospital, client address, outcome, listed ids, detail; the
``audit_objects`` side table; append-only triggers on both audit tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000

The triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL; SQLite has none, and
its DELETE-without-WHERE shortcut is off for tables with triggers). On SQLite a later
``batch_alter_table`` on these tables recreates them without the triggers: such a migration
must call ``install_append_only`` again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("audit_log", "audit_objects")
MESSAGE = "the audit log is append-only"


def install_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$""")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
    else:
        for table in TABLES:
            for event in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def remove_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    else:
        for table in TABLES:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("hospital_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=10), server_default="ok",
                                      nullable=False))
        batch_op.add_column(sa.Column("ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("detail", sa.String(length=200), nullable=True))
        batch_op.alter_column("action", existing_type=sa.String(length=50),
                              type_=sa.String(length=100), existing_nullable=False)
        batch_op.alter_column("object_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_check_constraint(op.f("ck_audit_log_outcome"),
                                         "outcome IN ('ok', 'refused', 'failed')")
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)

    op.create_table(
        "audit_objects",
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["audit_id"], ["audit_log.id"],
                                name=op.f("fk_audit_objects_audit_id_audit_log")),
        sa.PrimaryKeyConstraint("audit_id", "object_type", "object_id",
                                name=op.f("pk_audit_objects")),
    )
    with op.batch_alter_table("audit_objects", schema=None) as batch_op:
        batch_op.create_index("ix_audit_objects_object", ["object_type", "object_id"],
                              unique=False)
    # Rows written before this revision are findable by their object too.
    op.execute("INSERT INTO audit_objects (audit_id, object_type, object_id) "
               "SELECT id, object_type, object_id FROM audit_log")
    install_append_only()


def downgrade() -> None:
    """Downgrade schema. Keeps every audit row (rows without an object get object id 0)."""
    remove_append_only()
    op.drop_table("audit_objects")
    op.execute("UPDATE audit_log SET object_id = 0 WHERE object_id IS NULL")
    op.execute("UPDATE audit_log SET action = substr(action, 1, 50) WHERE length(action) > 50")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))
        batch_op.drop_constraint(op.f("ck_audit_log_outcome"), type_="check")
        batch_op.alter_column("object_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("action", existing_type=sa.String(length=100),
                              type_=sa.String(length=50), existing_nullable=False)
        batch_op.drop_column("detail")
        batch_op.drop_column("ids")
        batch_op.drop_column("outcome")
        batch_op.drop_column("address")
        batch_op.drop_column("hospital_id")
        batch_op.drop_column("role")

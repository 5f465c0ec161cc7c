"""Adapter registry: versions with lineage, per-domain aliases and their history.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registry's tables."""
    op.create_table(
        "adapters",
        sa.Column("version", sa.String(150), primary_key=True),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("parent", sa.String(150)),
        sa.Column("parent_domain", sa.String(100)),
        sa.Column("parent_deleted_at", sa.DateTime),
        sa.Column("strategy", sa.String(50), nullable=False),
        sa.Column("window", sa.String(100)),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("base_model_hash", sa.String(128)),
        sa.Column("dataset", sa.String(128)),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("cost", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("package_version", sa.String(50), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_index("ix_adapters_domain_created", "adapters", ["domain", "created_at"])
    op.create_index("ix_adapters_parent", "adapters", ["parent"])
    op.create_table(
        "adapter_sequences",
        sa.Column("domain", sa.String(100), primary_key=True),
        sa.Column("last_number", sa.Integer, nullable=False),
    )
    op.create_table(
        "adapter_aliases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("alias", sa.String(50), nullable=False),
        sa.Column("version", sa.String(150), nullable=False),
        sa.Column("previous_version", sa.String(150)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("domain", "alias", name="uq_adapter_aliases_domain_alias"),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("alias", sa.String(50), nullable=False),
        sa.Column("version", sa.String(150)),
        sa.Column("set_at", sa.DateTime, nullable=False),
        sa.Column("reason", sa.String(50), nullable=False),
    )
    op.create_index("ix_alias_history_domain_alias", "alias_history", ["domain", "alias"])


def downgrade() -> None:
    """Drop everything the upgrade created."""
    op.drop_index("ix_alias_history_domain_alias", table_name="alias_history")
    op.drop_table("alias_history")
    op.drop_table("adapter_aliases")
    op.drop_table("adapter_sequences")
    op.drop_index("ix_adapters_parent", table_name="adapters")
    op.drop_index("ix_adapters_domain_created", table_name="adapters")
    op.drop_table("adapters")

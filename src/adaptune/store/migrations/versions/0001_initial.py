"""Initial schema: domains, their sources, issues, comments and sync state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the first tables."""
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "domain_sources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "domain_id",
            sa.Integer,
            sa.ForeignKey("domains.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.UniqueConstraint("source", "repo", name="uq_domain_sources_source_repo"),
    )
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("key", sa.String(100)),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("state_reason", sa.String(100)),
        sa.Column("is_pull_request", sa.Boolean, nullable=False),
        sa.Column("merged_at", sa.DateTime),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("author", sa.String(200)),
        sa.Column("author_association", sa.String(50)),
        sa.Column("closed_by", sa.String(200)),
        sa.Column("comments_count", sa.Integer, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("issue_type", sa.String(100)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("source", "repo", "number", name="uq_issues_source_repo_number"),
    )
    op.create_index("ix_issues_repo_updated", "issues", ["source", "repo", "updated_at"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("comment_id", sa.String(100), nullable=False),
        sa.Column("author", sa.String(200)),
        sa.Column("author_association", sa.String(50)),
        sa.Column("body", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.UniqueConstraint("source", "repo", "comment_id", name="uq_comments_source_repo_cid"),
    )
    op.create_index("ix_comments_issue", "comments", ["source", "repo", "issue_number"])
    op.create_table(
        "sync_state",
        sa.Column("source", sa.String(20), primary_key=True),
        sa.Column("repo", sa.String(200), primary_key=True),
        sa.Column("cursor", sa.DateTime),
        sa.Column("etags", sa.Text, nullable=False),
        sa.Column("last_synced", sa.DateTime),
    )


def downgrade() -> None:
    """Drop everything the upgrade created."""
    for table in ("sync_state", "comments", "issues", "domain_sources", "domains"):
        op.drop_table(table)

"""Table definitions of the store (SQLAlchemy Core), portable across SQLite and PostgreSQL.

The migrations in ``migrations/versions`` create these tables; this module is what the code
queries. A test checks that a migrated database matches these definitions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC on every backend and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


domains = Table(
    "domains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

domain_sources = Table(
    "domain_sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(20), nullable=False),
    Column("repo", String(200), nullable=False),
    UniqueConstraint("source", "repo", name="uq_domain_sources_source_repo"),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(20), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("key", String(100)),
    Column("title", Text, nullable=False),
    Column("body", Text),
    Column("state", String(20), nullable=False),
    Column("state_reason", String(100)),
    Column("is_pull_request", Boolean, nullable=False, default=False),
    Column("merged_at", UTCDateTime),
    Column("labels", Text, nullable=False, default="[]"),
    Column("author", String(200)),
    Column("author_association", String(50)),
    Column("closed_by", String(200)),
    Column("comments_count", Integer, nullable=False, default=0),
    Column("url", Text),
    Column("issue_type", String(100)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("raw", Text, nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "repo", "number", name="uq_issues_source_repo_number"),
)
Index("ix_issues_repo_updated", issues.c.source, issues.c.repo, issues.c.updated_at)

comments = Table(
    "comments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(20), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("issue_number", Integer, nullable=False),
    Column("comment_id", String(100), nullable=False),
    Column("author", String(200)),
    Column("author_association", String(50)),
    Column("body", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("raw", Text, nullable=False),
    UniqueConstraint("source", "repo", "comment_id", name="uq_comments_source_repo_cid"),
)
Index("ix_comments_issue", comments.c.source, comments.c.repo, comments.c.issue_number)

sync_state = Table(
    "sync_state",
    metadata,
    Column("source", String(20), primary_key=True),
    Column("repo", String(200), primary_key=True),
    Column("cursor", UTCDateTime),
    Column("etags", Text, nullable=False, default="{}"),
    Column("last_synced", UTCDateTime),
)

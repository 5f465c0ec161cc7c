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

# --- adapter registry (migration 0002) ---------------------------------------------------------

adapters = Table(
    "adapters",
    metadata,
    Column("version", String(150), primary_key=True),
    Column("domain", String(100), nullable=False),
    # No foreign key: a force-deleted parent leaves its children with a dangling reference.
    Column("parent", String(150)),
    Column("parent_domain", String(100)),
    Column("parent_deleted_at", UTCDateTime),
    Column("strategy", String(50), nullable=False),
    Column("window", String(100)),
    Column("base_model", Text, nullable=False),
    Column("base_model_hash", String(128)),
    Column("dataset", String(128)),
    Column("config", Text, nullable=False, default="{}"),
    Column("cost", Text, nullable=False, default="{}"),
    Column("metrics", Text, nullable=False, default="{}"),
    Column("weights_sha256", String(64), nullable=False),
    Column("package_version", String(50), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("path", Text, nullable=False),
)
Index("ix_adapters_domain_created", adapters.c.domain, adapters.c.created_at)
Index("ix_adapters_parent", adapters.c.parent)

adapter_sequences = Table(
    "adapter_sequences",
    metadata,
    Column("domain", String(100), primary_key=True),
    # The last version number handed out, so a deleted version's name is never reused.
    Column("last_number", Integer, nullable=False),
)

adapter_aliases = Table(
    "adapter_aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(100), nullable=False),
    Column("alias", String(50), nullable=False),
    Column("version", String(150), nullable=False),
    Column("previous_version", String(150)),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("domain", "alias", name="uq_adapter_aliases_domain_alias"),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(100), nullable=False),
    Column("alias", String(50), nullable=False),
    # NULL when the alias was cleared.
    Column("version", String(150)),
    Column("set_at", UTCDateTime, nullable=False),
    Column("reason", String(50), nullable=False),
)
Index("ix_alias_history_domain_alias", alias_history.c.domain, alias_history.c.alias)

# --- service (migration 0003) --------------------------------------------------------------------

tickets = Table(
    "tickets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("domain", String(100), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text),
    Column("labels", Text, nullable=False, default="[]"),
    # JSON: {"label", "scores"} or NULL when the domain has no labels to learn from.
    Column("triage", Text),
    # JSON list of {"number", "title", "url", "score", "state", "solution"}.
    Column("similar", Text, nullable=False, default="[]"),
    Column("duplicate_of", Integer),
    # JSON: {"text", "adapter_version", "arm", "latency_ms"} or NULL when nothing was generated.
    Column("answer", Text),
    Column("adapter_version", String(150)),
    Column("arm", String(20)),
    Column("client", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_tickets_domain_created", tickets.c.domain, tickets.c.created_at)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", String(36), ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(100), nullable=False),
    Column("rating", String(10), nullable=False),
    Column("corrected_answer", Text),
    Column("resolved", Boolean),
    # Copied from the ticket: which adapter and A/B arm answered.
    Column("adapter_version", String(150)),
    Column("arm", String(20)),
    Column("created_at", UTCDateTime, nullable=False),
    # Who sent it ("token:<name>"); one row per ticket and client (rows before 0004: none).
    Column("client", String(150)),
)
Index("ix_feedback_domain_created", feedback.c.domain, feedback.c.created_at)
Index("ix_feedback_ticket", feedback.c.ticket_id)
Index("ux_feedback_ticket_client", feedback.c.ticket_id, feedback.c.client, unique=True)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(20), nullable=False),
    # GitHub: the X-GitHub-Delivery id; Jira: X-Atlassian-Webhook-Identifier (or a body digest).
    Column("delivery_key", String(300), nullable=False),
    Column("event", String(100), nullable=False),
    Column("outcome", Text, nullable=False, default="{}"),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "delivery_key", name="uq_webhook_deliveries_key"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("domain", String(100)),
    Column("kind", String(30), nullable=False),
    # queued | running | succeeded | failed | cancelled
    Column("state", String(20), nullable=False),
    # manual | threshold | api | …
    Column("trigger", String(50), nullable=False),
    Column("payload", Text, nullable=False, default="{}"),
    Column("result", Text),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=3),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_jobs_state_created", jobs.c.state, jobs.c.created_at)
Index("ix_jobs_domain_created", jobs.c.domain, jobs.c.created_at)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    # Only the SHA-256 of a token is stored; the token itself is shown once, at creation.
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("scopes", Text, nullable=False, default="[]"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("event", String(50), nullable=False),
    Column("body", Text, nullable=False),
    # pending | sent | failed
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
)
Index("ix_notifications_state_next", notifications.c.state, notifications.c.next_attempt_at)

"""Hardening: feedback per client, GitHub delivery keys without the unsigned hook id.

- ``feedback.client``: who sent the feedback (``token:<name>``); one row per ticket and client,
  a later post replaces the earlier one (rows from before this revision have no client).
- ``webhook_deliveries.delivery_key`` of GitHub rows: ``<hook id>:<delivery id>`` becomes the
  delivery id alone (the hook id header is not covered by the signature, so it must not make a
  re-delivery look new). Rows that then name the same delivery keep only the first one.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``feedback.client`` with its unique index; rewrite GitHub delivery keys."""
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("client", sa.String(150)))
    op.create_index("ux_feedback_ticket_client", "feedback", ["ticket_id", "client"], unique=True)
    conn = op.get_bind()
    t = sa.table(
        "webhook_deliveries",
        sa.column("id", sa.Integer),
        sa.column("source", sa.String),
        sa.column("delivery_key", sa.String),
    )
    rows = conn.execute(
        sa.select(t.c.id, t.c.delivery_key).where(t.c.source == "github").order_by(t.c.id)
    ).all()
    seen: set[str] = set()
    for row_id, key in rows:
        new = key.split(":", 1)[1] if ":" in key else key
        if new in seen:
            conn.execute(sa.delete(t).where(t.c.id == row_id))
            continue
        seen.add(new)
        if new != key:
            conn.execute(sa.update(t).where(t.c.id == row_id).values(delivery_key=new))


def downgrade() -> None:
    """Drop ``feedback.client`` (delivery keys stay in the new form)."""
    op.drop_index("ux_feedback_ticket_client", "feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("client")

"""Alembic migrations of the store; run by :func:`adaptune.store.db.migrate`."""

"""Opening the database: engine settings per backend, and migrations to the newest schema.

SQLite runs in WAL mode with foreign keys on; any other SQLAlchemy URL (PostgreSQL) works as
long as its driver is installed. The schema is only ever changed by Alembic migrations.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from adaptune.errors import StoreError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create_db_engine(url: str) -> Engine:
    """Create an engine for ``url``, creating the SQLite file's folder when needed."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"ADAPTUNE_DATABASE_URL is not a database URL ({exc}); "
            "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db."
        ) from None
    safe = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = (
            "install adaptune[postgres]"
            if parsed.get_backend_name() == "postgresql"
            else "use sqlite:/// or postgresql+psycopg://"
        )
        raise StoreError(f"No database driver for {safe} ({exc}); {hint}.") from None
    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    from alembic import command

    safe = engine.url.render_as_string(hide_password=True)
    try:
        if current_revision(engine) == head_revision():
            return
        cfg = _alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        log.info("database %s migrated to %s", safe, head_revision())
    except OperationalError as exc:
        raise StoreError(f"Cannot open the database {safe}: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"Migrating the database {safe} failed: {exc}") from None

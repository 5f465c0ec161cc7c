"""Opening the database: engine settings per backend, and migrations to the newest schema.

SQLite runs in WAL mode with foreign keys on, in a file (and ``-wal``/``-shm`` companions) that
only its owner can read; any other SQLAlchemy URL (PostgreSQL) works as long as its driver is
installed. The schema is only ever changed by Alembic migrations.
"""

from __future__ import annotations

import logging
import os
import stat
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
DB_MODE = 0o600


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create_db_engine(url: str) -> Engine:
    """Create an engine for ``url``, creating the SQLite file (owner-only) when needed."""
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
                _private_file(Path(parsed.database))
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


def _private_file(path: Path) -> None:
    """Create the SQLite file with mode 0600 before SQLite opens it, or tighten an existing one.

    SQLite gives the ``-wal`` and ``-shm`` files it creates the database file's mode, so the
    issues stored there stay owner-only whatever the umask; companions left by an older
    version are tightened here too.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_MODE))
            os.chmod(path, DB_MODE)  # the umask may have taken the owner's bits too
        except FileExistsError:
            pass
    except OSError as exc:
        raise StoreError(
            f"Cannot create the database file {path} ({exc.strerror}); point ADAPTUNE_HOME "
            "(or ADAPTUNE_DATABASE_URL) at a folder you can write to."
        ) from None
    for item in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(item.stat().st_mode)
            if mode & 0o077:
                item.chmod(mode & 0o700)
                log.warning("%s was readable by others (mode %o); made it owner-only", item, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("Cannot make %s owner-only (%s)", item, exc.strerror)


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

"""Where adaptune keeps its state: one workspace directory and one database URL.

``ADAPTUNE_HOME`` (default ``./.adaptune``) holds the SQLite database, adapters and reports;
``ADAPTUNE_DATABASE_URL`` replaces the SQLite file with another database (PostgreSQL).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from adaptune.errors import ConfigError


class Settings(BaseModel):
    """Resolved workspace settings; build them with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True)

    home: Path = Field(description="Workspace directory (database, adapters, reports).")
    database_url: str = Field(description="SQLAlchemy URL of the store.")

    @property
    def database_url_safe(self) -> str:
        """The database URL with any password masked, fit for printing."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)


def load_settings(home: str | Path | None = None, database_url: str | None = None) -> Settings:
    """Resolve settings from arguments, then the environment, then defaults."""
    raw_home = home or os.environ.get("ADAPTUNE_HOME") or ".adaptune"
    path = Path(raw_home).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"ADAPTUNE_HOME={path} is a file; point it at a directory.")
    url = database_url or os.environ.get("ADAPTUNE_DATABASE_URL") or ""
    if not url:
        url = f"sqlite:///{path / 'adaptune.db'}"
    return Settings(home=path, database_url=url)

"""Shared fixtures: every test gets its own workspace, so none touches a developer's files."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(
    os.environ.get("ADAPTUNE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(autouse=True, scope="session")
def fp32_training() -> Iterator[None]:
    """What the trainer's precision ``auto`` means must not depend on the CPU the tests run on:
    fp32, for the whole session, so that module-scoped fixtures that train (which run before
    any function-scoped fixture) train as the tests they are compared with do."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPTUNE_TRAIN_PRECISION", "fp32")
        yield


@pytest.fixture(autouse=True)
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point ADAPTUNE_HOME at a fresh folder and drop any database URL from the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("ADAPTUNE_HOME", str(home))
    monkeypatch.delenv("ADAPTUNE_DATABASE_URL", raising=False)
    for var in ("GITHUB_TOKEN", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture
def store(workspace: Path):
    """An opened, migrated store in the test's workspace."""
    from adaptune.store import open_store

    s = open_store()
    yield s
    s.close()


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the real data lives in ../shared/data (see its README)")
    return path


@pytest.fixture(scope="module")
def pg_admin() -> Iterator[str]:
    """The admin URL of a throw-away PostgreSQL cluster, or skip with the reason."""
    from pg_cluster import cluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with cluster() as url:
        yield url


@pytest.fixture
def pg_store(pg_admin: str, workspace: Path):
    """A migrated store in a fresh database of the throw-away cluster."""
    import uuid

    from adaptune.config import load_settings
    from adaptune.store import open_store
    from pg_cluster import fresh_database

    url = fresh_database(pg_admin, f"t_{uuid.uuid4().hex[:12]}")
    s = open_store(load_settings(database_url=url))
    yield s
    s.close()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a whole module (see :func:`tiny_model.one_thread`); a module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` so that it is
    set up before the module's other module-scoped fixtures build models."""
    from tiny_model import one_thread

    with one_thread():
        yield


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    """The tiny tokenizer of :mod:`tiny_model`, built once per module."""
    from tiny_model import tiny_tokenizer

    return tiny_tokenizer()

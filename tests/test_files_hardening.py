"""Files adaptune writes: a private workspace, and exports that fail cleanly.

The workspace (``ADAPTUNE_HOME``) is 0700 and the SQLite database with its ``-wal``/``-shm``
files 0600, whatever the umask. ``adaptune adapters export --to`` with a path it cannot write
prints one error line, exits non-zero and leaves no folder behind.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from adaptune.config import load_settings
from adaptune.registry import register
from adaptune.store import open_store
from adaptune.store.domains import add_domain
from tiny_lora import ignore_peft_warning, make_adapter, make_base


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask, under which plain mkdir/open give 0755/0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def write_something(store) -> None:
    """A write, so that SQLite has created its -wal and -shm files."""
    with store.begin() as conn:
        add_domain(conn, "probe")
    with store.engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM issues")).scalar()


def test_a_new_workspace_and_database_are_owner_only(workspace, loose_umask):
    store = open_store()
    write_something(store)
    db = workspace / "adaptune.db"
    (workspace / "adapters").mkdir()  # as the stages do, with the umask's 0755
    try:
        assert mode(workspace) == 0o700
        for item in (db, db.with_name("adaptune.db-wal"), db.with_name("adaptune.db-shm")):
            assert item.exists() and mode(item) == 0o600, item
    finally:
        store.close()


def test_an_existing_workspace_and_database_are_tightened(workspace, loose_umask, caplog):
    workspace.mkdir(mode=0o755)
    (workspace / "adaptune.db").touch(mode=0o644)
    caplog.set_level(logging.WARNING)
    store = open_store()
    write_something(store)
    store.close()
    assert mode(workspace) == 0o700 and mode(workspace / "adaptune.db") == 0o600
    assert str(workspace) in caplog.text and "owner" in caplog.text
    caplog.clear()
    open_store().close()  # already private: nothing more to say
    assert caplog.text == ""


def test_a_shared_folder_as_workspace_is_left_as_it_is(tmp_path, monkeypatch, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: tightening it would lock other users out
    monkeypatch.setenv("ADAPTUNE_HOME", str(shared))
    caplog.set_level(logging.WARNING)
    store = open_store()
    write_something(store)
    store.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert "shared" in caplog.text
    assert mode(shared / "adaptune.db") == 0o600


def test_a_database_url_elsewhere_is_owner_only_too(tmp_path, monkeypatch, loose_umask):
    db = tmp_path / "elsewhere" / "store.db"
    monkeypatch.setenv("ADAPTUNE_DATABASE_URL", f"sqlite:///{db}")
    store = open_store(load_settings())
    write_something(store)
    try:
        assert mode(db.parent) == 0o700 and mode(db) == 0o600
        assert mode(db.with_name("store.db-wal")) == 0o600  # gone once the last one closes
    finally:
        store.close()


# --- adaptune adapters export --to PATH -------------------------------------------------------


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return make_adapter(make_base(root / "base"), root / "adapter")


@pytest.fixture
def version(store, adapter_dir) -> str:
    with store.begin() as conn:
        add_domain(conn, "vllm")
    register(store, "vllm", adapter_dir, strategy="full", base_model="org/tiny")
    return "vllm-v1"


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """Run the real entry point in-process; returns the exit code and stderr."""
    from adaptune.cli import main

    monkeypatch.setattr(sys, "argv", ["adaptune", *args])
    # The entry point sets httpx's log level and TQDM_DISABLE for the process: undo both after.
    httpx_log = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_log, "level", httpx_log.level)
    monkeypatch.setenv("TQDM_DISABLE", os.environ.get("TQDM_DISABLE", "1"))
    with pytest.raises(SystemExit) as done:
        main()
    return int(done.value.code or 0), capsys.readouterr().err


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def assert_one_error_line(code: int, err: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """A folder to export into, holding one regular file and an empty folder."""
    root = tmp_path / "area"
    (root / "empty").mkdir(parents=True)
    (root / "file.txt").write_text("not a folder")
    return root


BAD_TARGETS = {
    "empty": lambda area: "",
    "an existing file": lambda area: str(area / "file.txt"),
    "under a regular file": lambda area: str(area / "file.txt" / "new" / "out"),
    "with a NUL byte": lambda area: str(area / "new\0name"),
    "a name over 255 bytes": lambda area: str(area / "new" / ("x" * 300) / "out"),
    "a path over PATH_MAX": lambda area: str(area.joinpath(*["d" * 200] * 30, "out")),
    "in /proc": lambda area: "/proc/adaptune-export/out",
    "with rich markup": lambda area: str(area / "new[/x]\0"),
}


@ignore_peft_warning
@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_export_to_a_path_it_cannot_write_is_one_line_and_leaves_nothing(
    case, version, area, capsys, monkeypatch
):
    to = BAD_TARGETS[case](area)
    monkeypatch.chdir(area / "empty")  # where --to '' would write, were it taken for "."
    before = tree(area)
    code, err = cli(capsys, monkeypatch, "adapters", "export", version, "--to", to)
    assert_one_error_line(code, err)
    assert tree(area) == before
    assert not Path("/proc/adaptune-export").exists()


@ignore_peft_warning
def test_a_failed_export_removes_the_folders_it_created(version, area, capsys, monkeypatch):
    to = area / "a" / "b" / "out"
    before = tree(area)
    args = ["--format", "gguf", "--base-gguf", str(area / "missing.gguf")]
    code, err = cli(capsys, monkeypatch, "adapters", "export", version, "--to", str(to), *args)
    assert_one_error_line(code, err)
    assert "missing.gguf" in err
    assert tree(area) == before


@ignore_peft_warning
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0500 folder")
def test_export_into_a_read_only_folder_is_one_line(version, area, capsys, monkeypatch):
    locked = area / "locked"
    locked.mkdir(mode=0o500)
    try:
        for to in (locked / "out", locked / "new" / "out"):
            code, err = cli(capsys, monkeypatch, "adapters", "export", version, "--to", str(to))
            assert_one_error_line(code, err)
            assert "Permission denied" in err
            assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@ignore_peft_warning
def test_the_real_command_prints_no_traceback(version, workspace, area):
    to = area / "new" / ("x" * 300)
    env = {**os.environ, "ADAPTUNE_HOME": str(workspace), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "adaptune", "adapters", "export", version, "--to", str(to)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_error_line(done.returncode, done.stderr)
    assert "File name too long" in done.stderr
    assert not (area / "new").exists()

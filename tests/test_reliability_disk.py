"""A full disk under ADAPTUNE_HOME (a small tmpfs): clear errors, nothing half-written, and the
last good production adapter keeps serving."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adaptune.config import load_settings
from adaptune.generate.local import LocalGenerator
from adaptune.registry import RegistryError, get, list_versions, register
from adaptune.serve import create_app, serve_settings
from adaptune.store import open_store
from serve_fixtures import AUTH, TOKEN, make_adapter, register_adapter, seed_store, tiny_pair
from tiny_lora import ignore_peft_warning

pytestmark = ignore_peft_warning


@pytest.fixture
def small_home(tmp_path: Path):
    """A 24 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or 'not root'}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    free = os.statvfs(folder)
    size = max(free.f_bavail * free.f_frsize - leave, 0)
    with open(folder / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * size)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_full_disk_refuses_new_versions_and_tickets_but_production_serves(small_home, tmp_path):
    store = open_store(load_settings(home=small_home / "home"))
    seed_store(store, tmp_path)
    model, tok = tiny_pair()
    v1 = register_adapter(store, model, tmp_path, seed=1, prod=True)
    big = make_adapter(model, tmp_path / "big", seed=3)
    (big / "padding.bin").write_bytes(os.urandom(2_000_000))  # copied with the adapter
    gen = LocalGenerator(model=model, tokenizer=tok)
    settings = serve_settings(api_token=TOKEN, warm=False, generator="none", max_new_tokens=4)
    with TestClient(create_app(store, settings, generator=gen)) as c:
        assert c.post("/v1/tickets", json={"title": "x", "body": "y"}, headers=AUTH).is_success
        fill(small_home, leave=200_000)
        with pytest.raises(RegistryError, match="No space left"):
            register(store, "r", big, strategy="adaptive", base_model="tiny")
        assert [v.version for v in list_versions(store)] == [v1]
        leftovers = [p.name for p in (small_home / "home" / "adapters").iterdir()]
        assert leftovers == [v1], "no staging folder is left behind"
        fill(small_home, leave=0)
        body = {"title": "full disk", "body": "x" * 50_000}
        refused = c.post("/v1/tickets", json=body, headers=AUTH)
        assert refused.status_code in (200, 503)
        if refused.status_code == 503:
            assert "nothing was stored" in refused.json()["detail"]
        (small_home / "filler").unlink()
        again = c.post("/v1/tickets", json={"title": "x", "body": "y"}, headers=AUTH)
        assert again.status_code == 200 and again.json()["answer"]["adapter_version"] == v1
        assert get(store, v1).version == v1
    store.close()

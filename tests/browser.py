"""Headless Chromium screenshots for the page tests (Debian's ``chromium``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # this machine's network is closed: without these Chromium keeps trying to reach Google
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    """The Chromium binary, or ``None`` when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, size: str, profile: Path) -> None:
    """Render the HTML file ``page`` at ``size`` (``W,H``) into ``png``."""
    args = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}"]
    subprocess.run(
        [*args, f"--window-size={size}", page.as_uri()],
        capture_output=True,
        timeout=60,
        check=False,
    )

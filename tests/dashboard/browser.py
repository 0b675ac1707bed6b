"""Debian's chromium under Playwright: found (or installed), launched, screenshots kept.

Playwright's own browser builds are never downloaded (``playwright install`` is not
used): the tests drive ``/usr/bin/chromium`` from Debian's package, which
``scripts/test`` installs when it runs as root. Tests are skipped only when chromium
is missing and cannot be installed here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_VARIABLE = "REELGATE_SCREENSHOTS"


def find_chromium() -> tuple[Path | None, str]:
    """Chromium's path, installing Debian's package as root when it is missing.

    Returns (None, why) when there is none and it cannot be installed.
    """
    if CHROMIUM.exists():
        return CHROMIUM, ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            None,
            f"{CHROMIUM} is missing (install Debian's chromium package: apt-get install chromium)",
        )
    with open(Path(tempfile.gettempdir()) / "reelgate-chromium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer among the test processes
        if not CHROMIUM.exists():
            why = _install()
            if why:
                return None, why
    return (CHROMIUM, "") if CHROMIUM.exists() else (None, "apt-get installed no /usr/bin/chromium")


def _install() -> str:
    print("installing Debian's chromium package for the dashboard tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return f"{CHROMIUM} is missing and {' '.join(command)} failed: {done.stderr[-300:]}"
    return ""


def screenshot_dir() -> Path:
    """Where the tests save screenshots: ``$REELGATE_SCREENSHOTS``, else a temporary folder."""
    configured = os.environ.get(SCREENSHOTS_VARIABLE)
    folder = (
        Path(configured) if configured else Path(tempfile.gettempdir()) / "reelgate-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder

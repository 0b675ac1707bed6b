"""A server and a headless chromium per test module; screenshots into one folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.dashboard.browser import ARGS, find_chromium, screenshot_dir
from tests.server import LiveServer, start_server

LONG_MODEL = "doubao-seedance-1-5-pro"  # renders for minutes here: the task to cancel
QUICK_MODEL = "doubao-seedance-1-0-pro"  # 2 s of video, a second of rendering
WAIT_MS = 60_000  # the longest wait on a real condition (a render on a busy machine)
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """SQLite, local files, the preview renderer (real MP4s); LONG_MODEL takes 10 min."""
    live = start_server(
        Path(tmp_path_factory.mktemp("dashboard")),
        workers=2,
        preview_delay=f"{LONG_MODEL}=600,{QUICK_MODEL}=1.5",
        grace_seconds=1,
    )
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, driven by Playwright (never its own downloads)."""
    chromium, why = find_chromium()
    if chromium is None:
        pytest.skip(why)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    """The folder screenshots go to (``REELGATE_SCREENSHOTS``, else a temporary one)."""
    return screenshot_dir()

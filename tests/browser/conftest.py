"""Debian's headless Chromium, driven by Playwright, shared by the browser tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # The binary itself: Debian's /usr/bin/chromium is a shell wrapper around it.
    real = Path("/usr/lib/chromium/chromium")
    chromium = str(real) if real.exists() else shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run `make test-browser`"
    with sync_playwright() as playwright:
        # --no-sandbox: the suite may run as root (CI does), where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()

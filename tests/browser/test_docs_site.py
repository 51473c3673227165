"""The documentation site, built strictly and served from 127.0.0.1, in headless Chromium.

The site must read the same offline: every request the page makes has to go to the
local server, and anything else is aborted and fails the test. A screenshot of the
page is kept in build/test-artifacts/docs-site-configuration.png.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route

from ..docsite import ROOT, build_site

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def docs_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = build_site(tmp_path_factory.mktemp("docs") / "site")
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_docs_page_renders_with_its_own_assets_and_nothing_from_elsewhere(
    browser: Browser, docs_url: str
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    served: list[str] = []
    elsewhere: list[str] = []

    def only_the_site(route: Route) -> None:
        url = route.request.url
        if url == docs_url or url.startswith(f"{docs_url}/"):
            served.append(url)
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    page.route("**/*", only_the_site)
    try:
        response = page.goto(f"{docs_url}/configuration/")
        assert response is not None and response.status == 200
        page.wait_for_load_state("networkidle")

        assert page.locator("article h1").inner_text().removesuffix("¶") == "Configuration"
        # The generated KV_ table is on the page, and the theme's own stylesheet
        # and script came from the site itself and took effect.
        assert page.locator("article table code", has_text="KV_MAX_IN_FLIGHT").count() == 1
        assert any("/assets/stylesheets/main." in url for url in served)
        assert any("/assets/javascripts/bundle." in url for url in served)
        header = page.locator("header.md-header")
        assert header.evaluate("e => getComputedStyle(e).position") == "sticky"
        # No web font: the theme falls back on the system's own.
        fonts = page.evaluate("() => [...document.fonts].map(f => f.family)")
        assert fonts == []

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "docs-site-configuration.png"
        page.screenshot(path=str(shot))
        print(f"\nscreenshot: {shot}")
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
    assert elsewhere == [], f"the docs site reached outside 127.0.0.1: {elsewhere}"

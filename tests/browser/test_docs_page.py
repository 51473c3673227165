"""/docs in a real headless Chromium (Debian's), driven by Playwright: `make test-browser`.

Every request the page makes must go to the service itself: anything else is
aborted and fails the test, as it would behind a firewall.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Route

from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM

INGEST = "/api/v1/reco/ingest"
OPERATION = "#operations-reco-ingest_api_v1_reco_ingest_post"
ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS", Path(__file__).parents[2] / "build" / "test-artifacts")
)


@pytest.fixture
def page(browser: Browser, served: tuple[str, dict[str, str]]) -> Iterator[Page]:
    url = served[0]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    def only_the_service(route: Route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_service)
    yield page
    page.close()
    assert elsewhere == [], f"the docs page reached outside the service: {elsewhere}"


def test_the_ingest_endpoint_shows_every_response_and_try_it_out_stores_a_vector(
    page: Page,
    served: tuple[str, dict[str, str]],
    served_headers: dict[str, str],
    store: CassandraStore,
    new_video: Callable[..., Video],
    rng: np.random.Generator,
) -> None:
    url = served[0]
    documented = set(
        page.request.get(f"{url}/openapi.json").json()["paths"][INGEST]["post"]["responses"]
    )
    assert documented >= {"202", "400", "401", "403", "404", "413", "415", "422", "503"}

    page.goto(f"{url}/docs")
    page.locator(f"{OPERATION} .opblock-summary").click()
    rows = page.locator(f"{OPERATION} .responses-table tr.response")
    rows.first.wait_for()
    shown = set(rows.evaluate_all("rows => rows.map(r => r.dataset.code)"))
    assert shown == documented

    # Authorize with a creator token, as a user pastes it.
    token = served_headers["Authorization"].removeprefix("Bearer ")
    page.locator(".auth-wrapper .authorize").click()
    page.locator(".auth-container input").fill(token)
    page.locator(".auth-btn-wrapper .authorize").click()
    page.locator(".auth-btn-wrapper .btn-done").click()

    video = new_video()
    vector = rng.standard_normal(DIM).astype(np.float32)
    page.locator(f"{OPERATION} .try-out__btn").click()
    page.locator(f"{OPERATION} textarea.body-param__text").fill(
        json.dumps({"videoId": str(video.videoid), "vector": vector.tolist()})
    )
    page.locator(f"{OPERATION} .execute").click()
    status = page.locator(f"{OPERATION} .live-responses-table .response .response-col_status")
    status.first.wait_for()
    assert status.first.inner_text().strip() == "202"
    body = page.locator(f"{OPERATION} .live-responses-table .response-col_description pre").first
    assert json.loads(body.inner_text())["status"] == "accepted"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "docs-try-it-out.png"
    page.locator(OPERATION).screenshot(path=str(shot))
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000

    row = store.videos.read(video.videoid)
    assert row is not None and row["content_features"] == vector.tolist()

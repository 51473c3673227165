"""/docs works offline: every asset from the service itself; the bearer scheme is declared."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_docs_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)', page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
    assert (
        client.get("/docs/assets/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert client.get("/redoc").status_code == 404  # no offline ReDoc: not offered


def test_the_routes_that_take_a_token_declare_the_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`kv-reco token --role creator` mints one; ingest needs that role.",
    }
    paths = spec["paths"]
    assert paths["/api/v1/reco/ingest"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/api/v1/reco/ingest/batch"]["post"]["security"] == [{"bearerAuth": []}]
    # Anonymous reads are allowed; a token, when sent, is checked.
    related = paths["/api/v1/videos/id/{videoId}/related"]["get"]["security"]
    assert related == [{}, {"bearerAuth": []}]
    assert "security" not in paths["/healthz"]["get"]

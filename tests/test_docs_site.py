"""The documentation site: it builds strictly, loads nothing from another host, and its
generated parts say what the code says."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from killrvideo_reco.api.app import create_app
from killrvideo_reco.config import Settings

from .docsite import ROOT, build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("docs") / "site")


def text_of(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    loads = re.compile(
        r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']((?:https?:)?//[^\"']+)"
        r"|<link\b[^>]*\bhref=[\"']((?:https?:)?//[^\"']+)"
        r"|@import\s+[\"']?((?:https?:)?//[^\"')]+)"
        r"|url\(\s*[\"']?((?:https?:)?//[^\"')]+)",
        re.IGNORECASE,
    )
    pages = [*site.rglob("*.html"), *site.rglob("*.css")]
    assert len(pages) > 20
    found = [
        (str(p.relative_to(site)), next(u for u in m.groups() if u))
        for p in pages
        for m in loads.finditer(p.read_text(errors="replace"))
    ]
    assert found == []
    assert not any(
        "fonts.googleapis" in p.read_text(errors="replace") for p in site.rglob("*.html")
    )


def test_every_page_in_docs_is_built(site: Path) -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        built = site / page.relative_to(ROOT / "docs").with_suffix("") / "index.html"
        if page.name == "index.md":
            built = site / page.relative_to(ROOT / "docs").with_name("index.html")
        assert built.exists(), page


def test_the_configuration_page_lists_every_setting(site: Path) -> None:
    page = text_of(site / "configuration" / "index.html")
    for name, field in Settings.model_fields.items():
        assert f"KV_{name.upper()}" in page
        # Markdown's backticks became <code>: compare the words.
        assert " ".join(str(field.description).replace("`", "").split()) in page


def test_the_openapi_page_is_the_document_the_app_serves(site: Path) -> None:
    served = create_app(Settings(jwt_secret="x" * 40)).openapi()
    assert json.loads((site / "openapi.json").read_text()) == served
    page = text_of(site / "openapi" / "index.html")
    for path, operations in served["paths"].items():
        assert path in page
        for op in operations.values():
            assert op["summary"] in page


def test_the_readme_sections_the_site_includes_are_there(site: Path) -> None:
    assert "Video Created → Metadata Extracted" in text_of(site / "index.html")
    assert "curl -i -X POST http://127.0.0.1:8080/api/v1/reco/ingest" in text_of(
        site / "getting-started" / "index.html"
    )
    assert "no such video; no row is created" in text_of(site / "endpoint" / "index.html")

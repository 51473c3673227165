"""The documentation's generated parts: benchmark results as the benchmarks write them,
and the check that keeps the site free of assets from other hosts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[2]


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    return load("docs_generate", ROOT / "docs/hooks/generate.py")


@pytest.fixture(scope="module")
def results() -> ModuleType:
    return load("bench_results", ROOT / "bench/_results.py")


def test_no_results_says_so_and_how_to_make_them(generate: ModuleType, tmp_path: Path) -> None:
    page = generate.benchmarks_page(tmp_path)
    assert "No results have been recorded yet" in page
    assert "bench/results/<name>.summary.json" in page


def test_a_summary_the_bench_helper_writes_is_rendered_with_its_stamp(
    generate: ModuleType,
    results: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "bench/ingest_latency.py"), "--requests", "7"])
    path = results.write_summary(
        "ingest_latency",
        title="Sequential ingest latency",
        tables=[results.table(["", "p99"], [["the service, ms", 23.44], ["ratio", "1.07x"]])],
        notes=["7 sequential ingests each way, vector<float, 1536>"],
    )
    assert path == tmp_path / "ingest_latency.summary.json"
    stamp = json.loads(path.read_text())
    assert stamp["commit"] not in ("", "unknown")  # this is a git checkout
    assert stamp["machine"]["cpus"] >= 1 and stamp["date"].endswith("UTC")
    assert stamp["command"] == "python bench/ingest_latency.py --requests 7"

    page = generate.benchmarks_page(tmp_path)
    assert "### Sequential ingest latency" in page
    assert f"at commit `{stamp['commit']}`" in page
    assert "`python bench/ingest_latency.py --requests 7`" in page
    assert "| the service, ms | 23.4 |" in page
    assert "- 7 sequential ingests each way, vector&lt;float, 1536&gt;" in page
    assert "No results" not in page


def test_assets_from_other_hosts_are_found(generate: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
        '<link rel="canonical" href="https://example.org/page/">'
        '<script src="//cdn.example.org/x.js"></script>'
        '<script src="assets/local.js"></script>'
        '<a href="https://example.org/">a link is not an asset</a>'
    )
    (tmp_path / "style.css").write_text(
        "@import 'https://cdn.example.org/a.css'; b { background: url(data:image/svg+xml,x) }"
    )
    found = sorted(url for _, url in generate.external_assets(tmp_path))
    assert found == [
        "//cdn.example.org/x.js",
        "https://cdn.example.org/a.css",
        "https://fonts.googleapis.com/css?family=Roboto",
    ]

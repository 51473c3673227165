"""The documentation site, built strictly as `make docs-check` builds it, for the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .proc import Child

ROOT = Path(__file__).parents[1]


def build_site(site: Path, *, timeout_s: float = 120) -> Path:
    """`mkdocs build --strict` into ``site``; fails the test with the build's output."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    with Child(cmd, env=env, cwd=ROOT) as build:
        rc = build.wait(timeout_s)
    assert "No module named mkdocs" not in build.output, (
        "the docs tools are missing: `make docs-check` installs them (the docs extra)"
    )
    assert rc == 0, f"the strict docs build failed:\n{build.tail()}"
    return site

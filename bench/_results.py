"""A benchmark's summary, stamped with where it came from: bench/results/<name>.summary.json.

The documentation's Benchmarks page shows every such file (docs/hooks/generate.py), so
figures are never copied into the docs by hand. Each file says which commit ran (and
whether the tree had uncommitted changes), when, on what machine, and with which
command, because a figure means nothing without them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict[str, object]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(pages / 2**30, 1),
        "system": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    }


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = ""
) -> dict[str, object]:
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def write_summary(
    name: str,
    *,
    title: str,
    tables: Sequence[dict[str, object]],
    notes: Sequence[str] = (),
) -> Path:
    """Write bench/results/<name>.summary.json; returns its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.summary.json"
    payload = {
        "benchmark": name,
        "title": title,
        "command": "python " + shlex.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "tables": list(tables),
        "notes": list(notes),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path

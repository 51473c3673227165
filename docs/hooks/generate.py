"""The documentation's generated parts: nothing here that can drift is written by hand.

A MkDocs hook (mkdocs.yml `hooks:`), also runnable alone (`python docs/hooks/generate.py`)
for a builder that runs no hooks. Before each build it writes, under
build/docs-generated/, Markdown that the pages include with pymdownx.snippets:

- settings.md: the `KV_` table, from `Settings` (src/killrvideo_reco/config.py): each
  field's name, its default and its docstring;
- openapi.md: the operations of the OpenAPI document that `create_app(...).openapi()`
  serves, and the whole document, also published as openapi.json in the site;
- benchmarks.md: every results file the benchmarks wrote (bench/results/*.summary.json,
  see bench/_results.py), with the commit, date and machine it came from.

After the build it refuses a page that loads anything from another host (a web font, a
CDN script or stylesheet): the site must work offline.
"""

from __future__ import annotations

import html
import html.parser
import json
import os
import re
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "build" / "docs-generated"
RESULTS = ROOT / "bench" / "results"
RESULTS_GLOB = "*.summary.json"

# Read by the command line, not by the service's Settings: documented on the page itself.
CLI_ONLY = frozenset({"KV_API_TOKEN"})


# --- the KV_ table -------------------------------------------------------------------


def _default(field: Any) -> str:
    if field.default_factory is not None:
        # Paths under the home directory: shown as a reader's own, not the builder's.
        saved = {k: os.environ.pop(k, None) for k in ("XDG_STATE_HOME", "XDG_CACHE_HOME")}
        try:
            value = str(field.default_factory()).replace(str(Path.home()), "~", 1)
        finally:
            os.environ.update({k: v for k, v in saved.items() if v is not None})
    else:
        value = field.default
    if value is None:
        return "-"
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, StrEnum):
        value = value.value
    return f"`{value}`"


def settings_rows() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every field of Settings, in its order."""
    from killrvideo_reco.config import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        variable = f"KV_{name.upper()}"
        if not field.description:
            raise ValueError(
                f"{variable} has no docstring in src/killrvideo_reco/config.py: "
                "the documentation's table is made from them"
            )
        rows.append((variable, _default(field), " ".join(field.description.split())))
    return rows


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{var}` | {default} | {text} |" for var, default, text in settings_rows()]
    return "\n".join(lines) + "\n"


# --- the OpenAPI document ------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The document the service serves at /openapi.json; building the app opens nothing."""
    from killrvideo_reco.api.app import create_app
    from killrvideo_reco.config import Settings

    settings = Settings(jwt_secret="documentation-build-not-a-real-secret-0123456789")
    return create_app(settings).openapi()


def openapi_page(document: dict[str, Any]) -> str:
    info = document.get("info", {})
    lines = [
        f"Generated from the application itself: {info.get('title', '')} "
        f"{info.get('version', '')}, OpenAPI {document.get('openapi', '')}.",
        "",
        "| method | path | summary | responses |",
        "|---|---|---|---|",
    ]
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            codes = ", ".join(sorted(op.get("responses", {})))
            summary = op.get("summary", "").replace("|", "\\|")
            lines.append(f"| `{method.upper()}` | `{path}` | {summary} | {codes} |")
    lines += [
        "",
        '??? note "The whole document (also as [openapi.json](openapi.json))"',
        "",
        "    ```json",
        *("    " + line for line in json.dumps(document, indent=2).splitlines()),
        "    ```",
        "",
    ]
    return "\n".join(lines)


# --- benchmark results ---------------------------------------------------------------


def results_files(directory: Path = RESULTS) -> list[Path]:
    return sorted(directory.glob(RESULTS_GLOB))


def _text(value: object) -> str:
    """Markdown for a value a benchmark wrote: `<` and `&` kept literal outside code spans."""
    parts = str(value).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else html.escape(p, quote=False) for i, p in enumerate(parts))


def _cell(value: object) -> str:
    if isinstance(value, float):
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
        value = f"{value:.{digits}f}"
    return _text(value)


def benchmark_section(result: dict[str, Any]) -> str:
    machine = result.get("machine", {})
    dirty = " (with uncommitted changes)" if result.get("dirty") else ""
    lines = [
        f"### {_text(result['title'])}",
        "",
        f"`{result['command']}`, at commit `{result['commit']}`{dirty}, {result['date']}, "
        f"on {machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', 'unknown CPU')}), "
        f"{machine.get('memory_gib', '?')} GiB, {machine.get('system', '')}.",
        "",
    ]
    for table in result.get("tables", []):
        if table.get("title"):
            lines += [f"**{_text(table['title'])}**", ""]
        lines.append("| " + " | ".join(_cell(c) for c in table["columns"]) + " |")
        lines.append("|" + "---|" * len(table["columns"]))
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
        lines.append("")
    lines += [f"- {_text(note)}" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def benchmarks_page(directory: Path = RESULTS) -> str:
    files = results_files(directory)
    if not files:
        return (
            '!!! info "No results have been recorded yet"\n\n'
            "    Run a benchmark (below): each writes its summary to "
            "`bench/results/<name>.summary.json`, stamped with the commit, the date and the "
            "machine, and this page shows every such file at the next build. Commit the file "
            "to keep its figures here.\n"
        )
    return "\n".join(benchmark_section(json.loads(f.read_text())) for f in files)


# --- writing, and the hook's events -----------------------------------------------------


def _write(path: Path, text: str) -> None:
    # Unchanged files are left alone, so that `mkdocs serve` does not rebuild in a loop.
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(out: Path = GENERATED) -> dict[str, Any]:
    _write(out / "settings.md", settings_table())
    document = openapi_document()
    _write(out / "openapi.md", openapi_page(document))
    _write(out / "benchmarks.md", benchmarks_page())
    return document


class _Assets(html.parser.HTMLParser):
    """The URLs a page loads by itself: scripts, stylesheets, icons, images, frames."""

    LOADS: ClassVar[dict[str, str]] = {
        "script": "src",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "link": "href",
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = self.LOADS.get(tag)
        values = dict(attrs)
        if attr is None or values.get(attr) is None:
            return
        if tag == "link" and not {"stylesheet", "icon", "preload", "modulepreload"} & set(
            (values.get("rel") or "").split()
        ):
            return  # rel="canonical" and the like are not fetched
        self.urls.append(str(values[attr]))


_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")


def external_assets(site: Path) -> Iterator[tuple[Path, str]]:
    """(file, url) for everything in the built site that would be fetched from another host."""
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            parser = _Assets()
            parser.feed(path.read_text(errors="replace"))
            urls = parser.urls
        elif path.suffix == ".css":
            urls = _CSS_URL.findall(path.read_text(errors="replace"))
        else:
            continue
        for url in urls:
            if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, re.IGNORECASE):
                yield path.relative_to(site), url


_document: dict[str, Any] = {}


def on_pre_build(config: Any) -> None:
    _document.clear()
    _document.update(generate())


def on_files(files: Any, config: Any) -> Any:
    # The document itself, as a file of the site, so that the page can link to it.
    from mkdocs.structure.files import File

    content = json.dumps(_document, indent=2) + "\n"
    files.append(File.generated(config, "openapi.json", content=content))
    return files


def on_post_build(config: Any) -> None:
    site = Path(config["site_dir"])
    found = [f"{path}: {url}" for path, url in external_assets(site)]
    if found:
        from mkdocs.exceptions import PluginError

        raise PluginError("the site loads assets from other hosts: " + "; ".join(found[:10]))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else GENERATED)
    print(f"wrote {GENERATED}")

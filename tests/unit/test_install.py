"""What an install brings: no torch anywhere, and a service that needs none of the extras."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
HEAVY = re.compile(r"^(torch|sentence-transformers|nvidia-|triton|transformers)", re.IGNORECASE)
EXTRA_MODULES = ["tenacity", "tqdm", "pyarrow", "onnxruntime", "tokenizers", "onnx"]


def test_no_dependency_brings_torch_or_cuda() -> None:
    project = PYPROJECT["project"]
    every = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        every += extra
    assert every
    assert [d for d in every if HEAVY.match(d)] == []


def test_serving_imports_none_of_the_extras() -> None:
    # `kv-reco serve` loads the CLI and the app: with only the base dependencies
    # installed, none of the tools' or the model's modules may be needed.
    code = (
        "import sys, killrvideo_reco.cli.main, killrvideo_reco.api.app; "
        f"print(sorted(m for m in {EXTRA_MODULES!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def test_a_command_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    vectors = tmp_path / "v.jsonl"
    vectors.write_text("{}\n")
    # Run `kv-reco ingest` in an interpreter where tenacity cannot be imported.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tenacity':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from killrvideo_reco.cli.main import app\n"
        f"app(['ingest', {str(vectors)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: this command needs the 'tools' extra (tenacity is not installed): run "
        "`make install`, or `pip install 'killrvideo-reco[tools]'`"
    ]

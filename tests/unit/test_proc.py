"""tests/proc.py: a child that writes far more than a pipe holds never blocks.

The child here writes 2 MiB to stdout and 1 MiB to stderr before it leaves a
mark that it got past them, while the test waits on that mark and reads nothing.
A pipe holds 64 KiB, so with ``stdout=PIPE`` read only at the end (what
tests/conftest.py's ``Service`` did until issue 16) the child blocks in
``write`` and the mark never comes: the wait below then fails at its deadline.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..proc import Child

_WRITER = """
import os, sys, time
out, err = sys.stdout.buffer, sys.stderr.buffer
for i in range(2048):
    out.write(b"o" * 1023 + b"\\n")
    if i % 2:
        err.write(b"e" * 1023 + b"\\n")
out.flush(); err.flush()
open(sys.argv[1], "w").close()
sys.stdin.read() if sys.argv[2] == "stdin" else time.sleep(600)
"""


def test_a_child_writing_megabytes_is_drained_while_the_test_waits_elsewhere(
    tmp_path: Path,
) -> None:
    mark = tmp_path / "past-the-writes"
    with Child([sys.executable, "-c", _WRITER, str(mark), "sleep"], merge_stderr=False) as child:
        child.wait_for(mark.exists, what="the child to get past 3 MiB of writes", timeout_s=60)
        child.wait_for(lambda: len(child.stdout) == 2 << 20, what="all of stdout", timeout_s=60)
        assert child.returncode is None  # still running: readable before it stops
        code = child.stop(timeout_s=30)
    assert code == -signal.SIGTERM
    assert child.stdout == ("o" * 1023 + "\n") * 2048
    assert child.stderr == ("e" * 1023 + "\n") * 1024


def test_merged_output_keeps_both_streams(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    with Child([sys.executable, "-c", _WRITER, str(mark), "sleep"]) as child:
        child.wait_for(mark.exists, what="the writes", timeout_s=60)
    assert len(child.output) == 3 << 20
    assert child.output.count("e" * 1023) == 1024


def test_leaving_the_block_on_an_error_reaps_the_child(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    child = Child([sys.executable, "-c", _WRITER, str(mark), "stdin"], stdin=subprocess.PIPE)

    def fail_inside() -> None:
        with child:
            child.wait_for(mark.exists, what="the writes", timeout_s=60)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert child.returncode == -signal.SIGTERM


def test_a_wait_fails_at_its_deadline_with_the_output_tail() -> None:
    script = "import time; print('still here', flush=True); time.sleep(600)"
    with Child([sys.executable, "-c", script]) as child:
        child.wait_for_output("still here", timeout_s=60)
        with pytest.raises(AssertionError, match=r"(?s)timed out after 0.2 s.*still here"):
            child.wait_for(lambda: False, what="nothing", timeout_s=0.2)


def test_a_child_that_exits_early_fails_the_wait_at_once() -> None:
    script = "import sys; print('giving up'); sys.exit(3)"
    with (
        Child([sys.executable, "-c", script]) as child,
        pytest.raises(AssertionError, match=r"(?s)exited \(3\) before the mark.*giving up"),
    ):
        child.wait_for(lambda: False, what="the mark", timeout_s=60)
    assert child.returncode == 3


def test_a_child_that_ignores_sigterm_is_killed_at_the_deadline() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(600)"
    )
    child = Child([sys.executable, "-c", script]).start()
    child.wait_for_output("ignoring", timeout_s=60)
    with pytest.raises(subprocess.TimeoutExpired):
        child.stop(timeout_s=0.5)
    assert child.returncode == -signal.SIGKILL

"""The test session's own guards, seen from outside: pytest run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from killrvideo_reco.storage import CassandraStore

from .conftest import drop_leftover_keyspaces, scratch_keyspace

ROOT = Path(__file__).parents[1]


def pytest_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_remote_cluster_is_refused_unless_allowed() -> None:
    refused = pytest_run("tests/unit/test_session.py", KV_CONTACT_POINTS="127.0.0.1,10.9.8.7")
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR, refused.stdout
    assert "names 10.9.8.7, not a local dev node" in refused.stdout + refused.stderr
    assert "passed" not in refused.stdout


def test_unit_tests_need_no_node_and_see_no_kv_variable_of_the_shell() -> None:
    # The allowed "cluster" does not exist: the unit tests pass without it.
    done = pytest_run(
        "tests/unit",
        KV_CONTACT_POINTS="10.9.8.7",
        KV_CASSANDRA_PORT="1",
        KV_TEST_ALLOW_REMOTE="1",
        KV_KEYSPACE="killrvideo",
        KV_JWT_SECRET="p" * 40,
        KV_MAX_IN_FLIGHT="0",  # invalid: Settings() would refuse it if it were seen
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", done.stdout)


def test_a_failure_prints_its_seed_and_the_seed_replays_it(tmp_path: Path) -> None:
    test = tmp_path / "test_seeded.py"
    test.write_text(
        "def test_draw(rng):\n    print('drew', rng.integers(1 << 62))\n    assert False\n"
    )
    first = pytest_run("-p", "tests.conftest", "--rootdir", str(tmp_path), str(test))
    seed = re.search(r"seed (\d+): replay with --seed \1", first.stdout)
    assert first.returncode == 1 and seed, first.stdout
    drew = re.search(r"drew (\d+)", first.stdout)
    again = pytest_run(
        "-p", "tests.conftest", "--rootdir", str(tmp_path), str(test), "--seed", seed[1]
    )
    assert drew and f"drew {drew[1]}" in again.stdout


def test_leftover_keyspaces_of_gone_sessions_are_dropped(store: CassandraStore) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(60)
    leftover = f"kv_test_{gone.pid}_left_{os.urandom(2).hex()}"
    mine = scratch_keyspace("mine")
    for name in (leftover, mine):
        store.schema.execute(
            f"CREATE KEYSPACE {name} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
    try:
        assert leftover in drop_leftover_keyspaces(store)
        names = {
            r[0] for r in store.schema.execute("SELECT keyspace_name FROM system_schema.keyspaces")
        }
        assert leftover not in names and mine in names and store.keyspace in names
    finally:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {mine}")
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {leftover}")


def test_a_hung_test_fails_at_its_deadline_and_prints_every_threads_stack(tmp_path: Path) -> None:
    # The project's own configuration (pyproject.toml) with the deadline cut
    # short: what a hang in CI would print, in seconds instead of minutes.
    test = tmp_path / "test_hang.py"
    test.write_text(
        "import threading\n"
        "def test_hang():\n"
        "    stuck = threading.Event()\n"
        "    def blocked_worker():\n"
        "        stuck.wait()\n"
        "    threading.Thread(target=blocked_worker, daemon=True).start()\n"
        "    stuck.wait()\n"
    )
    done = pytest_run(
        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "-o", "timeout=2", str(test)
    )
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-3000:]
    assert "Failed: Timeout (>2.0s) from pytest-timeout" in done.stdout, done.stdout[-3000:]
    assert re.search(r"Stack of Thread-\d+ \(blocked_worker\)", done.stdout), done.stdout[-3000:]

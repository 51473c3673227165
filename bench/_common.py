"""Helpers shared by the benchmark scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from killrvideo_reco.config import Settings
from killrvideo_reco.devnode import DevCluster, DevClusterConfig
from killrvideo_reco.storage import CassandraStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def drop_keyspace(store: CassandraStore, keyspace: str, *, wait_s: float = 300) -> None:
    """Drop a benchmark keyspace and wait until it is gone.

    The drop can outlast the client's timeout while the node finishes building
    a vector index; the node carries on regardless, so the next measurement
    would pay for it. A drop that never completes is only logged: the results
    stand.
    """
    try:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    except Exception as exc:
        print(f"(dropping {keyspace} is slow: {exc}; waiting)", file=sys.stderr)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            rows = store.schema.execute(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                (keyspace,),
            )
        except Exception:
            rows = [keyspace]
        if not rows:
            return
        time.sleep(1)
    print(f"(could not drop {keyspace} within {wait_s:.0f} s)", file=sys.stderr)


def nodetool(*args: str) -> None:
    """Cassandra's own nodetool, run by the node manager against node1."""
    settings = Settings()
    config = DevClusterConfig(
        version=settings.cassandra_version,
        cache_dir=settings.cache_dir,
        state_dir=settings.state_dir,
    )
    DevCluster(config).nodetool(*args)

"""Helpers shared by the benchmark scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import os
import socket
import sys
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


def drop_keyspace(store: CassandraStore, keyspace: str) -> None:
    """Drop a benchmark keyspace; a slow drop (the node flushing vector indexes) is only logged."""
    try:
        store.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    except Exception as exc:  # the results stand; a slow drop must not hide them
        print(f"(could not drop {keyspace}: {exc})", file=sys.stderr)


def nodetool(*args: str) -> None:
    """Cassandra's own nodetool, run by the node manager against node1."""
    settings = Settings()
    config = DevClusterConfig(
        version=settings.cassandra_version,
        cache_dir=settings.cache_dir,
        state_dir=settings.state_dir,
    )
    DevCluster(config).nodetool(*args)

"""The node manager against the session's real node."""

import os
import subprocess
from pathlib import Path

from killrvideo_reco.config import Settings
from killrvideo_reco.devnode import DevCluster, DevClusterConfig

from ..conftest import KV


def test_start_is_idempotent_and_finds_the_running_node(node: str) -> None:
    again = subprocess.run(
        [KV, "cassandra", "start", "--timeout", "20"], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "node1" in again.stdout and "127.0.0.1:9042" in again.stdout
    assert ("running" in again.stdout) or ("external" in again.stdout)


def test_status_prints_state_contact_points_and_version(node: str) -> None:
    done = subprocess.run([KV, "cassandra", "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "contact points: 127.0.0.1" in done.stdout
    assert f"version: {Settings().cassandra_version}" in done.stdout


def test_the_node_has_our_write_concurrency_and_heap(node: str) -> None:
    cluster = DevCluster(DevClusterConfig())
    layout = cluster.layouts[0]
    yaml = (layout.conf_dir / "cassandra.yaml").read_text()
    assert "concurrent_writes: " in yaml
    writes = int(yaml.split("concurrent_writes: ")[1].split()[0])
    assert 1 <= writes <= (os.cpu_count() or 2)
    pid = cluster.status()[0].pid
    assert pid is not None, "the session's node should be one that kv-reco started"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"-Xmx1G" in cmdline
    assert b"org.apache.cassandra.service.CassandraDaemon" in cmdline


def test_layout_spreads_nodes_over_loopback_addresses(tmp_path: object) -> None:
    cluster = DevCluster(DevClusterConfig(nodes=3))
    assert cluster.contact_points == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    tokens = [layout.initial_token for layout in cluster.layouts]
    assert tokens == sorted(tokens) and len({layout.jmx_port for layout in cluster.layouts}) == 3


def test_nodetool_runs_against_the_node(node: str) -> None:
    out = DevCluster(DevClusterConfig()).nodetool("version")
    assert f"ReleaseVersion: {Settings().cassandra_version}" in out

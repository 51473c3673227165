"""Local Apache Cassandra 5.0 nodes for development, tests and benchmarks.

This package imports nothing else of killrvideo_reco: it is a small library
(fetch, configure, start, wait, stop) with a thin command line on top.
"""

from ._artifacts import ArtifactError, ensure_cassandra_jars
from .manager import DevCluster, DevClusterConfig, NodeError, NodeStatus

__all__ = [
    "ArtifactError",
    "DevCluster",
    "DevClusterConfig",
    "NodeError",
    "NodeStatus",
    "ensure_cassandra_jars",
]

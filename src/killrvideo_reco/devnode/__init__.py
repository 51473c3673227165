"""Local Apache Cassandra 5.0 nodes for development, tests and benchmarks.

This package imports nothing else of killrvideo_reco: it is a small library
(fetch, configure, start, wait, stop) with a thin command line on top.
"""

from ._artifacts import ArtifactError, ensure_cassandra_jars
from ._tls import TlsError
from .manager import DEV_PASSWORD, DEV_USERNAME, DevCluster, DevClusterConfig, NodeError, NodeStatus

__all__ = [
    "DEV_PASSWORD",
    "DEV_USERNAME",
    "ArtifactError",
    "DevCluster",
    "DevClusterConfig",
    "NodeError",
    "NodeStatus",
    "TlsError",
    "ensure_cassandra_jars",
]

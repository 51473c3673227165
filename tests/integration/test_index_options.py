"""The SAI vector graph options (KV_INDEX_*): created, read back live, refused, fallen back.

Two real nodes: the shared dev node, started with
-Dcassandra.sai.vector.allow_custom_parameters=true, and one of our own on
127.0.0.61 started without it (`kv-reco cassandra start
--no-custom-index-options`), which refuses custom options as a stock cluster
or Astra does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import STOCK_GRAPH, GraphOptions, Similarity
from killrvideo_reco.errors import SchemaMismatch, SchemaNotReady
from killrvideo_reco.storage import CassandraStore

from ..conftest import KV, Service, scratch_keyspace, service_env

STOCK_ADDRESS = "127.0.0.61"
PROPERTY = "cassandra.sai.vector.allow_custom_parameters"


def kv(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KV, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def keyspace(node: str) -> Iterator[str]:
    name = scratch_keyspace("graph")
    yield name
    with CassandraStore.open(Settings()) as store:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {name}")


def open_store(keyspace: str, **settings: object) -> CassandraStore:
    return CassandraStore.open(Settings(keyspace=keyspace, **settings))  # type: ignore[arg-type]


def test_the_index_gets_the_options_and_the_live_schema_says_so(keyspace: str) -> None:
    with open_store(keyspace, index_beam_width=48, index_max_connections=12) as store:
        spec = store.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
        assert spec.graph == GraphOptions(beam_width=48, max_connections=12)
        options = store.schema.execute(
            "SELECT options FROM system_schema.indexes WHERE keyspace_name = %s", (keyspace,)
        )[0][0]
        assert options["construction_beam_width"] == "48"
        assert options["maximum_node_connections"] == "12"
    # Another process with other settings still reads what the index holds.
    with open_store(keyspace) as store:
        assert store.load_schema().graph == GraphOptions(48, 12)
    shown = kv("config", "show", KV_KEYSPACE=keyspace)
    assert shown.returncode == 0, shown.stderr
    live = shown.stdout.splitlines()[-1]
    assert live.startswith(f"# live index {keyspace}.videos_content_features_idx: ")
    assert "construction_beam_width=48, maximum_node_connections=12" in live


def test_an_existing_index_keeps_its_options_with_a_note_or_an_error(keyspace: str) -> None:
    with open_store(keyspace, index_beam_width=32, index_max_connections=10) as store:
        store.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    notes: list[str] = []
    with open_store(keyspace) as store:  # the defaults: a note, the index unchanged
        spec = store.schema.apply(
            dimension=8, similarity=Similarity.COSINE, replication_factor=1, note=notes.append
        )
        assert spec.graph == GraphOptions(32, 10)
    assert len(notes) == 1 and "cannot change in place" in notes[0], notes
    explicit = {"index_beam_width": 64, "index_max_connections": 10}
    with open_store(keyspace, **explicit) as store, pytest.raises(SchemaMismatch) as refused:
        store.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    assert "exists with beam width 32, max connections 10, not beam width 64" in str(refused.value)


def test_the_start_up_line_and_the_metric_name_the_live_options(
    keyspace: str, tmp_path: Path
) -> None:
    with open_store(keyspace, index_beam_width=32, index_max_connections=10) as store:
        store.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    with Service(service_env(keyspace, tmp_path)) as service:
        metrics = httpx.get(f"{service.url}/metrics").text
    assert "index graph: beam width 32, max connections 10" in service.output
    info = [line for line in metrics.splitlines() if line.startswith("kv_reco_schema_info{")]
    assert len(info) == 1 and 'beam_width="32"' in info[0] and 'max_connections="10"' in info[0]


@pytest.fixture(scope="module")
def stock_node() -> Iterator[str]:
    """A node of ours without the JVM property, on its own address and state directory."""
    state = Settings().state_dir / "stock-options-node"
    where = ["--address", STOCK_ADDRESS, "--state-dir", str(state)]
    done = subprocess.run(
        [KV, "cassandra", "start", "--no-custom-index-options", *where],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"the stock node did not start:\n{done.stdout}\n{done.stderr}"
    yield STOCK_ADDRESS
    stopped = subprocess.run(
        [KV, "cassandra", "stop", *where], capture_output=True, text=True, timeout=600
    )
    assert stopped.returncode == 0, stopped.stderr


def on_stock(keyspace: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return kv(*args, KV_CONTACT_POINTS=STOCK_ADDRESS, KV_KEYSPACE=keyspace, **env)


@pytest.fixture
def stock_keyspace(stock_node: str) -> Iterator[str]:
    name = scratch_keyspace("stock")
    yield name
    with CassandraStore.open(Settings(contact_points=stock_node)) as store:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {name}")


def test_a_refusing_cluster_gets_the_stock_graph_when_the_options_are_defaults(
    stock_keyspace: str,
) -> None:
    done = on_stock(stock_keyspace, "schema", "apply", "--dimension", "8")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("note: this cluster refuses custom SAI graph options")
    assert PROPERTY in line and "with the stock beam width 100, max connections 16" in line
    assert "beam width 100, max connections 16" in done.stdout
    with CassandraStore.open(
        Settings(contact_points=STOCK_ADDRESS, keyspace=stock_keyspace)
    ) as store:
        assert store.load_schema().graph == STOCK_GRAPH


def test_a_refusing_cluster_stops_options_set_explicitly(stock_keyspace: str) -> None:
    done = on_stock(
        stock_keyspace, "schema", "apply", "--dimension", "8", KV_INDEX_MAX_CONNECTIONS="8"
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: this cluster refuses custom SAI graph options")
    assert PROPERTY in line and "KV_INDEX_BEAM_WIDTH / KV_INDEX_MAX_CONNECTIONS are set" in line
    with (
        CassandraStore.open(Settings(contact_points=STOCK_ADDRESS, keyspace=stock_keyspace)) as s,
        pytest.raises(SchemaNotReady),
    ):
        s.schema.vector_spec()  # no index was created behind the operator's back


def test_explicit_stock_values_need_no_property(stock_keyspace: str) -> None:
    done = on_stock(
        stock_keyspace,
        "schema",
        "apply",
        "--dimension",
        "8",
        KV_INDEX_BEAM_WIDTH="100",
        KV_INDEX_MAX_CONNECTIONS="16",
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr

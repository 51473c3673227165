"""Where dev clusters live, and what an --auth --tls node's configuration says."""

from __future__ import annotations

from pathlib import Path

import pytest

from killrvideo_reco.devnode import DevCluster, DevClusterConfig
from killrvideo_reco.devnode._config import Security, cassandra_yaml


def test_a_cluster_off_the_default_addresses_never_shares_a_port_with_it(tmp_path: Path) -> None:
    shared = DevCluster(DevClusterConfig(nodes=3, state_dir=tmp_path / "a"))
    faults = DevCluster(
        DevClusterConfig(nodes=3, first_address="127.0.0.21", state_dir=tmp_path / "b")
    )
    assert faults.contact_points == ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
    assert [layout.jmx_port for layout in faults.layouts] == [9200, 9300, 9400]
    assert not {layout.jmx_port for layout in shared.layouts} & {
        layout.jmx_port for layout in faults.layouts
    }
    yaml_shared = cassandra_yaml(shared.layouts[0], seed="127.0.0.1", concurrent_writes=2)
    yaml_faults = cassandra_yaml(faults.layouts[1], seed="127.0.0.21", concurrent_writes=2)
    assert "cluster_name: kv-reco-dev\n" in yaml_shared
    # Another cluster name: a node of one cluster can never join the other.
    assert "cluster_name: kv-reco-dev-21\n" in yaml_faults
    assert "listen_address: 127.0.0.22" in yaml_faults and '"127.0.0.21:7000"' in yaml_faults


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.x", "127.0.0.254"])
def test_addresses_outside_loopback_or_without_room_are_refused(
    address: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0"):
        DevCluster(DevClusterConfig(nodes=3, first_address=address, state_dir=tmp_path))


def test_auth_and_tls_turn_on_the_authenticator_and_client_encryption(tmp_path: Path) -> None:
    layout = DevCluster(DevClusterConfig(first_address="127.0.0.10", state_dir=tmp_path)).layouts[0]
    plain = cassandra_yaml(layout, seed=layout.address, concurrent_writes=2)
    assert "authenticator: AllowAllAuthenticator" in plain
    assert "client_encryption_options" not in plain
    secure = cassandra_yaml(
        layout,
        seed=layout.address,
        concurrent_writes=2,
        security=Security(auth=True, keystore=tmp_path / "k.p12", keystore_password="pw"),
    )
    assert "authenticator: PasswordAuthenticator" in secure
    assert "client_encryption_options:\n  enabled: true\n  optional: false\n" in secure
    assert f"keystore: {tmp_path / 'k.p12'}" in secure and "store_type: PKCS12" in secure


def test_the_jvm_property_for_graph_options_is_on_unless_turned_off(tmp_path: Path) -> None:
    from killrvideo_reco.devnode._config import (
        CUSTOM_INDEX_OPTIONS_PROPERTY,
        NodeLayout,
        jvm_command,
    )

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "jamm-0.4.0.jar").touch()
    layout = NodeLayout(index=1, count=1, root=tmp_path / "n1", native_port=9042, storage_port=7000)
    flag = f"-D{CUSTOM_INDEX_OPTIONS_PROPERTY}=true"
    assert flag in jvm_command(layout, lib_dir=lib, heap="1G")
    assert flag not in jvm_command(layout, lib_dir=lib, heap="1G", custom_index_options=False)


@pytest.mark.parametrize(("heap", "buffer"), [("1G", 64), ("512M", 64), ("4G", 256), ("16G", 1024)])
def test_the_sai_segment_buffer_follows_the_heap(heap: str, buffer: int, tmp_path: Path) -> None:
    # A bench node with a production-sized heap builds production-sized graph
    # segments; the 1 GiB dev heap keeps the buffer that fits it.
    layout = DevCluster(DevClusterConfig(state_dir=tmp_path)).layouts[0]
    yaml = cassandra_yaml(layout, seed=layout.address, concurrent_writes=2, heap=heap)
    assert f"segment_write_buffer_size: {buffer}MiB\n" in yaml


@pytest.mark.parametrize("heap", ["512M", "1G", "4096M", "16G"])
def test_heaps_from_512m_to_16g_are_accepted(heap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from killrvideo_reco.config import Settings

    monkeypatch.setenv("KV_CASSANDRA_HEAP", heap)
    assert Settings().cassandra_heap == heap


@pytest.mark.parametrize("heap", ["511M", "17G", "0G", "4g", "1.5G", "10000M"])
def test_heaps_outside_the_range_are_refused(heap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from killrvideo_reco.config import Settings

    monkeypatch.setenv("KV_CASSANDRA_HEAP", heap)
    with pytest.raises(ValidationError, match="cassandra_heap"):
        Settings()

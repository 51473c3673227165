"""Per-node files: cassandra.yaml, logback.xml and the JVM command line.

The JVM options are the ones Cassandra ships in ``conf/jvm-server.options`` and
``conf/jvm17-server.options``; we cannot read them from the jars, so they live here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_MIN_TOKEN = -(2**63)
_RING = 2**64

# From jvm-server.options (UseBiasedLocking left out: obsolete on 17, it only warns).
_JVM_SERVER_OPTIONS = (
    "-ea",
    "-da:net.openhft...",
    "-XX:+UseThreadPriorities",
    "-XX:+HeapDumpOnOutOfMemoryError",
    "-Xss256k",
    "-XX:+AlwaysPreTouch",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+UseNUMA",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
)

# From jvm17-server.options: G1 settings, JPMS exports/opens and Netty options.
_JVM17_SERVER_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)  # fmt: skip

_LOGBACK = """<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log_dir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
</configuration>
"""


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """Where one node lives: its address, ports and directories."""

    index: int  # 1-based
    count: int
    root: Path
    native_port: int
    storage_port: int
    # The last octet of the node's loopback address: index for the default
    # cluster (127.0.0.1..N); another cluster on the machine starts elsewhere.
    host: int = 0

    @property
    def octet(self) -> int:
        return self.host or self.index

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def address(self) -> str:
        # The whole of 127/8 answers on loopback, so each node gets its own address
        # and every node can keep the standard ports.
        return f"127.0.0.{self.octet}"

    @property
    def jmx_port(self) -> int:
        # JMX listens on 127.0.0.1 whatever the node's address, so the port
        # follows the address: clusters on other addresses never collide.
        return 7100 + 100 * self.octet

    @property
    def initial_token(self) -> int:
        return _MIN_TOKEN + (self.index - 1) * (_RING // self.count)

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def system_log(self) -> Path:
        return self.log_dir / "system.log"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "cassandra.pid"


@dataclass(frozen=True, slots=True)
class Security:
    """Client authentication and encryption of a node; off for the plain dev node."""

    auth: bool = False
    keystore: Path | None = None  # PKCS12 with the node's key and CA-signed certificate
    keystore_password: str = ""


def heap_mib(heap: str) -> int:
    """``512M`` or ``4G`` (the JVM's -Xmx spelling) in MiB."""
    return int(heap[:-1]) * (1024 if heap.endswith("G") else 1)


def segment_buffer_mib(heap: str) -> int:
    """The SAI segment build buffer for a heap: a sixteenth of it, 64 MiB to 1 GiB.

    Cassandra's default, 1 GiB, does not fit a 1 GiB dev heap. The buffer also
    sets how many vectors one on-disk graph segment holds (a compaction writes a
    new segment each time it fills), and a query searches every segment, so a
    bench node with a production-sized heap gets a production-sized buffer.
    """
    return max(64, min(1024, heap_mib(heap) // 16))


def cassandra_yaml(
    layout: NodeLayout,
    *,
    seed: str,
    concurrent_writes: int,
    security: Security = Security(),
    heap: str = "1G",
) -> str:
    d = layout.root
    # Another name for clusters off the default addresses: a node can never
    # gossip its way into a cluster it does not belong to.
    name = "kv-reco-dev" if layout.host == 0 else f"kv-reco-dev-{layout.octet - layout.index + 1}"
    lines = [
        f"cluster_name: {name}",
        "num_tokens: 1",
        f"initial_token: {layout.initial_token}",
        "partitioner: org.apache.cassandra.dht.Murmur3Partitioner",
        "endpoint_snitch: SimpleSnitch",
        "seed_provider:",
        "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider",
        "    parameters:",
        f'      - seeds: "{seed}:{layout.storage_port}"',
        f"listen_address: {layout.address}",
        f"rpc_address: {layout.address}",
        f"native_transport_port: {layout.native_port}",
        f"storage_port: {layout.storage_port}",
        f"auto_bootstrap: {'true' if layout.index == 1 else 'false'}",
        f"data_file_directories: [{d / 'data'}]",
        f"commitlog_directory: {d / 'commitlog'}",
        f"saved_caches_directory: {d / 'saved_caches'}",
        f"hints_directory: {d / 'hints'}",
        f"cdc_raw_directory: {d / 'cdc_raw'}",
        "commitlog_sync: periodic",
        "commitlog_sync_period: 10000ms",
        # Above the core count, concurrent writes of an SAI-indexed vector fail in
        # 5.0.9: jvector's object pool is sized cores + 1 (CASSANDRA-21644).
        f"concurrent_writes: {concurrent_writes}",
        f"concurrent_reads: {max(2, concurrent_writes)}",
        "concurrent_counter_writes: 2",
        "key_cache_size: 0MiB",
        "sai_options:",
        f"  segment_write_buffer_size: {segment_buffer_mib(heap)}MiB",
        # Server-side timeouts stay below the client's request timeout, so a slow
        # write comes back as a typed WriteTimeout rather than a client timeout.
        "write_request_timeout: 2000ms",
        "read_request_timeout: 2000ms",
        "cas_contention_timeout: 1000ms",
        # A dev node: DROP and TRUNCATE need not flush and snapshot first (a flush
        # builds the on-disk vector index, which takes tens of seconds).
        "auto_snapshot: false",
        f"authenticator: {'PasswordAuthenticator' if security.auth else 'AllowAllAuthenticator'}",
        "authorizer: AllowAllAuthorizer",
        "start_native_transport: true",
    ]
    if security.keystore is not None:
        lines += [
            "client_encryption_options:",
            "  enabled: true",
            "  optional: false",  # TLS only: a plaintext client is dropped
            f"  keystore: {security.keystore}",
            f"  keystore_password: {security.keystore_password}",
            "  store_type: PKCS12",
            "  require_client_auth: false",
        ]
    return "\n".join(lines) + "\n"


CUSTOM_INDEX_OPTIONS_PROPERTY = "cassandra.sai.vector.allow_custom_parameters"


def jvm_command(
    layout: NodeLayout,
    *,
    lib_dir: Path,
    heap: str,
    java: str = "java",
    custom_index_options: bool = True,
) -> list[str]:
    jamm = next(lib_dir.glob("jamm-*.jar"))
    # Lets CREATE INDEX set the SAI vector graph's construction_beam_width
    # and maximum_node_connections; without it 5.0 refuses both. The stock
    # graph options cost about half of the node's CPU per indexed vector.
    # Off only to test what an operator's stock cluster (or Astra) does.
    custom = [f"-D{CUSTOM_INDEX_OPTIONS_PROPERTY}=true"] if custom_index_options else []
    return [
        java,
        *_JVM_SERVER_OPTIONS,
        *_JVM17_SERVER_OPTIONS,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        f"-javaagent:{jamm}",
        f"-Dcassandra.config=file://{layout.conf_dir / 'cassandra.yaml'}",
        f"-Dlogback.configurationFile={layout.conf_dir / 'logback.xml'}",
        f"-Dcassandra.storagedir={layout.root}",
        f"-Dcassandra.logdir={layout.log_dir}",
        f"-Dcassandra.jmx.local.port={layout.jmx_port}",
        "-Dcassandra-foreground=yes",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.superuser_setup_delay_ms=0",
        *custom,
        "-cp",
        f"{layout.conf_dir}{os.pathsep}{lib_dir}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]


def nodetool_command(
    layout: NodeLayout, *, lib_dir: Path, java: str = "java", args: tuple[str, ...]
) -> list[str]:
    # The JPMS opens of jvm17-server.options, without which nodetool cannot start.
    opens = [o for o in _JVM17_SERVER_OPTIONS if o.startswith("--add-") or "=ALL-UNNAMED" in o]
    return [
        java,
        *opens,
        "-Xmx256m",
        f"-Dcassandra.logdir={layout.log_dir}",
        "-Dcassandra.storagedir=" + str(layout.root),
        "-cp",
        f"{layout.conf_dir}{os.pathsep}{lib_dir}/*",
        "org.apache.cassandra.tools.NodeTool",
        "-h",
        "127.0.0.1",  # JMX's local-only listener
        "-p",
        str(layout.jmx_port),
        *args,
    ]


def write_node_files(
    layout: NodeLayout,
    *,
    seed: str,
    concurrent_writes: int,
    security: Security = Security(),
    heap: str = "1G",
) -> None:
    for sub in ("conf", "data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs"):
        (layout.root / sub).mkdir(parents=True, exist_ok=True)
    yaml = cassandra_yaml(
        layout, seed=seed, concurrent_writes=concurrent_writes, security=security, heap=heap
    )
    (layout.conf_dir / "cassandra.yaml").write_text(yaml)
    (layout.conf_dir / "logback.xml").write_text(_LOGBACK.format(log_dir=layout.log_dir))

"""Start, watch and stop local Apache Cassandra nodes, the way ccm does.

Each node is a ``CassandraDaemon`` JVM of our own, launched from the jars that
Maven resolved, with a ``cassandra.yaml`` and ``logback.xml`` that we write. A
pid file per node records what *we* started: ``stop`` never touches a node that
it did not start, and ``start`` adopts a node that is already answering.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ._artifacts import ensure_cassandra_jars
from ._config import NodeLayout, Security, jvm_command, nodetool_command, write_node_files
from ._tls import DevTls

_READY_LINE = "Starting listening for CQL clients"
# PasswordAuthenticator creates its default superuser just after CQL listens.
_SUPERUSER_LINE = "Created default superuser role"
# The superuser that PasswordAuthenticator creates on a new node: a dev node's
# well-known credentials (production clusters replace it).
DEV_USERNAME = "cassandra"
DEV_PASSWORD = "cassandra"
_POLL_S = 0.25


class NodeError(RuntimeError):
    """A node failed to start or stop; ``log_tail`` holds the end of its logs."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True, slots=True)
class DevClusterConfig:
    version: str = "5.0.9"
    nodes: int = 1
    heap: str = "1G"
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "kv-reco")
    state_dir: Path = field(default_factory=lambda: Path.home() / ".local/state/kv-reco")
    native_port: int = 9042
    storage_port: int = 7000
    concurrent_writes: int = field(default_factory=lambda: os.cpu_count() or 2)
    java: str = "java"
    # The first node's loopback address; the others follow it (127.0.0.1..N by
    # default). A cluster with its own state directory takes other addresses,
    # so it never disturbs the shared dev node on 127.0.0.1.
    first_address: str = "127.0.0.1"
    auth: bool = False  # PasswordAuthenticator, user cassandra / cassandra
    tls: bool = False  # client encryption only; clients trust tls_ca_pem
    # -Dcassandra.sai.vector.allow_custom_parameters=true: SAI graph options
    # (docs/index-options.md). Off only to test a stock cluster's refusal.
    custom_index_options: bool = True


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    address: str
    port: int
    state: str  # "running" (ours), "external" (answering, not ours), "starting", "stopped"
    pid: int | None


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_open(address: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _first_octet(address: str, nodes: int) -> int:
    parts = address.split(".")
    if len(parts) != 4 or parts[:3] != ["127", "0", "0"] or not parts[3].isdigit():
        raise ValueError(f"a dev node address must be 127.0.0.N, not {address!r}")
    first = int(parts[3])
    if not 1 <= first <= 255 - nodes:
        raise ValueError(f"127.0.0.{first} leaves no room for {nodes} node(s)")
    return first


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class DevCluster:
    """N local nodes on 127.0.0.1, 127.0.0.2, … sharing one state directory."""

    def __init__(self, config: DevClusterConfig) -> None:
        self.config = config
        root = config.state_dir / "cluster"
        first = _first_octet(config.first_address, config.nodes)
        self.tls = DevTls(config.state_dir / "tls")
        self.layouts = [
            NodeLayout(
                index=i,
                count=config.nodes,
                root=root / f"node{i}",
                native_port=config.native_port,
                storage_port=config.storage_port,
                host=0 if first == 1 else first + i - 1,
            )
            for i in range(1, config.nodes + 1)
        ]

    @property
    def contact_points(self) -> list[str]:
        return [layout.address for layout in self.layouts]

    @property
    def tls_ca_pem(self) -> Path | None:
        """The CA certificate clients must trust, when the nodes serve TLS."""
        return self.tls.ca_pem if self.config.tls else None

    def _security(self, layout: NodeLayout) -> Security:
        if not self.config.tls:
            return Security(auth=self.config.auth)
        return Security(
            auth=self.config.auth,
            keystore=self.tls.keystore(layout.address),
            keystore_password=self.tls.password(),
        )

    # -- process bookkeeping -------------------------------------------------

    def _our_pid(self, layout: NodeLayout) -> int | None:
        """The pid of the node we started for this layout, if it is still alive."""
        pid = self._recorded_pid(layout)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        # The pid may have been reused by an unrelated process since.
        if "CassandraDaemon" not in cmdline or str(layout.conf_dir) not in cmdline:
            return None
        return pid if _pid_alive(pid) else None

    @staticmethod
    def _recorded_pid(layout: NodeLayout) -> int | None:
        try:
            return int(layout.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _status_of(self, layout: NodeLayout) -> NodeStatus:
        pid = self._our_pid(layout)
        answering = _port_open(layout.address, layout.native_port)
        if pid is not None:
            state = "running" if answering else "starting"
        else:
            state = "external" if answering else "stopped"
        return NodeStatus(layout.name, layout.address, layout.native_port, state, pid)

    def status(self) -> list[NodeStatus]:
        return [self._status_of(layout) for layout in self.layouts]

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.config.state_dir / "cluster.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- start -----------------------------------------------------------------

    def start(self, *, timeout_s: float = 180) -> list[NodeStatus]:
        """Start every node that is not running and wait until all answer CQL.

        Idempotent: a node that already answers (ours or not) is left alone, and
        one that is still starting is waited for.
        """
        lib_dir = ensure_cassandra_jars(
            version=self.config.version, cache_dir=self.config.cache_dir
        )
        deadline = time.monotonic() + timeout_s
        with self._lock():
            if self.config.tls:
                self.tls.ensure(self.contact_points)
            seed, *others = self.layouts
            # The seed first: the other nodes need it to join the ring.
            self._start_one(seed, lib_dir=lib_dir, deadline=deadline)
            pending = [self._launch(layout, lib_dir=lib_dir) for layout in others]
            for layout, log_offset in zip(others, pending, strict=True):
                self.wait_for_binary_interface(layout, log_offset=log_offset, deadline=deadline)
        return self.status()

    def _start_one(self, layout: NodeLayout, *, lib_dir: Path, deadline: float) -> None:
        offset = self._launch(layout, lib_dir=lib_dir)
        self.wait_for_binary_interface(layout, log_offset=offset, deadline=deadline)

    def _launch(self, layout: NodeLayout, *, lib_dir: Path) -> int | None:
        """Spawn the node's JVM unless it runs already; return the log offset to watch from."""
        status = self._status_of(layout)
        if status.state in ("running", "external"):
            return None
        if status.state == "starting":
            return 0
        seed = self.layouts[0].address
        write_node_files(
            layout,
            seed=seed,
            concurrent_writes=self.config.concurrent_writes,
            security=self._security(layout),
            heap=self.config.heap,
        )
        offset = layout.system_log.stat().st_size if layout.system_log.exists() else 0
        cmd = jvm_command(
            layout,
            lib_dir=lib_dir,
            heap=self.config.heap,
            java=self.config.java,
            custom_index_options=self.config.custom_index_options,
        )
        with layout.console_log.open("ab") as console:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=layout.root,
                start_new_session=True,  # outlives the CLI that started it
            )
        layout.pid_file.write_text(str(proc.pid))
        return offset

    def wait_for_binary_interface(
        self, layout: NodeLayout, *, log_offset: int | None, deadline: float
    ) -> None:
        """Wait until the node logs that CQL listens and its port accepts connections."""
        if log_offset is None:
            return
        while time.monotonic() < deadline:
            # Not _our_pid: just after the fork the child may not have exec'd java yet.
            pid = self._recorded_pid(layout)
            if pid is None or not _pid_alive(pid):
                raise NodeError(
                    f"{layout.name} exited during start-up", log_tail=self.log_tail(layout)
                )
            if (
                self._log_contains(layout, _READY_LINE, log_offset)
                and _port_open(layout.address, layout.native_port)
                and self._superuser_ready(layout)
            ):
                return
            time.sleep(_POLL_S)
        # Leave no half-started node behind: the next start must begin clean.
        self._terminate(layout, timeout_s=60)
        raise NodeError(
            f"{layout.name} did not answer CQL on {layout.address}:{layout.native_port} in time",
            log_tail=self.log_tail(layout),
        )

    def _superuser_ready(self, layout: NodeLayout) -> bool:
        # Only the first node creates the role; the line stays in its log after
        # restarts (the appender appends), and the role in system_auth.
        if not self.config.auth or layout.index != 1:
            return True
        return self._log_contains(layout, _SUPERUSER_LINE, 0)

    @staticmethod
    def _log_contains(layout: NodeLayout, needle: str, offset: int) -> bool:
        try:
            with layout.system_log.open("rb") as fh:
                fh.seek(offset)
                return needle.encode() in fh.read()
        except OSError:
            return False

    def log_tail(self, layout: NodeLayout, lines: int = 60) -> str:
        parts = [f"--- {layout.system_log}", tail(layout.system_log, lines)]
        parts += [f"--- {layout.console_log}", tail(layout.console_log, 20)]
        return "\n".join(parts)

    # -- tools -----------------------------------------------------------------

    def nodetool(self, *args: str, node: int = 1, timeout_s: float = 1800) -> str:
        """Run Cassandra's own nodetool (from the cached jars) on one node; return its output."""
        layout = self.layouts[node - 1]
        lib_dir = ensure_cassandra_jars(
            version=self.config.version, cache_dir=self.config.cache_dir
        )
        cmd = nodetool_command(layout, lib_dir=lib_dir, java=self.config.java, args=args)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise NodeError(
                f"nodetool {' '.join(args)} failed", log_tail=(done.stdout + done.stderr)[-3000:]
            )
        return done.stdout

    # -- stop ------------------------------------------------------------------

    def stop(self, *, timeout_s: float = 300) -> list[NodeStatus]:
        """Drain and stop the nodes we started; wait until their processes exit.

        SIGTERM makes Cassandra drain (flush memtables, build on-disk indexes)
        before it exits, which takes tens of seconds after a bulk load.
        """
        with self._lock():
            for layout in reversed(self.layouts):
                self._terminate(layout, timeout_s=timeout_s)
        return self.status()

    def _terminate(self, layout: NodeLayout, *, timeout_s: float) -> None:
        pid = self._our_pid(layout)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                # The commit log makes this safe: the next start replays it.
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(_POLL_S)
        layout.pid_file.unlink(missing_ok=True)

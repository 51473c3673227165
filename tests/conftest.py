"""One real Cassandra node per test session; a fresh keyspace per session.

The node is started (or found running) through the CLI, exactly as `make test`
and `make run` do. If it cannot start, the session fails: nothing is skipped.

Safety first: the suite creates and drops keyspaces, so the shell's ``KV_*``
variables are cleared before anything reads them, and a session refuses to run
against contact points other than the local dev nodes unless
``KV_TEST_ALLOW_REMOTE=1`` says so. Keyspaces that a killed session left
behind are dropped when the next session first needs the node. Random data is
seeded per test from one session seed, printed on failure (``--seed`` replays).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from killrvideo_reco.api import create_app
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from .proc import Child

KV = str(Path(sys.executable).with_name("kv-reco"))
DIM = 1536

ALLOW_REMOTE = "KV_TEST_ALLOW_REMOTE"
# What KV_TEST_ALLOW_REMOTE=1 keeps from the shell: where the cluster is.
_CLUSTER_VARS = ("KV_CONTACT_POINTS", "KV_CASSANDRA_PORT", "KV_LOCAL_DC")
# Every keyspace a session makes is named for its process, so that the next
# session can tell a leftover (its process is gone) from a live neighbour's.
_SCRATCH = re.compile(r"^kv_test_(\d+)_")
_SEED = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, help="replay the random data of an earlier session")
    parser.addoption(
        "--browser",
        action="store_true",
        help="run tests/browser, which needs Chromium and Playwright (`make test-browser`)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # The browser suite needs more set-up than `make test` does; `make test-browser`
    # (which CI runs too) installs it and passes --browser.
    if collection_path == Path(__file__).parent / "browser":
        return None if config.getoption("browser") else True
    return None


def pytest_configure(config: pytest.Config) -> None:
    contact_points = os.environ.get("KV_CONTACT_POINTS", "")
    remote = [p for p in contact_points.split(",") if p.strip() and not is_local(p)]
    allowed = os.environ.get(ALLOW_REMOTE) == "1"
    if remote and not allowed:
        pytest.exit(
            f"KV_CONTACT_POINTS={contact_points} names {', '.join(remote)}, not a local dev "
            "node, and the suite creates and drops keyspaces there. Unset it, or set "
            f"{ALLOW_REMOTE}=1 to test against that cluster.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    keep = {ALLOW_REMOTE, *(_CLUSTER_VARS if allowed else ("KV_CONTACT_POINTS",))}
    for name in [n for n in os.environ if n.startswith("KV_") and n not in keep]:
        del os.environ[name]
    seed = config.getoption("seed")
    config.stash[_SEED] = seed if seed is not None else secrets.randbits(32)


def is_local(contact_point: str) -> bool:
    """The dev nodes listen on loopback addresses (127.0.0.N for node N)."""
    host = contact_point.strip()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pytest_report_header(config: pytest.Config) -> str:
    return f"random seed: {config.stash[_SEED]} (replay with --seed {config.stash[_SEED]})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and "rng" in getattr(item, "fixturenames", ()):
        seed = item.config.stash[_SEED]
        report.sections.append(("random data", f"seed {seed}: replay with --seed {seed}"))
    return report


def scratch_keyspace(tag: str = "") -> str:
    """A keyspace name of this session's own; the next session drops it if it is left over."""
    return f"kv_test_{os.getpid()}_{tag + '_' if tag else ''}{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def drop_leftover_keyspaces(store: CassandraStore) -> list[str]:
    """Drop the keyspaces of test sessions whose process has gone; return their names."""
    names = [
        str(r[0]) for r in store.schema.execute("SELECT keyspace_name FROM system_schema.keyspaces")
    ]
    leftovers = [n for n in names if (m := _SCRATCH.match(n)) and not _alive(int(m.group(1)))]
    for name in leftovers:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {name}")
    return leftovers


@pytest.fixture(scope="session")
def node() -> str:
    done = subprocess.run([KV, "cassandra", "start"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"Cassandra did not start:\n{done.stdout}\n{done.stderr}"
    store = CassandraStore.open(Settings())
    try:
        drop_leftover_keyspaces(store)
    finally:
        store.close()
    return done.stdout


@pytest.fixture(scope="session")
def settings(node: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        keyspace=scratch_keyspace(),
        jwt_secret=secrets.token_urlsafe(40),
        state_dir=tmp_path_factory.mktemp("state"),
    )


@pytest.fixture(scope="session")
def store(settings: Settings) -> Iterator[CassandraStore]:
    store = CassandraStore.open(settings)
    store.schema.apply(dimension=DIM, similarity=Similarity.COSINE, replication_factor=1)
    store.load_schema()
    yield store
    store.schema.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
    store.close()


@pytest.fixture(scope="session")
def client(settings: Settings, store: CassandraStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def new_video(store: CassandraStore) -> Callable[..., Video]:
    def make(**fields: object) -> Video:
        video = Video(**{"name": f"test video {uuid.uuid4().hex[:8]}", **fields})  # type: ignore[arg-type]
        store.videos.insert([video])
        return video

    return make


@pytest.fixture
def video(new_video: Callable[..., Video]) -> Video:
    return new_video(
        description="A talk about vectors",
        tags=frozenset({"cassandra", "vectors"}),
        userid=uuid.uuid4(),
        thumbnail_url="https://example.com/t.jpg",
        preview_image_location="https://example.com/p.jpg",
    )


def token_for(settings: Settings, *roles: str, ttl_s: int = 600) -> str:
    return mint_token(settings, roles=list(roles), ttl_s=ttl_s)


@pytest.fixture(scope="session")
def creator_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, CREATOR)}"}


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """Seeded from the session seed and the test's id: one test replays alone."""
    seed = request.config.stash[_SEED]
    return np.random.default_rng([seed, zlib.crc32(request.node.nodeid.encode())])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A real `kv-reco serve` process with this environment: ``url`` while it runs;
    ``output`` (its stdout and stderr, drained as it writes) at any time."""

    def __init__(self, env: dict[str, str], *args: str, ready_timeout_s: float = 60) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{free_port()}"
        self.ready_timeout_s = ready_timeout_s
        port = self.url.rsplit(":", 1)[1]
        self.child = Child([KV, "serve", "--port", port, *args], env=env)

    @property
    def output(self) -> str:
        return self.child.output

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.child.proc is not None, "not started"
        return self.child.proc

    def __enter__(self) -> Service:
        self.child.start()
        try:
            self.child.wait_for(
                self._ready, what="serve to answer /readyz 200", timeout_s=self.ready_timeout_s
            )
        except BaseException:
            self.child.stop(signum=signal.SIGKILL)
            raise
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, *, timeout_s: float = 30) -> int:
        """SIGTERM, then wait for the exit; its return code (-15: uvicorn re-raised SIGTERM)."""
        return self.child.stop(timeout_s=timeout_s)

    def __exit__(self, *exc_info: object) -> None:
        self.child.stop()


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """Run `kv-reco serve` with this environment until the block ends; yield its URL.

    On the way out it asserts that the service logged its use of the local
    development key (tests leave KV_JWT_SECRET out, as `make run` does).
    """
    with Service(env) as service:
        yield service.url
    assert "using the local development JWT key" in service.output, service.output[-2000:]


def service_env(keyspace: str, state_dir: Path, **extra: str) -> dict[str, str]:
    # No KV_JWT_SECRET: serve, token and ingest agree through the local dev key.
    env = {**os.environ, "KV_KEYSPACE": keyspace, "KV_STATE_DIR": str(state_dir), **extra}
    env.pop("KV_JWT_SECRET", None)
    return env


@pytest.fixture(scope="session")
def served(
    settings: Settings, store: CassandraStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `kv-reco serve` on the session keyspace: its URL and its environment."""
    env = service_env(settings.keyspace, tmp_path_factory.mktemp("dev"))
    with serving(env) as url:
        yield url, env


@pytest.fixture(scope="session")
def served_headers(served: tuple[str, dict[str, str]]) -> dict[str, str]:
    """A creator token that `served` accepts: signed with its local dev key."""
    dev = Settings(state_dir=Path(served[1]["KV_STATE_DIR"]))
    return {"Authorization": f"Bearer {token_for(dev, CREATOR)}"}

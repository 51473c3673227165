"""`make test-faults`: ingest through a real `kv-reco serve` while nodes die.

Three nodes of their own (127.0.0.21-23, their own state directory: the shared
dev node is never touched), the schema at RF=3, and a sustained load of fresh
vectors, each to a video of its own. The service starts *before* the cluster.
Phases: no cluster yet; all up; node3 killed (-9); node3 restarted; node2 and
node3 killed; both restarted. Every answer is recorded. It fails unless

- every answer is 202, or 503 with Retry-After: no 500, no client timeout;
- every 202'd vector reads back bit-exact at QUORUM afterwards;
- with two of three down, ingest answers 503 within the request timeout;
- the service, never restarted, accepts again after the nodes come back.

The verification reads with the driver itself, not through our storage code,
so that it checks what Cassandra holds rather than what we think we wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import numpy as np
from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.devnode import DevCluster, DevClusterConfig
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

KV = str(Path(sys.executable).with_name("kv-reco"))
FIRST = "127.0.0.21"
KEYSPACE = "kv_faults"
DIM = 1536
CLIENT_TIMEOUT_S = 15.0  # far above KV_REQUEST_TIMEOUT_S: a client timeout is a failure


@dataclass
class Phase:
    name: str
    statuses: Counter[int] = field(default_factory=Counter)
    no_retry_after: int = 0
    timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_503: list[float] = field(default_factory=list)
    accepted: list[uuid.UUID] = field(default_factory=list)
    related: Counter[int] = field(default_factory=Counter)  # GET related, by status
    readyz: Counter[int] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.timeouts + sum(self.errors.values())


class Load:
    """Concurrent clients, each sending a fresh vector to a video never written before."""

    def __init__(self, url: str, token: str, videos: list[uuid.UUID], clients: int) -> None:
        self.url, self.token, self.clients = url, token, clients
        self.todo = iter(videos)
        self.sent: dict[uuid.UUID, np.ndarray] = {}
        self.phase = Phase("-")
        self.phases: list[Phase] = []
        self.rng = np.random.default_rng(2026)
        self.running = True

    def begin(self, name: str) -> Phase:
        self.phase = Phase(name)
        self.phases.append(self.phase)
        print(f"[{time.strftime('%H:%M:%S')}] phase: {name}", flush=True)
        return self.phase

    async def client(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = httpx.Timeout(CLIENT_TIMEOUT_S)
        async with httpx.AsyncClient(base_url=self.url, timeout=timeout) as http:
            while self.running:
                video = next(self.todo)
                vector = self.rng.standard_normal(DIM).astype(np.float32)
                self.sent[video] = vector
                phase, started = self.phase, time.monotonic()
                body = {"videoId": str(video), "vector": vector.tolist()}
                try:
                    answer = await http.post("/api/v1/reco/ingest", json=body, headers=headers)
                except httpx.TimeoutException:
                    phase.timeouts += 1
                    continue
                except httpx.TransportError as exc:
                    phase.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.2)
                    continue
                phase.statuses[answer.status_code] += 1
                if answer.status_code == 202:
                    phase.accepted.append(video)
                elif answer.status_code == 503:
                    phase.latency_503.append(time.monotonic() - started)
                    if "retry-after" not in answer.headers:
                        phase.no_retry_after += 1
                    # A well-behaved client waits; a short wait keeps the load up.
                    await asyncio.sleep(0.1)
                else:
                    print(f"  unexpected {answer.status_code}: {answer.text[:300]}", flush=True)

    async def observer(self) -> None:
        """Related videos and /readyz, twice a second: what still works in each phase."""
        async with httpx.AsyncClient(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as http:
            while self.running:
                phase = self.phase
                known = next((p.accepted[0] for p in self.phases if p.accepted), None)
                try:
                    ready = await http.get("/readyz")
                    phase.readyz[ready.status_code] += 1
                    if known is not None:
                        related = await http.get(f"/api/v1/videos/id/{known}/related")
                        phase.related[related.status_code] += 1
                except httpx.TransportError as exc:
                    phase.errors[f"observer {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)

    async def run_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def until_accepting(self, deadline_s: float) -> float:
        """Wait until the current phase has a 202; return how long it took."""
        started = time.monotonic()
        while not self.phase.accepted:
            if time.monotonic() - started > deadline_s:
                raise SystemExit(f"the service did not accept again within {deadline_s:.0f} s")
            await asyncio.sleep(0.1)
        return time.monotonic() - started


def kill9(cluster: DevCluster, *nodes: int) -> None:
    for status in cluster.status():
        if int(status.name.removeprefix("node")) in nodes:
            assert status.pid is not None, f"{status.name} is not running"
            os.kill(status.pid, signal.SIGKILL)
            print(f"  kill -9 {status.name} (pid {status.pid})", flush=True)


def wait_ready(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url}/readyz did not become ready in {deadline_s:.0f} s")


def before_the_cluster(url: str, token: str) -> Phase:
    """The service is up, the cluster is not: not ready, and 503 with Retry-After."""
    phase = Phase("no cluster yet")
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503 and "not connected" in ready.json()["message"], ready.text
    for _ in range(20):
        body = {"videoId": str(uuid.uuid4()), "vector": [0.5] * DIM}
        started = time.monotonic()
        answer = httpx.post(
            f"{url}/api/v1/reco/ingest", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        phase.statuses[answer.status_code] += 1
        if answer.status_code == 503:
            phase.latency_503.append(time.monotonic() - started)
            phase.no_retry_after += "retry-after" not in answer.headers
    print(f"  /readyz: {ready.status_code} {ready.json()['message']}", flush=True)
    return phase


def verify(sent: dict[uuid.UUID, np.ndarray], phases: list[Phase]) -> dict[str, tuple[int, int]]:
    """Read every 202'd vector at QUORUM; per phase, (verified, lost)."""
    cluster = Cluster([FIRST], port=9042, protocol_version=5)
    session = cluster.connect()
    query = session.prepare(f"SELECT content_features FROM {KEYSPACE}.videos WHERE videoid = ?")
    query.consistency_level = ConsistencyLevel.QUORUM
    out: dict[str, tuple[int, int]] = {}
    try:
        for phase in phases:
            verified = lost = 0
            for video in phase.accepted:
                row = session.execute(query, (video,), timeout=30).one()
                got = None if row is None or row[0] is None else np.asarray(row[0], np.float32)
                if got is not None and got.tobytes() == sent[video].tobytes():
                    verified += 1
                else:
                    lost += 1
                    print(f"  LOST {video} ({phase.name})", flush=True)
            out[phase.name] = (verified, lost)
    finally:
        cluster.shutdown()
    return out


def report(phases: list[Phase], checked: dict[str, tuple[int, int]]) -> list[str]:
    head = f"{'phase':<22}{'requests':>9}{'202':>7}{'503':>7}{'other':>7}{'timeouts':>9}"
    head += f"{'verified':>9}{'lost':>6}{'503 p50 ms':>11}{'503 p99 ms':>11}"
    head += f"{'related ok':>11}{'readyz ok':>10}"
    print("\n" + head)
    problems = []
    for p in phases:
        other = sum(n for s, n in p.statuses.items() if s not in (202, 503)) + sum(
            p.errors.values()
        )
        verified, lost = checked.get(p.name, (0, 0))
        lat = np.array(p.latency_503) * 1000 if p.latency_503 else np.array([np.nan])
        print(
            f"{p.name:<22}{p.requests:>9}{p.statuses[202]:>7}{p.statuses[503]:>7}{other:>7}"
            f"{p.timeouts:>9}{verified:>9}{lost:>6}"
            f"{np.percentile(lat, 50):>11.1f}{np.percentile(lat, 99):>11.1f}"
            f"{_share(p.related):>11}{_share(p.readyz):>10}"
        )
        if sum(n for s, n in p.related.items() if s not in (200, 503)):
            problems.append(f"{p.name}: related answered {dict(p.related)}")
        if other or p.timeouts:
            problems.append(f"{p.name}: {other} answers other than 202/503, {p.timeouts} timeouts")
        if p.no_retry_after:
            problems.append(f"{p.name}: {p.no_retry_after} 503s without Retry-After")
        if lost:
            problems.append(f"{p.name}: {lost} accepted vectors lost")
    return problems


def _share(counts: Counter[int]) -> str:
    total = sum(counts.values())
    return f"{counts[200]}/{total}" if total else "-"


async def scenario(load: Load, cluster: DevCluster, phase_s: float) -> None:
    tasks = [asyncio.create_task(load.client()) for _ in range(load.clients)]
    tasks.append(asyncio.create_task(load.observer()))
    try:
        load.begin("all up")
        await load.run_for(phase_s)
        load.begin("node3 killed")
        kill9(cluster, 3)
        await load.run_for(phase_s)
        load.begin("node3 restarting")
        await asyncio.to_thread(cluster.start, timeout_s=300)
        await load.run_for(phase_s / 2)
        load.begin("node2+3 killed")
        kill9(cluster, 2, 3)
        await load.run_for(phase_s)
        load.begin("node2+3 restarting")
        await asyncio.to_thread(cluster.start, timeout_s=300)
        took = await load.until_accepting(120)
        print(f"  accepting again {took:.1f} s after both answered CQL", flush=True)
        await load.run_for(phase_s / 2)
    finally:
        load.running = False
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_state = Settings().state_dir / "faults"
    parser.add_argument("--state-dir", type=Path, default=default_state)
    parser.add_argument("--phase-seconds", type=float, default=25)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    cluster = DevCluster(DevClusterConfig(nodes=3, first_address=FIRST, state_dir=args.state_dir))
    # A fresh cluster every run: stop what a previous run left, then wipe its data.
    cluster.stop(timeout_s=60)
    shutil.rmtree(args.state_dir / "cluster", ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="kv-faults-"))
    env = {
        **os.environ,
        "KV_CONTACT_POINTS": ",".join(cluster.contact_points),
        "KV_KEYSPACE": KEYSPACE,
        "KV_STATE_DIR": str(work),
        "KV_FAST_PATH": "false",  # the driver: retries on another replica, reconnects
        "KV_CONNECT_TIMEOUT_S": "2",
    }
    env.pop("KV_JWT_SECRET", None)
    settings = Settings(state_dir=work, jwt_secret=None)
    token = mint_token(settings, roles=[CREATOR], ttl_s=3600)
    port = 18080 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("w")
    serve = subprocess.Popen(
        [KV, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        first = before_the_cluster(url, token)
        print("starting 3 nodes at RF=3 …", flush=True)
        started = time.monotonic()
        cluster.start(timeout_s=600)
        print(f"  nodes answer CQL after {time.monotonic() - started:.0f} s", flush=True)
        subprocess.run(
            [KV, "schema", "apply", "--dimension", str(DIM), "--replication-factor", "3"],
            env=env, check=True, timeout=300,
        )  # fmt: skip
        videos = [Video(name=f"faults {i}") for i in range(20_000)]
        store = CassandraStore.open(Settings(contact_points=env["KV_CONTACT_POINTS"],
                                             keyspace=KEYSPACE, consistency="QUORUM"))  # fmt: skip
        try:
            store.videos.insert(videos)
        finally:
            store.close()
        wait_ready(url, 120)  # the same process: it connected by itself
        print("  the service (never restarted) is ready", flush=True)
        load = Load(url, token, [v.videoid for v in videos], args.clients)
        asyncio.run(scenario(load, cluster, args.phase_seconds))
        checked = verify(load.sent, load.phases)
        phases = [first, *load.phases]
        problems = report(phases, checked)
        two_down = next(p for p in load.phases if p.name == "node2+3 killed")
        slow = np.percentile(two_down.latency_503, 99) if two_down.latency_503 else 0.0
        if not two_down.statuses[503]:
            problems.append("with two of three down, no 503 at all")
        elif slow > float(Settings().request_timeout_s):
            problems.append(f"with two of three down, 503 p99 {slow * 1000:.0f} ms: not quick")
        if not load.phases[-1].statuses[202]:
            problems.append("no 202 after the restart")
        total = sum(p.requests for p in phases)
        print(f"\nrequests {total}, 202s {sum(p.statuses[202] for p in phases)}, "
              f"verified {sum(v for v, _ in checked.values())}, "
              f"lost {sum(lost for _, lost in checked.values())}")  # fmt: skip
        for problem in problems:
            print(f"FAIL: {problem}")
        print("test-faults: " + ("FAILED" if problems else "passed"))
        return 1 if problems else 0
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()
        unexpected = [
            line
            for line in (work / "serve.log").read_text().splitlines()
            if "Traceback" in line or " 500 " in line or "unexpected error" in line
        ]
        if unexpected:
            print("serve logged:", *unexpected[:20], sep="\n  ")
        print("stopping the 3 fault-test nodes …", flush=True)
        for status in cluster.stop(timeout_s=120):
            print(f"  {status.name} {status.state}")


if __name__ == "__main__":
    raise SystemExit(main())

"""Schemathesis against a real `kv-reco serve`, from the service's own OpenAPI document.

`make fuzz` runs at least 10,000 generated requests; `make test` runs a short
round of the same (tests/api/test_fuzz.py). Every request carries a valid
creator token, so the bodies reach the decoder rather than stopping at auth
(schemathesis also sends requests without it, and with broken values). The
only check is the one that matters here: no 5xx, ever.

    python -m tests.fuzzing --requests 10000
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

BIN = Path(sys.executable).parent
KV = str(BIN / "kv-reco")


@dataclass
class FuzzResult:
    requests: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    rounds: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests in {self.rounds} round(s), "
            f"{self.server_errors} 5xx ({by_status})"
        )


@contextlib.contextmanager
def fuzz_target(workdir: Path, keyspace: str | None = None) -> Iterator[tuple[str, str, Path]]:
    """A served fresh keyspace (1536 dims, cosine) with a few videos.

    Yields the URL, a creator token and the service's log file.
    """
    from .conftest import free_port

    own_keyspace = keyspace is None
    keyspace = keyspace or f"kv_fuzz_{secrets.token_hex(4)}"
    env = {**os.environ, "KV_KEYSPACE": keyspace, "KV_STATE_DIR": str(workdir / "state")}
    env.pop("KV_JWT_SECRET", None)
    if own_keyspace:
        subprocess.run(
            [KV, "schema", "apply"], env=env, check=True, capture_output=True, timeout=120
        )
    for i in range(3):
        subprocess.run(
            [KV, "videos", "add", "--name", f"fuzz {i}"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
    token = subprocess.run(
        [KV, "token", "--role", "creator", "--ttl", "86400"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    port = free_port()
    log = workdir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [KV, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, token, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        if own_keyspace:
            with contextlib.suppress(subprocess.CalledProcessError):
                drop = f"DROP KEYSPACE IF EXISTS {keyspace}"
                subprocess.run(
                    [sys.executable, "-c", _DROP, drop],
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=120,
                )


_DROP = """
import sys
from killrvideo_reco.config import load_settings
from killrvideo_reco.storage import CassandraStore
store = CassandraStore.open(load_settings())
try:
    store.schema.execute(sys.argv[1])
finally:
    store.close()
"""


def fuzz(
    url: str, token: str, *, requests: int, examples: int, workdir: Path, seed: int = 0
) -> FuzzResult:
    """Rounds of schemathesis (each with its own seed) until ``requests`` were sent."""
    result = FuzzResult()
    while result.requests < requests:
        har = workdir / f"round-{result.rounds}.har"
        cmd = [
            str(BIN / "schemathesis"), "run", f"{url}/openapi.json",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {token}",
            "--max-examples", str(examples),
            "--seed", str(seed + result.rounds),
            "--generation-database", "none",
            "--request-timeout", "30",
            "--report", "har", "--report-har-path", str(har),
            "--no-color",
        ]  # fmt: skip
        # A round sends --max-examples per operation, each bounded by
        # --request-timeout; the whole round gets a deadline of its own too.
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        result.rounds += 1
        entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
        if not entries:
            raise RuntimeError(f"schemathesis sent nothing:\n{done.stdout}\n{done.stderr}")
        for entry in entries:
            result.requests += 1
            result.statuses[int(entry["response"]["status"])] += 1
        if done.returncode != 0:
            result.failures.append(done.stdout[-6000:] + done.stderr[-2000:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="at least this many")
    parser.add_argument("--examples", type=int, default=1000, help="per operation per round")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"kv-fuzz-{secrets.token_hex(4)}"
    workdir.mkdir(parents=True)
    started = time.monotonic()
    with fuzz_target(workdir) as (url, token, log):
        result = fuzz(
            url,
            token,
            requests=args.requests,
            examples=args.examples,
            workdir=workdir,
            seed=args.seed,
        )
        errors = logged_errors(log)
    print(f"fuzz: {result.summary()} in {time.monotonic() - started:.0f} s (seed {args.seed})")
    print(f"fuzz: {len(errors)} ERROR lines in the service's log")
    print(f"fuzz: schemathesis reports and the service's log are in {workdir}")
    for failure in result.failures:
        print(failure)
    if result.server_errors or result.failures or errors:
        raise SystemExit(1)


def logged_errors(log: Path) -> list[str]:
    """Lines a 500 or an unexpected exception leaves in the service's log."""
    return [
        line
        for line in log.read_text().splitlines()
        if " ERROR " in line or line.startswith("Traceback")
    ]


if __name__ == "__main__":
    main()

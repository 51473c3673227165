"""`make soak`: ten minutes of ingest at about half of peak, watching for growth.

One node, one `kv-reco serve`. It measures the service's peak ingest rate
(wrk, 16 connections, no pause), then paces wrk to about half of it (wrk's
delay() between requests, re-paced after every window) and runs minute-long windows,
printing for each the rate, the client p99, the service's RSS and its open
file descriptors. The verdict compares the first window with the last.

Bodies come from a pool of BENCH_POOL fresh unit vectors (6,000 by default,
about 100 MB of wrk memory); a ten-minute run repeats them, which costs the
node less than new vectors would, and is immaterial to what a soak looks for.

Environment: SOAK_MINUTES (default 10), SOAK_CONNECTIONS (default 16),
SOAK_FRACTION (default 0.5 of peak), SOAK_WINDOW_S (default 60). KV_* settings
pass to the service.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _common import drop_keyspace, free_port
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from run import BIN, RESULTS, Server, fresh_store, seed_videos, wrk

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
CONNECTIONS = int(os.environ.get("SOAK_CONNECTIONS", "16"))
FRACTION = float(os.environ.get("SOAK_FRACTION", "0.5"))
POOL = int(os.environ.get("BENCH_POOL", "6000"))
WINDOW_S = float(os.environ.get("SOAK_WINDOW_S", "60"))


@dataclass
class Window:
    label: str
    rate: float  # accepted (202) per second
    offered: float  # answered requests per second, whatever their status
    p99_ms: float
    rss_mb: float
    fds: int
    statuses: dict[str, int]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int) -> int:
    """Open fds once wrk's closed connections are gone: 3 equal looks, 5 s at most."""
    deadline = time.monotonic() + 5
    seen = [open_fds(pid)]
    while time.monotonic() < deadline and not (len(seen) >= 3 and len(set(seen[-3:])) == 1):
        time.sleep(0.2)
        seen.append(open_fds(pid))
    return seen[-1]


def run_window(
    label: str,
    server: Server,
    *,
    connections: int,
    seconds: float,
    delay_ms: float | None,
    **kw: object,
) -> Window:
    if delay_ms is None:
        os.environ.pop("BENCH_DELAY_MS", None)
    else:
        os.environ["BENCH_DELAY_MS"] = str(round(delay_ms))
    result = wrk(server.port, connections, duration=seconds, **kw)  # type: ignore[arg-type]
    accepted = int(result["statuses"].get("202", 0))
    window = Window(
        label=label,
        rate=accepted / result["duration_s"],
        offered=int(result["requests"]) / result["duration_s"],
        p99_ms=float(result["p99_ms"]),
        rss_mb=rss_mb(server.proc.pid),
        fds=settled_fds(server.proc.pid),
        statuses=result["statuses"],
    )
    other = {k: v for k, v in window.statuses.items() if k != "202"}
    print(
        f"{label:>10}  {window.rate:7.1f}/s accepted of {window.offered:7.1f}/s  "
        f"p99 {window.p99_ms:7.1f} ms  "
        f"RSS {window.rss_mb:6.1f} MB  fds {window.fds:4d}  other {other or '-'}",
        flush=True,
    )
    return window


def repace(delay_ms: float, rate: float, target: float) -> float:
    """The pause that takes a closed loop from ``rate`` to ``target``: rate = c / (pause + latency)."""
    latency_ms = max(0.0, CONNECTIONS / max(rate, 1e-9) * 1000 - delay_ms)
    return max(0.0, CONNECTIONS / target * 1000 - latency_ms)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make soak` installs it (apt-get install wrk)")
    base = Settings(jwt_secret=secrets.token_urlsafe(40))
    keyspace = "kv_soak"
    tmp = RESULTS / ".soak"
    tmp.mkdir(parents=True, exist_ok=True)
    store = fresh_store(base, keyspace, Similarity.COSINE)
    server = None
    try:
        ids_file = tmp / "ids"
        seed_videos(store, ids_file)
        token = mint_token(base, roles=[CREATOR], ttl_s=int(MINUTES * 60) + 3600)
        env = {"KV_KEYSPACE": keyspace, "KV_JWT_SECRET": base.jwt_secret.get_secret_value()}  # type: ignore[union-attr]
        port = free_port()
        server = Server([str(BIN / "kv-reco"), "serve", "--port", str(port)], env, port)
        kw = {"ids_file": ids_file, "token": token, "pool": POOL}
        idle = Window("idle", 0, 0, 0, rss_mb(server.proc.pid), open_fds(server.proc.pid), {})
        print(f"service pid {server.proc.pid}: idle RSS {idle.rss_mb:.1f} MB, {idle.fds} fds")
        peak = run_window("peak", server, connections=16, seconds=10, delay_ms=None, **kw)
        target = FRACTION * peak.rate
        # Closed loop: each connection's rate is 1 / (pause + latency).
        delay = max(0.0, CONNECTIONS / target * 1000 - 5.0)
        probe = run_window(
            "calibrate", server, connections=CONNECTIONS, seconds=15, delay_ms=delay, **kw
        )
        delay = repace(delay, probe.offered, target)
        print(
            f"target {target:.0f}/s ({FRACTION:g} of peak {peak.rate:.0f}/s): {CONNECTIONS} "
            f"connections, {delay:.0f} ms pause per request, re-paced after each window"
        )
        windows = []
        started = time.monotonic()
        count = max(1, round(MINUTES * 60 / WINDOW_S))
        for i in range(count):
            window = run_window(
                f"min {i + 1}",
                server,
                connections=CONNECTIONS,
                seconds=WINDOW_S,
                delay_ms=delay,
                **kw,
            )
            windows.append(window)
            # Pace on what was offered: a 503 comes back fast, and pacing on
            # accepted requests would answer shedding with more load.
            delay = repace(delay, window.offered, target)
        first, last = windows[0], windows[-1]
        shed = sum(int(w.statuses.get("503", 0)) for w in windows)
        errors = sum(
            int(n)
            for w in windows
            for code, n in w.statuses.items()
            if code.startswith("5") and code != "503"
        )
        mean = sum(w.rate for w in windows) / len(windows)
        print(
            f"\nsoak: {time.monotonic() - started:.0f} s at {mean:.0f}/s (target {target:.0f}/s, "
            f"peak {peak.rate:.0f}/s); {shed} 503 (load shed, Retry-After), {errors} other 5xx"
        )
        print(
            f"soak: start  RSS {first.rss_mb:6.1f} MB  fds {first.fds:4d}  p99 {first.p99_ms:7.1f} ms"
        )
        print(
            f"soak: end    RSS {last.rss_mb:6.1f} MB  fds {last.fds:4d}  p99 {last.p99_ms:7.1f} ms"
        )
        print(
            f"soak: growth RSS {last.rss_mb - first.rss_mb:+.1f} MB, fds {last.fds - first.fds:+d}"
        )
    finally:
        os.environ.pop("BENCH_DELAY_MS", None)
        if server is not None:
            server.stop()
        drop_keyspace(store, keyspace)
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

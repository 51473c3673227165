"""`kv-reco serve --workers 2`: two processes, each its own session and limit, one service.

What an operator relies on: both workers serve; /metrics gives the service's
totals whichever worker answers the scrape (prometheus_client's multiprocess
mode); /readyz answers for the worker that answers; SIGTERM drains both and
each closes its own session.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video

from .conftest import DIM, service_env
from .serve_child import serve_child

INGEST = "/api/v1/reco/ingest"


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def accepted(url: str) -> float:
    return samples(url).get(
        ("kv_reco_ingests_total", frozenset({("outcome", "accepted"), ("reason", "")})), 0.0
    )


def test_two_workers_serve_count_together_and_stop_together(
    settings: Settings,
    new_video: Callable[..., Video],
    rng: np.random.Generator,
    tmp_path: Path,
) -> None:
    env = service_env(settings.keyspace, tmp_path, KV_LIMIT_MODE="fixed", KV_MAX_IN_FLIGHT="3")
    token = mint_token(Settings(state_dir=tmp_path), roles=[CREATOR], ttl_s=600)
    videos = [new_video() for _ in range(30)]
    vectors = rng.standard_normal((len(videos), DIM)).astype(np.float32)
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    with serve_child(env, "--workers", "2") as (child, url):
        # Both workers have started (each logs its own start-up) and are ready.
        child.wait_for(
            lambda: child.output.count("Application startup complete") == 2,
            what="both workers' start-up",
            timeout_s=60,
        )
        prefixes = set()
        for video, vector in zip(videos, vectors, strict=True):
            # A new connection each time: the kernel spreads them over the workers.
            r = httpx.post(
                f"{url}{INGEST}",
                json={"videoId": str(video.videoid), "vector": vector.tolist()},
                headers=headers,
            )
            assert r.status_code == 202, r.text
            prefixes.add(r.headers["X-Request-ID"][:16])  # our ids: one prefix per process
        assert len(prefixes) == 2, "both workers must have served"
        # Whichever worker answers, the counts are the service's: every scrape agrees.
        totals = {accepted(url) for _ in range(8)}
        assert totals == {len(videos)}, totals
        child.wait_for(
            lambda: samples(url).get(("kv_reco_write_limit", frozenset())) == 6,
            what="both workers' limits (3 each) in the sum",
            timeout_s=10,
        )
        # The schema gauge, published by each worker, names the live index's graph options.
        schema = [
            dict(labels)
            for (name, labels), value in samples(url).items()
            if name == "kv_reco_schema_info" and value == 1
        ]
        assert [s["column"] for s in schema] == ["content_features"], schema
        assert (schema[0]["beam_width"], schema[0]["max_connections"]) == (
            str(settings.index_beam_width),
            str(settings.index_max_connections),
        ), schema
        assert httpx.get(f"{url}/readyz").status_code == 200
        child.send_signal(signal.SIGTERM)
        code = child.wait(60)
    assert code == 0, child.tail()
    assert child.output.count("closed the Cassandra session") == 2, child.tail()
    assert "Traceback" not in child.output, child.tail()
    # Every vector went in, whichever worker wrote it.

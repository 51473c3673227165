"""The project's client against the real service's overload answer: 503 + Retry-After."""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.client import Item, RecoClient
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from .conftest import DIM, service_env, serving


def test_the_client_waits_out_retry_after_and_every_item_lands(
    settings: Settings,
    store: CassandraStore,
    tmp_path: Path,
    rng: np.random.Generator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One write in flight and no queue: concurrent batches overflow it at once.
    env = service_env(
        settings.keyspace,
        tmp_path,
        KV_LIMIT_MODE="fixed",
        KV_MAX_IN_FLIGHT="1",
        KV_QUEUE_TIMEOUT_MS="0",
        KV_RETRY_AFTER_S="1",
    )
    token = mint_token(Settings(state_dir=tmp_path), roles=[CREATOR])
    caplog.set_level(logging.INFO, logger="killrvideo_reco.client")
    sent: dict[uuid.UUID, np.ndarray] = {}
    with serving(env) as url, RecoClient(url, token, backoff_s=0.01) as client:
        deadline = time.monotonic() + 120
        retried = 0
        while not retried:  # until the service has answered 503 at least once
            assert time.monotonic() < deadline, "the service never answered 503"
            videos = [Video(name=f"crowd {i}") for i in range(40)]
            store.videos.insert(videos)
            vectors = rng.standard_normal((len(videos), DIM)).astype(np.float32)
            sent |= {v.videoid: x for v, x in zip(videos, vectors, strict=True)}
            summary = client.ingest_many(
                [Item(str(v.videoid), x) for v, x in zip(videos, vectors, strict=True)],
                batch_size=5,
                concurrency=8,
            )
            assert (summary.accepted, summary.total_failed) == (len(videos), 0), summary.failed
            retried = summary.retried
    waits = [
        (float(m[1]), float(m[2]))
        for r in caplog.records
        if (
            m := re.search(
                r"items got 503; sending again in ([\d.]+) s \(Retry-After: (\d+) s", r.message
            )
        )
    ]
    assert waits, caplog.text
    # Every retry waited at least what the server asked, not the 10 ms backoff.
    assert all(retry_after == 1 and wait >= 1 for wait, retry_after in waits), waits
    for video_id, vector in sent.items():
        row = store.videos.read(video_id)
        assert row is not None and row["content_features"] == vector.tolist()

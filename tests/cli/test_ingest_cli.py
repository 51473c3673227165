"""`kv-reco ingest FILE` against a real `kv-reco serve` and node."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, KV
from ..gate import GatedProxy
from ..proc import Child

Served = tuple[str, dict[str, str]]


def ingest(served: Served, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    url, env = served
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [KV, "ingest", *args, "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def catalogue(store: CassandraStore, count: int) -> list[Video]:
    videos = [Video(name=f"bulk {i}") for i in range(count)]
    store.videos.insert(videos)
    return videos


def write_jsonl(path: Path, pairs: list[tuple[str, list[float]]]) -> Path:
    path.write_text("".join(json.dumps({"videoId": v, "vector": x}) + "\n" for v, x in pairs))
    return path


def stored(store: CassandraStore, video: Video) -> list[float] | None:
    row = store.videos.read(video.videoid)
    assert row is not None
    return row["content_features"]


def test_jsonl_ingest_reports_failures_and_exits_non_zero(
    served: Served, store: CassandraStore, tmp_path: Path, rng: np.random.Generator
) -> None:
    videos = catalogue(store, 30)
    vectors = rng.standard_normal((30, DIM)).astype(np.float32)
    pairs = [(str(v.videoid), x.tolist()) for v, x in zip(videos, vectors, strict=True)]
    pairs[7] = (pairs[7][0], [0.5] * 10)  # wrong dimension
    missing = "550e8400-e29b-41d4-a716-446655440000"
    pairs.append((missing, vectors[0].tolist()))
    file = write_jsonl(tmp_path / "vectors.jsonl", pairs)
    done = ingest(served, str(file), "--batch-size", "8", "--concurrency", "2")
    assert done.returncode == 1, done.stderr
    assert "accepted 29, failed 2" in done.stderr and "1 x 404" in done.stderr, done.stderr
    failed_file = tmp_path / "vectors.jsonl.failed.jsonl"
    failed = [json.loads(line) for line in failed_file.read_text().splitlines()]
    assert sorted((f["videoId"], f["code"]) for f in failed) == sorted(
        [(pairs[7][0], 422), (missing, 404)]
    )
    assert stored(store, videos[0]) == vectors[0].tolist()
    assert stored(store, videos[29]) == vectors[29].tolist()
    assert stored(store, videos[7]) is None


def test_an_interrupted_run_resumes_from_its_checkpoint(
    served: Served, store: CassandraStore, tmp_path: Path, rng: np.random.Generator
) -> None:
    count = 400
    videos = catalogue(store, count)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    file = write_jsonl(
        tmp_path / "big.jsonl",
        [(str(v.videoid), x.tolist()) for v, x in zip(videos, vectors, strict=True)],
    )
    checkpoint = tmp_path / "big.jsonl.checkpoint"
    url, env = served
    # The proxy lets 10 batches of 4 through and holds the 11th: the run is
    # stopped at exactly 40 records, however fast the service is.
    with GatedProxy(url, open_for=10, path="/api/v1/reco/ingest/batch") as gate:
        args = [
            KV,
            "ingest",
            str(file),
            "--url",
            gate.url,
            "--batch-size",
            "4",
            "--concurrency",
            "1",
        ]
        # Ctrl-C as a terminal delivers it: a suite started in the background
        # (`make test &`, some CI runners) ignores SIGINT, and a child inherits
        # that, so Python would never raise KeyboardInterrupt in it.
        first = Child(
            args,
            env=env,
            merge_stderr=False,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

        def saved() -> int:
            return int(json.loads(checkpoint.read_text())["done"]) if checkpoint.exists() else 0

        with first:
            gate.wait_for(lambda: gate.held and saved() == 40, what="the 11th batch")
            first.send_signal(signal.SIGINT)
            first.wait(60)
        stderr = first.stderr
    assert first.returncode == 130, first.output[-3000:]
    assert "run the same command to resume" in stderr
    done_before = json.loads(checkpoint.read_text())["done"]
    assert done_before == 40
    assert stored(store, videos[0]) == vectors[0].tolist()
    assert stored(store, videos[-1]) is None  # the tail was never sent

    second = ingest(served, str(file), "--batch-size", "50")
    assert second.returncode == 0, second.stderr
    assert f"resuming after {done_before} of {count} records" in second.stderr
    assert f"accepted {count}, failed 0" in second.stderr
    assert f"this run: {count - done_before} accepted" in second.stderr
    assert not checkpoint.exists()  # finished: a new run starts over
    assert all(stored(store, v) == x.tolist() for v, x in zip(videos, vectors, strict=True))


def test_parquet_and_npy_inputs(
    served: Served, store: CassandraStore, tmp_path: Path, rng: np.random.Generator
) -> None:
    videos = catalogue(store, 10)
    vectors = rng.standard_normal((10, DIM)).astype(np.float32)
    ids = [str(v.videoid) for v in videos]
    parquet = tmp_path / "v.parquet"
    pq.write_table(
        pa.table({"videoId": ids[:5], "vector": [x.tolist() for x in vectors[:5]]}), parquet
    )
    npy, id_file = tmp_path / "v.npy", tmp_path / "ids.txt"
    np.save(npy, vectors[5:])
    id_file.write_text("\n".join(ids[5:]) + "\n")
    assert ingest(served, str(parquet)).returncode == 0
    done = ingest(served, str(npy), "--ids", str(id_file))
    assert done.returncode == 0, done.stderr
    assert all(stored(store, v) == x.tolist() for v, x in zip(videos, vectors, strict=True))


def test_dry_run_checks_against_the_servers_schema_and_sends_nothing(
    served: Served, store: CassandraStore, tmp_path: Path
) -> None:
    good, short = catalogue(store, 2)
    file = write_jsonl(
        tmp_path / "check.jsonl",
        [(str(good.videoid), [0.5] * DIM), (str(short.videoid), [0.5] * 384), ("nope", [1.0])],
    )
    done = ingest(served, str(file), "--dry-run")
    assert done.returncode == 1
    assert f"{short.videoid}: 422 vector has 384 values, expected {DIM}" in done.stderr
    assert "nope: 422 videoId must be a UUID" in done.stderr
    assert (
        f"1 of 3 records valid for vector<float, {DIM}> (cosine); nothing was sent" in done.stderr
    )
    assert stored(store, good) is None

"""The model migration of docs/pipelines/migration.md, rehearsed: 1536 dims (old model) to 384 (all-MiniLM-L6-v2).

Related-videos queries are answered at every step.
"""

from __future__ import annotations

import csv
import subprocess
import uuid
from pathlib import Path

import httpx2 as httpx
import numpy as np

from killrvideo_reco.client import Item, RecoClient
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from killrvideo_reco.domain.videos import parse_catalogue_row
from killrvideo_reco.storage import CassandraStore

from ..catalogue import write_catalogue
from ..conftest import KV, scratch_keyspace, service_env, serving

NEW = "content_features_384"


def kv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KV, *args], env=env, capture_output=True, text=True, timeout=600)


def related(url: str, video_id: uuid.UUID) -> list[dict[str, object]]:
    response = httpx.get(f"{url}/api/v1/videos/id/{video_id}/related?limit=3")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_moving_the_catalogue_to_a_new_model_and_dimension(
    node: str, tmp_path: Path, rng: np.random.Generator
) -> None:
    settings = Settings(keyspace=scratch_keyspace("mig"))
    store = CassandraStore.open(settings)
    try:
        store.schema.apply(dimension=1536, similarity=Similarity.COSINE, replication_factor=1)
        catalogue = write_catalogue(tmp_path / "video_out.csv", count=31, without_vector=0)
        with catalogue.open(newline="") as fh:
            records = list(csv.reader(fh))
        videos = [parse_catalogue_row(f).video for f in records[:24]]
        store.videos.insert(videos)
        query = videos[0].videoid
        env = service_env(settings.keyspace, tmp_path / "state")
        new_env = {**env, "KV_VECTOR_COLUMN": NEW}
        with serving(env) as old_url:
            token = kv(env, "token", "--role", "creator").stdout.strip()
            with RecoClient(old_url, token) as client:  # the old model's vectors
                old = rng.standard_normal((len(videos), 1536)).astype(np.float32)
                summary = client.ingest_many(
                    Item(str(v.videoid), x) for v, x in zip(videos, old, strict=True)
                )
            assert summary.accepted == len(videos)
            before = related(old_url, query)

            # 1. A new column for the new model, indexed from the start.
            added = kv(env, "schema", "apply", "--column", NEW, "--dimension", "384")
            assert added.returncode == 0, added.stderr
            # 2-3. A second service writes the new column; embed fills it through it.
            with serving(new_env) as new_url:
                filled = kv(new_env, "embed", "--url", new_url)
                assert filled.returncode == 0, filled.stderr
                assert f"accepted {len(videos)}" in filled.stderr
                # Meanwhile the old column still serves related videos, unchanged.
                assert related(old_url, query) == before
                # A video uploaded during the migration gets its new-model vector
                # from --missing-only, the last step before the cut-over.
                late = parse_catalogue_row(records[30]).video
                store.videos.insert([late])
                caught_up = kv(new_env, "embed", "--missing-only", "--url", new_url)
                assert "embedded and sent 1 videos: accepted 1" in caught_up.stderr
        # 4. Cut-over: the service restarts on the new column.
        with serving(new_env) as url:
            after = related(url, query)
            assert len(after) == 3 and after != before
            wrong = {"videoId": str(query), "vector": [0.1] * 1536}
            headers = {"Authorization": f"Bearer {token}"}
            refused = httpx.post(f"{url}/api/v1/reco/ingest", json=wrong, headers=headers)
            assert refused.status_code == 422 and "expected 384" in refused.json()["message"]
        # 5. The old column goes, with its index; never the one being served.
        refused_drop = kv(new_env, "schema", "drop-column", "--column", NEW)
        assert refused_drop.returncode == 1 and "cut the services over" in refused_drop.stderr
        dropped = kv(new_env, "schema", "drop-column", "--column", "content_features")
        assert dropped.returncode == 0, dropped.stderr
        row = store.videos.read(query)
        assert row is not None and "content_features" not in row and len(row[NEW]) == 384
        # Cassandra never takes the old name back with another dimension.
        again = kv(env, "schema", "apply", "--dimension", "384")
        assert again.returncode == 1 and "incompatible with previously dropped" in again.stderr
    finally:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
        store.close()


def test_changing_the_graph_options_through_a_new_column(
    node: str, tmp_path: Path, rng: np.random.Generator
) -> None:
    """Same vectors, new index options: copy-vectors fills a new column while the old answers."""
    from killrvideo_reco.domain.vectors import GraphOptions

    from ..proc import Child

    settings = Settings(keyspace=scratch_keyspace("graphmig"))
    regraphed = "content_features_g24"
    store = CassandraStore.open(settings)
    try:
        store.schema.apply(dimension=64, similarity=Similarity.COSINE, replication_factor=1)
        videos = [parse_catalogue_row(f).video for f in _rows(tmp_path)[:40]]
        store.videos.insert(videos)
        query = videos[0].videoid
        env = service_env(settings.keyspace, tmp_path / "state")
        new_env = {**env, "KV_VECTOR_COLUMN": regraphed}
        with serving(env) as old_url:
            token = kv(env, "token", "--role", "creator").stdout.strip()
            with RecoClient(old_url, token) as client:
                vectors = rng.standard_normal((len(videos), 64)).astype(np.float32)
                summary = client.ingest_many(
                    Item(str(v.videoid), x) for v, x in zip(videos, vectors, strict=True)
                )
            assert summary.accepted == len(videos)
            before = related(old_url, query)
            # 1. The new column, its index built with the new options.
            options = {"KV_INDEX_BEAM_WIDTH": "24", "KV_INDEX_MAX_CONNECTIONS": "8"}
            added = kv(
                {**env, **options}, "schema", "apply", "--column", regraphed, "--dimension", "64"
            )
            assert added.returncode == 0, added.stderr
            assert "beam width 24, max connections 8" in added.stdout
            # 2. The copy; related videos answer from the old column meanwhile.
            answers = []
            copy = [KV, "schema", "copy-vectors", "--from", "content_features"]
            with Child(copy, env=new_env) as child:
                child.wait_for(
                    lambda: answers.append(related(old_url, query)) or child.returncode is not None,
                    what="copy-vectors to finish",
                    timeout_s=300,
                )
                assert child.wait(timeout_s=10) == 0, child.output
            assert answers and all(a == before for a in answers)
            assert f"copied {len(videos)} vectors" in child.output
            # A vector sent to the old column meanwhile is caught up before the cut-over.
            late = parse_catalogue_row(_rows(tmp_path)[40]).video
            store.videos.insert([late])
            with RecoClient(old_url, token) as client:
                client.ingest_many([Item(str(late.videoid), rng.standard_normal(64))])
            caught = kv(
                new_env, "schema", "copy-vectors", "--from", "content_features", "--missing-only"
            )
            assert caught.returncode == 0 and "copied 1 vectors" in caught.stdout, caught.stderr
            last = related(old_url, query)
        # 3. Cut-over: the same vectors, so the same neighbours, from the new index.
        with serving(new_env) as url:
            assert related(url, query) == last
        with CassandraStore.open(settings.model_copy(update={"vector_column": regraphed})) as new:
            assert new.load_schema().graph == GraphOptions(beam_width=24, max_connections=8)
        # 4. The old column goes, with its index.
        dropped = kv(new_env, "schema", "drop-column", "--column", "content_features")
        assert dropped.returncode == 0, dropped.stderr
    finally:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
        store.close()


def _rows(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "video_out.csv"
    if not path.exists():
        write_catalogue(path, count=41, without_vector=0)
    with path.open(newline="") as fh:
        return list(csv.reader(fh))

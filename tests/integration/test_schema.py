"""Schema apply and the SAI vector index on the real node."""

import subprocess

import numpy as np
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity, VectorSpec, pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.errors import SchemaMismatch, SchemaNotReady
from killrvideo_reco.storage import CassandraStore

from ..conftest import KV, scratch_keyspace


@pytest.fixture
def scratch(settings: Settings):  # type: ignore[no-untyped-def]
    scratch_settings = settings.model_copy(update={"keyspace": scratch_keyspace("scratch")})
    store = CassandraStore.open(scratch_settings)
    yield store
    store.schema.execute(f"DROP KEYSPACE IF EXISTS {scratch_settings.keyspace}")
    store.close()


def test_apply_is_idempotent_and_reports_the_live_shape(scratch: CassandraStore) -> None:
    first = scratch.schema.apply(
        dimension=8, similarity=Similarity.DOT_PRODUCT, replication_factor=1
    )
    second = scratch.schema.apply(
        dimension=8, similarity=Similarity.DOT_PRODUCT, replication_factor=1
    )
    assert first == second == VectorSpec(8, Similarity.DOT_PRODUCT)
    assert scratch.load_schema() == VectorSpec(8, Similarity.DOT_PRODUCT)


def test_another_dimension_is_a_clear_error(scratch: CassandraStore) -> None:
    scratch.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    with pytest.raises(
        SchemaMismatch, match=r"already exists as vector<float, 8>, not vector<float, 16>"
    ):
        scratch.schema.apply(dimension=16, similarity=Similarity.COSINE, replication_factor=1)


def test_another_similarity_is_a_clear_error(scratch: CassandraStore) -> None:
    scratch.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    with pytest.raises(SchemaMismatch, match="already uses cosine similarity, not euclidean"):
        scratch.schema.apply(dimension=8, similarity=Similarity.EUCLIDEAN, replication_factor=1)


def test_a_missing_schema_is_not_ready(scratch: CassandraStore) -> None:
    with pytest.raises(SchemaNotReady, match="kv-reco schema apply"):
        scratch.load_schema()


def test_the_index_is_sai_with_the_similarity_asked(scratch: CassandraStore) -> None:
    scratch.schema.apply(dimension=8, similarity=Similarity.EUCLIDEAN, replication_factor=1)
    rows = scratch.schema.execute(
        "SELECT options FROM system_schema.indexes WHERE keyspace_name = %s AND table_name = 'videos'",
        (scratch.keyspace,),
    )
    options = rows[0][0]
    assert options["class_name"].endswith("StorageAttachedIndex")
    assert options["similarity_function"].upper() == "EUCLIDEAN"


async def test_ann_query_returns_the_nearest_vectors(scratch: CassandraStore) -> None:
    spec = scratch.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    scratch.load_schema()
    rng = np.random.default_rng(7)
    videos = [Video(name=f"v{i}") for i in range(40)]
    scratch.videos.insert(videos)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    for video, vector in zip(videos, vectors, strict=True):
        await scratch.writer.set_content_features(video.videoid, pack_vector(vector.tolist(), spec))
    query = vectors[3] + 0.01
    rows = scratch.schema.execute(
        f"SELECT videoid FROM {scratch.keyspace}.videos ORDER BY content_features ANN OF %s LIMIT 3",
        (query.tolist(),),
    )
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = np.argsort(-(unit @ (query / np.linalg.norm(query))))[:3]
    assert [r[0] for r in rows] == [videos[i].videoid for i in exact]


def test_cli_schema_apply_says_what_differs(settings: Settings) -> None:
    env = {
        "KV_KEYSPACE": scratch_keyspace("cli"),
        "KV_STATE_DIR": str(settings.state_dir),
        "PATH": "/usr/bin:/bin",
    }
    try:
        ok = subprocess.run(
            [KV, "schema", "apply", "--dimension", "4"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert ok.returncode == 0, ok.stderr
        assert "content_features vector<float, 4>, cosine similarity" in ok.stdout
        bad = subprocess.run(
            [KV, "schema", "apply", "--dimension", "5"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert bad.returncode == 1
        assert "already exists as vector<float, 4>, not vector<float, 5>" in bad.stderr
    finally:
        store = CassandraStore.open(Settings(keyspace=env["KV_KEYSPACE"]))
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {env['KV_KEYSPACE']}")
        store.close()


def test_a_new_table_compacts_with_ucs(scratch: CassandraStore) -> None:
    # Chosen by the bulk-load figure: each compaction rebuilds the vector graph.
    scratch.schema.apply(dimension=8, similarity=Similarity.COSINE, replication_factor=1)
    row = scratch.schema.execute(
        "SELECT compaction FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (scratch.keyspace, "videos"),
    )[0]
    assert row[0]["class"] == "org.apache.cassandra.db.compaction.UnifiedCompactionStrategy"

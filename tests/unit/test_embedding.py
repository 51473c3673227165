"""The ONNX embedding path against reference vectors made by sentence-transformers.

The reference (tests/fixtures/embedding_reference.json) was computed once with
sentence-transformers 6.2 + torch by tests/fixtures/make_embedding_reference.py;
the suite itself never installs torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from killrvideo_reco import embedding
from killrvideo_reco.embedding import Embedder, graph_path, model_dir

REFERENCE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "embedding_reference.json").read_text()
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def embedder(cache: Path) -> Embedder:
    return Embedder(cache_dir=cache)


def test_vectors_agree_with_sentence_transformers(embedder: Embedder) -> None:
    vectors = embedder.encode(REFERENCE["texts"])
    reference = np.asarray(REFERENCE["vectors"], dtype=np.float32)
    assert vectors.shape == reference.shape == (len(REFERENCE["texts"]), 384)
    assert vectors.dtype == np.float32
    cosines = (vectors * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.9999, f"text {worst} ({REFERENCE['texts'][worst][:60]!r})"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_the_reference_covers_the_truncation_trap(embedder: Embedder) -> None:
    # The shipped tokenizer.json cuts at 128 tokens, sentence-transformers at
    # 256: the fixture must hold texts between the two and past both.
    lengths = [len(e.ids) for e in embedder._tokenizer.encode_batch(REFERENCE["texts"])]
    assert REFERENCE["max_seq_length"] == 256 == max(lengths)
    assert any(128 < n < 256 for n in lengths)
    assert lengths.count(256) >= 2


def test_a_vector_does_not_depend_on_its_batch(embedder: Embedder) -> None:
    texts = REFERENCE["texts"]
    together = embedder.encode(texts, batch_size=64)
    alone = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-6)
    assert embedder.encode([]).shape == (0, 384)


def test_the_graph_is_built_once_into_the_cache(embedder: Embedder, cache: Path) -> None:
    built = graph_path(cache, model_dir())
    assert [p.name for p in (cache / "models").iterdir()] == [built.name]
    stamp = built.stat().st_mtime_ns
    Embedder(cache_dir=cache)
    assert built.stat().st_mtime_ns == stamp


def test_a_changed_builder_gets_a_new_graph_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = graph_path(cache, model_dir())
    monkeypatch.setattr(embedding, "GRAPH_VERSION", embedding.GRAPH_VERSION + 1)
    assert graph_path(cache, model_dir()) != before

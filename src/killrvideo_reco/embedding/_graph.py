"""Build an fp32 ONNX graph of a BERT sentence encoder from its safetensors weights.

The graph is the Hugging Face ``BertModel`` forward pass (absolute positions,
post-LayerNorm, exact erf GELU) followed by sentence-transformers' masked mean
pooling. It is written with the ``onnx`` package alone, so onnxruntime can run
the model with no torch installed. Only the architecture the packaged model
declares is supported; anything else is refused rather than guessed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17  # LayerNormalization is a standard operator from opset 17


def bert_config(model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    expected = {
        "model_type": "bert",
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
    }
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ValueError(f"{model_dir}: {key}={config.get(key)!r}, only {value!r} is supported")
    return config


def build_graph(model_dir: Path, out: Path) -> None:
    """Write the encoder's ONNX graph to ``out``: inputs ``input_ids`` and
    ``attention_mask`` (int64, [batch, seq]), output ``pooled`` ([batch, hidden],
    masked mean of the last hidden states, not yet normalised)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = bert_config(model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    b = _Builder(weights, numpy_helper)
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config["layer_norm_eps"])

    # Embeddings: word + position + token type 0 (single-segment input).
    seq = b.node("Gather", [b.node("Shape", ["input_ids"]), b.const(np.array(1))], axis=0)
    positions = b.node("Range", [b.const(np.array(0)), seq, b.const(np.array(1))])
    x = b.node(
        "Add",
        [
            b.node("Gather", [b.weight("embeddings.word_embeddings.weight"), "input_ids"]),
            b.node("Gather", [b.weight("embeddings.position_embeddings.weight"), positions]),
        ],
    )
    x = b.node("Add", [x, b.const(weights["embeddings.token_type_embeddings.weight"][0])])
    x = b.layer_norm(x, "embeddings.LayerNorm", eps)

    mask = b.node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    # Padding gets a large negative score: exp() of it is exactly 0 after softmax.
    bias = b.node(
        "Mul", [b.node("Sub", [b.const(np.float32(1.0)), mask]), b.const(np.float32(-1e9))]
    )
    bias = b.node("Unsqueeze", [bias, b.const(np.array([1, 2]))])  # [batch, 1, 1, seq]

    for i in range(int(config["num_hidden_layers"])):
        x = b.encoder_layer(x, bias, f"encoder.layer.{i}", hidden=hidden, heads=heads, eps=eps)

    # sentence-transformers' mean pooling: sum over real tokens / their count.
    m = b.node("Unsqueeze", [mask, b.const(np.array([2]))])
    summed = b.node("ReduceSum", [b.node("Mul", [x, m]), b.const(np.array([1]))], keepdims=0)
    count = b.node("ReduceSum", [m, b.const(np.array([1]))], keepdims=0)
    count = b.node("Max", [count, b.const(np.float32(1e-9))])
    b.node("Div", [summed, count], out="pooled")

    graph = helper.make_graph(
        b.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])],
        initializer=b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    onnx.save_model(model, str(out))


class _Builder:
    """Collects nodes and initializers with generated names."""

    def __init__(self, weights: dict[str, np.ndarray], numpy_helper: Any) -> None:
        self.weights = weights
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, value: np.ndarray | np.generic) -> str:
        array = np.asarray(value)
        if array.dtype.kind == "i":
            array = array.astype(np.int64)
        name = self._name("c")
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def weight(self, key: str, *, transpose: bool = False) -> str:
        array = self.weights[key]
        # torch's Linear stores [out, in]; MatMul wants [in, out].
        return self.const(np.ascontiguousarray(array.T) if transpose else array)

    def node(self, op: str, inputs: list[str], *, out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        name = out or self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [name], **attrs))
        return name

    def linear(self, x: str, prefix: str) -> str:
        y = self.node("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)])
        return self.node("Add", [y, self.weight(f"{prefix}.bias")])

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.node(
            "LayerNormalization",
            [x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")],
            axis=-1,
            epsilon=eps,
        )

    def encoder_layer(
        self, x: str, bias: str, prefix: str, *, hidden: int, heads: int, eps: float
    ) -> str:
        size = hidden // heads
        split = self.const(np.array([0, 0, heads, size]))  # 0 keeps batch and seq

        def project(name: str, perm: list[int]) -> str:
            y = self.linear(x, f"{prefix}.attention.self.{name}")
            return self.node("Transpose", [self.node("Reshape", [y, split])], perm=perm)

        q = project("query", [0, 2, 1, 3])  # [batch, heads, seq, size]
        k = project("key", [0, 2, 3, 1])  # [batch, heads, size, seq]
        v = project("value", [0, 2, 1, 3])
        scores = self.node(
            "Mul", [self.node("MatMul", [q, k]), self.const(np.float32(1 / math.sqrt(size)))]
        )
        probs = self.node("Softmax", [self.node("Add", [scores, bias])], axis=-1)
        context = self.node("Transpose", [self.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = self.node("Reshape", [context, self.const(np.array([0, 0, hidden]))])
        attended = self.linear(context, f"{prefix}.attention.output.dense")
        x = self.layer_norm(
            self.node("Add", [attended, x]), f"{prefix}.attention.output.LayerNorm", eps
        )

        inner = self.linear(x, f"{prefix}.intermediate.dense")
        # Exact GELU, as BERT's "gelu": 0.5 * h * (1 + erf(h / sqrt(2))).
        erf = self.node("Erf", [self.node("Div", [inner, self.const(np.float32(math.sqrt(2.0)))])])
        gelu = self.node(
            "Mul",
            [
                self.node("Mul", [inner, self.const(np.float32(0.5))]),
                self.node("Add", [erf, self.const(np.float32(1.0))]),
            ],
        )
        out = self.linear(gelu, f"{prefix}.output.dense")
        return self.layer_norm(self.node("Add", [out, x]), f"{prefix}.output.LayerNorm", eps)

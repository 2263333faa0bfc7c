"""Small ONNX models of the Deepness/GeoDeep metadata contract, built directly with onnx.helper.

Each is a fixed random network (seeded): one or two convolutions, then softmax over the class
channels or a sigmoid on one channel, so it draws varied classes on real imagery. The same
network with dynamic input dimensions is the whole-image reference the tests compare with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_model(
    path: Path,
    *,
    channels: int = 3,
    outputs: int = 4,
    kernel: int = 1,
    static: int | None = None,
    batch: int | None = None,
    metadata: dict[str, object] | None = None,
    raw_metadata: dict[str, str] | None = None,
    head: str = "softmax",
    seed: int = 0,
) -> Path:
    """Write a model reading ``(batch, channels, static|H, static|W)`` float32 and writing ``outputs`` channels.

    ``metadata`` values are JSON-encoded as the contract writes them; ``raw_metadata`` goes in as
    it is. ``head``: softmax, sigmoid (one channel expected), or none (raw scores).
    """
    rng = np.random.default_rng(seed)
    hidden = 8
    w1 = rng.normal(0, 2.0, (hidden, channels, kernel, kernel)).astype(np.float32) / kernel
    b1 = rng.normal(0, 0.5, hidden).astype(np.float32)
    w2 = rng.normal(0, 1.5, (outputs, hidden, 1, 1)).astype(np.float32)
    b2 = rng.normal(0, 0.3, outputs).astype(np.float32)
    pad = kernel // 2
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[pad] * 4),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("Conv", ["t", "w2", "b2"], ["s" if head != "none" else "y"]),
    ]
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", ["s"], ["y"], axis=1))
    elif head == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["s"], ["y"]))
    size: list[int | str] = [static, static] if static else ["height", "width"]
    graph = helper.make_graph(
        nodes,
        "deepness-test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch or "batch", channels, *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch or "batch", outputs, *size])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    for key, value in (raw_metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def dynamic_copy(path: Path, dest: Path) -> Path:
    """The same network with every input and output dimension but the channels left free (the reference)."""
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if index != 1:
                dim.ClearField("dim_value")
                dim.dim_param = f"d{index}"
    onnx.save(model, str(dest))
    return dest


def reference_scores(
    path: Path, image: np.ndarray, mean: list[float], std: list[float], divisor: float = 255
) -> np.ndarray:
    """The network on the whole image ``(bands, H, W)`` at once (pixels / ``divisor``): ``(K, H, W)`` scores."""
    import onnxruntime

    dynamic = dynamic_copy(path, path.with_name(path.stem + "-dynamic.onnx"))
    session = onnxruntime.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    scaled = np.clip(image.astype(np.float64) / divisor, 0, 1).astype(np.float32)
    x = (scaled - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return session.run(None, {session.get_inputs()[0].name: x[None]})[0][0]


def reference_classes(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Both tools' rule: scores below the threshold count as 0, then the argmax; one channel: p >= threshold."""
    if scores.shape[0] == 1:
        return (scores[0] >= (threshold if threshold > 0 else 0.5)).astype(np.uint8)
    kept = np.where(scores >= threshold, scores, 0) if threshold > 0 else scores
    return kept.argmax(0).astype(np.uint8)

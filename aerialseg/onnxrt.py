"""ONNX Runtime access: the one place that imports it and names the extra to install.

``onnxruntime`` (CPU) and ``onnxruntime-gpu`` install the same module and silently
overwrite each other, so aerialseg depends on neither directly: ``aerialseg[cpu]`` or
``aerialseg[gpu]`` brings one.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import MissingDependencyError

__all__ = ["import_onnxruntime", "open_session"]


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an error saying which extra to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "ONNX Runtime is not installed",
            hint="pip install 'aerialseg[cpu]' (or 'aerialseg[gpu]' on a CUDA machine; never both)",
        ) from exc
    return onnxruntime


def open_session(path: str | os.PathLike[str], providers: list[str] | None = None, threads: int = 0) -> Any:
    """An InferenceSession with full graph optimisation; CPU only unless ``providers`` says otherwise."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"])

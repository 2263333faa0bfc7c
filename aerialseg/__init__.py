"""aerialseg: land-cover maps and object polygons from aerial orthophotos with MANet, MAResU-Net and ABCNet.

The public API is imported lazily: ``import aerialseg`` loads neither torch nor
onnxruntime, so the command line answers ``--help`` at once.

``aerialseg.doctor`` and ``aerialseg.evaluate`` are the functions, although modules of
those names exist: importing a submodule binds it on its package, which here would replace
the function by the module the moment anything imported it (``from aerialseg.diagnosis import
doctor`` still reads the module).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "ModelCard": "aerialseg.card",
    "ClassInfo": "aerialseg.card",
    "list_models": "aerialseg.models",
    "create_model": "aerialseg.models",
    "load_model": "aerialseg.weights",
    "save_weights": "aerialseg.weights",
    "read_weights": "aerialseg.weights",
    "list_weights": "aerialseg.weights",
    "choose_weights": "aerialseg.weights",
    "resolve_dataset": "aerialseg.data.store",
    "list_prepared": "aerialseg.data.store",
    "import_checkpoint": "aerialseg.checkpoint_import",
    "load_backbone_weights": "aerialseg.checkpoint_import",
    "export_onnx": "aerialseg.export",
    "predict": "aerialseg.pipeline",
    "predict_batch": "aerialseg.batch",
    "BatchEvents": "aerialseg.batch",
    "PredictOptions": "aerialseg.options",
    "TilingOptions": "aerialseg.options",
    "InputOptions": "aerialseg.options",
    "OutputOptions": "aerialseg.options",
    "doctor": "aerialseg.diagnosis",
    "open_runner": "aerialseg.runners",
    "RunnerSpec": "aerialseg.runners",
    "detect_hardware": "aerialseg.hardware",
    "vectorize": "aerialseg.vector",
    "VectorizeOptions": "aerialseg.vector",
    "prepare_dataset": "aerialseg.data.prepare",
    "prepare_folder": "aerialseg.data.prepare",
    "Manifest": "aerialseg.data.manifest",
    "train": "aerialseg.training.loop",
    "TrainOptions": "aerialseg.training.loop",
    "evaluate": "aerialseg.evaluation",
    "EvalOptions": "aerialseg.options",
    "ConfusionMatrix": "aerialseg.metrics",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'aerialseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""Options shared by several commands, defined once.

Used by: ``Overwrite`` (export, weights import), ``JsonOutput`` (models, weights info,
export), ``TrustPickle`` (weights import); the engine options ``Backend``, ``Device``,
``Precision``, ``MinAgreement`` (predict, eval) and ``Calibration`` (predict). Choices are
enumerations built from the library's own tuples, so the command line cannot drift from
what the library accepts.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..runners.choice import BACKENDS, PRECISIONS
from ..runners.gate import DEFAULT_MIN_AGREEMENT

BackendName = Enum("BackendName", {name: name for name in BACKENDS}, type=str)  # type: ignore[misc]
PrecisionName = Enum("PrecisionName", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow unpickling arbitrary Python objects (runs code from the file). Only for files you trust.",
    ),
]
Backend = Annotated[
    BackendName,
    typer.Option(help="Engine: auto picks the fastest for this machine ('aerialseg doctor' says which and why)."),
]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA when present).")]
Precision = Annotated[
    PrecisionName,
    typer.Option(
        help="auto: the fastest precision this hardware runs natively that passes the accuracy gate "
        "(bf16 on CPUs with native bf16, fp16 on CUDA, else fp32); int8 runs on ONNX Runtime."
    ),
]
MinAgreement = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Accuracy gate: the share of pixels whose class must equal fp32's on real tiles before a "
        "reduced-precision run.",
    ),
]
Calibration = Annotated[
    str | None,
    typer.Option(help="--precision int8: a raster whose tiles calibrate the quantization (default: the input's own)."),
]
DEFAULT_BACKEND = BackendName("auto")
DEFAULT_PRECISION = PrecisionName("auto")
__all__ = [
    "Overwrite",
    "JsonOutput",
    "TrustPickle",
    "Backend",
    "Device",
    "Precision",
    "MinAgreement",
    "Calibration",
    "DEFAULT_BACKEND",
    "DEFAULT_PRECISION",
    "DEFAULT_MIN_AGREEMENT",
]

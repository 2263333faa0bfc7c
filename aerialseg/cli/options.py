"""Options used by more than one command, declared once, with the library's choices and defaults.

A value from a fixed set is offered as a choice built from the library's own tuple
(:data:`~aerialseg.options.BLENDS`, :data:`~aerialseg.runners.choice.BACKENDS` ...), and a
command's default is read from the library's dataclass (``TilingOptions.blend``,
``RunnerSpec.precision`` ...), so the command line cannot drift from what the API accepts.
Commands hand these values on unchanged: a choice arrives as a plain string. Where the
default lives in a module that start-up must not import (training loads torch, the cluster
the whole pipeline), the option is None unless given and the command passes on only what
was given, so the library's default applies.

Flags spelled alike that mean something different per command stay with their command:
``-o/--output`` (what is written), ``--resume`` (predict: a partial raster; train: a run
folder), train's ``--batch-size`` (patches per step), ``--seed`` and export's ``--min-agreement``.

:func:`runner_spec` is the one place the command line turns the engine options into the
:class:`~aerialseg.runners.RunnerSpec` that predict, doctor, eval and a cluster's workers open.

Values that cannot work are refused while the command line is read, as usage errors (exit
2, one line), before any file is opened or any network loaded: numbers out of range (a
``min``/``max`` or a callback), a ``--device`` that is no device or that this machine
lacks (asked of :mod:`aerialseg.hardware`, without torch), an ``--overlap`` not below the
tile size (given, or the model card's: the card is read, not the network), an objects
format aerialseg cannot write.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ..errors import AerialsegError
from ..models import ARCHITECTURES, MODELS
from ..options import BLENDS, GSD_MODES
from ..runners import RunnerSpec
from ..runners.choice import BACKENDS, PRECISIONS, TTA_MODES, device_problem
from ..vector.settings import CAR_GEOMETRIES
from ..vector.writer import FORMATS
from . import console

if TYPE_CHECKING:
    from ..catalog import WeightsChoice

if TYPE_CHECKING:  # mypy sees plain strings; typer reads the Literal and offers its values as choices
    BackendChoice = str
    PrecisionChoice = str
    BlendChoice = str
    TTAChoice = str
    GSDChoice = str
    ArchChoice = str
    BackboneChoice = str
    CarGeometryChoice = str
    ProgressChoice = str
else:
    BackendChoice = Literal[BACKENDS]
    PrecisionChoice = Literal[PRECISIONS]
    BlendChoice = Literal[BLENDS]
    TTAChoice = Literal[TTA_MODES]
    GSDChoice = Literal[GSD_MODES]
    ArchChoice = Literal[tuple(ARCHITECTURES)]
    BackboneChoice = Literal[tuple(sorted({spec.backbone for spec in MODELS}))]
    CarGeometryChoice = Literal[CAR_GEOMETRIES]
    ProgressChoice = Literal[console.PROGRESS_STYLES]

__all__ = [
    "Overwrite",
    "JsonOutput",
    "ProgressStyle",
    "TrustPickle",
    "Model",
    "Backend",
    "Device",
    "Precision",
    "MinAgreement",
    "Calibration",
    "TTA",
    "TileSize",
    "Overlap",
    "Blend",
    "BatchSize",
    "Bands",
    "Scale",
    "Threshold",
    "GSD",
    "AllowNoCRS",
    "Probabilities",
    "Uncertainty",
    "Regularize",
    "CarGeometry",
    "ObjectsFormat",
    "CarInstances",
    "Data",
    "Arch",
    "ArchOrDefault",
    "Backbone",
    "Half",
    "runner_spec",
    "chosen_model",
    "announce_choice",
    "dataset_argument",
    "DatasetName",
    "parse_bands",
]


def _scale(value: float | None) -> float | None:
    """``--scale``: a divisor the float32 pixels can take (see :func:`aerialseg.card.scale_problem`)."""
    from ..card import scale_problem

    problem = None if value is None else scale_problem(value)
    if problem:
        raise typer.BadParameter(f"{problem}; give the divisor that maps the pixels to [0, 1]")
    return value


def _device(value: str | None) -> str | None:
    """``--device``: cpu, cuda or cuda:N that this machine has (asked without torch)."""
    if value is None:
        return None
    from .. import hardware  # looked up at each call: tests replace detect_hardware

    problem = device_problem(value, hardware.detect_hardware())
    if problem:
        raise typer.BadParameter(problem)
    return value


def _objects_format(value: str) -> str:
    """``--objects-format``: a vector format the writer knows, with or without its dot."""
    if f".{value.lstrip('.').lower()}" not in FORMATS:
        choices = ", ".join(sorted(suffix.lstrip(".") for suffix in FORMATS))
        raise typer.BadParameter(f"{value!r} is not one of {choices}")
    return value


_TILING_PARAMS = ("model", "tile_size", "overlap")


def _tiling(ctx: typer.Context, param: typer.CallbackParam, value: object) -> object:
    """Refuse an overlap not below the tile size, once the model, ``--tile-size`` and ``--overlap`` are all read.

    Click reads options in the order given, so whichever of the three comes last checks;
    a size left to the model comes from its card (a bad model name is left to the command).
    """
    values = {**ctx.params, str(param.name): value}
    if ctx.resilient_parsing or not all(name in values for name in _TILING_PARAMS):
        return value
    given_tile, given_overlap = values["tile_size"], values["overlap"]
    if given_tile is None and given_overlap is None:
        return value
    tile, overlap = given_tile, given_overlap
    if tile is None or overlap is None:
        try:
            card = RunnerSpec(str(values["model"])).card()
        except AerialsegError:
            return value
        tile = card.tile_size if tile is None else tile
        overlap = card.overlap if overlap is None else overlap
    if not 0 <= overlap < tile:
        model = " (the model's)"
        raise typer.BadParameter(
            f"overlap {overlap}{model if given_overlap is None else ''} is not below the tile size "
            f"{tile}{model if given_tile is None else ''}; pass a smaller --overlap or a larger --tile-size",
            param_hint="'--overlap'" if given_overlap is not None else "'--tile-size'",
        )
    return value


# Output and trust.
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ProgressStyle = Annotated[
    ProgressChoice,
    typer.Option(
        "--progress",
        help="auto: bars on a terminal; json: one JSON object per line on stderr "
        '({"stage", "item", "done", "total"}) for programs that run aerialseg; none.',
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow unpickling arbitrary Python objects (runs code from the file). Only for files you trust.",
    ),
]

# The network and its engine: predict, doctor, eval (see runner_spec).
Model = Annotated[
    str,
    typer.Option(
        "--model", "-m", "--weights", callback=_tiling, help="Weights name, weights file, or exported .onnx file."
    ),
]
Backend = Annotated[
    BackendChoice,
    typer.Option(help="Engine: auto picks the fastest for this machine ('aerialseg doctor' says which and why)."),
]
Device = Annotated[
    str | None, typer.Option(callback=_device, help="cpu, cuda, cuda:1 ... (default: CUDA when present).")
]
Precision = Annotated[
    PrecisionChoice,
    typer.Option(
        help="auto: the fastest precision this hardware runs natively that passes the accuracy gate "
        "(bf16 on CPUs with native bf16, fp16 on CUDA, else fp32); int8 runs on ONNX Runtime."
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Class scores below this count as 0 before the argmax, so a pixel where no class reaches it "
        "is class 0 (0: off; default: the model's, seg_thresh for Deepness files).",
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
TTA = Annotated[TTAChoice | None, typer.Option("--tta", help="Test-time augmentation: flip (4 views) or d4 (8 views).")]

# Tiling (aerialseg.options.TilingOptions): predict, doctor, eval.
TileSize = Annotated[
    int | None, typer.Option(min=1, callback=_tiling, help="Tile size in pixels (default: the model card's).")
]
Overlap = Annotated[
    int | None, typer.Option(min=0, callback=_tiling, help="Overlap in pixels (default: the model card's).")
]
Blend = Annotated[BlendChoice, typer.Option(help="Overlap blending: cosine or linear ramps, or center (plain crop).")]
BatchSize = Annotated[int, typer.Option(min=1, help="Tiles per forward pass.")]

# Reading the input (aerialseg.options.InputOptions): predict, doctor.
Bands = Annotated[str | None, typer.Option(help="Input bands in the model's order, e.g. 4,1,2.")]
Scale = Annotated[
    float | None,
    typer.Option(callback=_scale, help="Divisor for non-8-bit input (default: 2-98 percentile stretch)."),
]
GSD = Annotated[
    GSDChoice, typer.Option(help="auto: predict at the model's GSD when the input's differs >10 %; native: never.")
]
AllowNoCRS = Annotated[bool, typer.Option("--allow-no-crs", help="Accept rasters without a CRS.")]
Asset = Annotated[
    str | None,
    typer.Option(help="Asset of a STAC item input to read (default: 'visual', else its one TIFF data asset)."),
]

# Extra outputs (aerialseg.options.OutputOptions): predict, doctor (they decide the blender's memory).
Probabilities = Annotated[
    bool, typer.Option("--probabilities", help="Also write <output>_probabilities.tif (a band per class, x254).")
]
Uncertainty = Annotated[
    bool,
    typer.Option("--uncertainty", help="Also write <output>_uncertainty.tif: confidence, margin, entropy (x254)."),
]

# Vectorizing: predict --vectorize, vectorize.
Regularize = Annotated[bool, typer.Option("--regularize", help="Square buildings to their main orientation.")]
CarGeometry = Annotated[CarGeometryChoice, typer.Option(help="Cars as their outline, or box (the oriented rectangle).")]
CarInstances = Annotated[
    bool,
    typer.Option(
        "--car-instances/--no-car-instances",
        help="Split regions of touching cars into one object per car (off: one object per connected region).",
    ),
]
ObjectsFormat = Annotated[
    str, typer.Option(callback=_objects_format, help="Format of the objects file: gpkg, parquet, fgb or geojson.")
]

# Datasets and networks to train: train, eval, weights import.
Data = Annotated[
    Path | None, typer.Option("--data", help="Folder written by 'aerialseg prepare' (wins over --dataset).")
]
DatasetName = Annotated[
    str | None,
    typer.Option(
        "--dataset", help="A prepared dataset by name (potsdam, vaihingen, uavid or your own), from $AERIALSEG_DATA."
    ),
]
_ARCH = typer.Option(case_sensitive=False, help="Network.")
Arch = Annotated[ArchChoice, _ARCH]
ArchOrDefault = Annotated[ArchChoice | None, _ARCH]  # None: the library's default network
Backbone = Annotated[BackboneChoice | None, typer.Option(help="ResNet trunk (default: the paper's).")]
Half = Annotated[bool, typer.Option("--half", help="Store the weights file's tensors as float16 (half the size).")]


def runner_spec(
    model: str,
    backend: str = RunnerSpec.backend,
    device: str | None = RunnerSpec.device,
    precision: str = RunnerSpec.precision,
    *,
    tta: str | None = RunnerSpec.tta,
    min_agreement: float = RunnerSpec.min_agreement,
    calibration: str | None = RunnerSpec.calibration,
) -> RunnerSpec:
    """The network and engine settings the command line was given, as the library's one specification."""
    if calibration is not None and precision != "int8":
        raise typer.BadParameter("calibrates int8 only; add --precision int8", param_hint="--calibration")
    return RunnerSpec(model, backend, device, tta, precision, min_agreement, calibration)


def chosen_model(model: str, *, announce: bool = True) -> str:
    """The model argument as the run will use it: a name such as ``manet`` becomes the weights file it chose.

    The choice is printed on stderr (unless ``announce`` is false) and sample weights get a
    one-line warning (see :func:`announce_choice`). A file path, an ``.onnx`` file or a
    weights file's own name are used as given.
    """
    spec, choice = RunnerSpec(model).pinned()
    if choice is not None:
        announce_choice(choice, announce=announce)
    return spec.model


def announce_choice(choice: WeightsChoice, *, announce: bool = True) -> None:
    """What a model name chose, on stderr (unless ``announce`` is false); sample weights' warning always."""
    if announce:
        console.info(choice.describe())
    if (warning := choice.warning()) is not None:
        console.warning(warning)


def dataset_argument(data: Path | None, dataset: str | None) -> Path:
    """The prepared dataset's folder: ``--data`` as given, else ``--dataset`` looked up in the data folder."""
    from ..data.store import resolve_dataset

    if data is not None:
        return data
    if dataset is None:
        raise typer.BadParameter("name a prepared dataset with --dataset NAME, or its folder with --data FOLDER")
    return resolve_dataset(dataset)


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """``"4,1,2"`` -> ``(4, 1, 2)``; None stays None."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            "give 1-based band numbers separated by commas, e.g. 4,1,2", param_hint="--bands"
        ) from None

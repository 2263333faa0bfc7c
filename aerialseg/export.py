"""ONNX export that proves itself: the file is written only if ONNX Runtime agrees with PyTorch.

The exported graph takes ``(B, bands, H, W)`` float32 pixels already divided by the card's
``pixel_max`` (values in [0, 1]), standardises them inside the graph, runs the network and
returns class probabilities (``output="probabilities"``, what QGIS Deepness and GeoDeep
expect) or raw logits. Batch, height and width are dynamic unless ``static_size`` fixes H
and W (Deepness and GeoDeep read the tile size from the input shape).

Before the file is moved into place, ONNX Runtime (CPU) runs it on real image tiles —
the NEON orthophoto crop shipped in ``aerialseg/resources`` or the caller's raster — at
two sizes, one non-square and one with batch 2, and the outputs are compared with the
PyTorch module's. If the largest absolute difference or the argmax agreement misses its
threshold, :class:`ExportParityError` reports the numbers and nothing is written.

Opset 18 and above use the dynamo exporter (``torch.export``); lower opsets use the
TorchScript exporter, whose down-conversion the dynamo path cannot do.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_output, check_output
from .card import ModelCard
from .conventions import CARD_KEY, ONNX_OPSET, OUTPUT_KEY, PRECISION_KEY, SAMPLE_ORTHOPHOTO, OutputKind
from .errors import AerialsegError, ExportParityError, InputRasterError, first_line
from .onnxrt import open_session
from .raster import open_raster

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ParityCheck", "ExportResult", "export_onnx", "parity_inputs"]

MIN_OPSET = 13
PARITY_IMAGE = SAMPLE_ORTHOPHOTO
# (fp16, output) -> (max |difference|, min argmax agreement)
DEFAULT_LIMITS = {
    (False, "probabilities"): (1e-3, 0.999),
    (False, "logits"): (1e-2, 0.999),
    (True, "probabilities"): (5e-2, 0.99),
    (True, "logits"): (0.5, 0.99),
}


@dataclass(frozen=True)
class ParityCheck:
    """ONNX Runtime vs PyTorch on one input batch."""

    shape: tuple[int, int, int, int]
    max_abs_diff: float
    agreement: float


@dataclass(frozen=True)
class ExportResult:
    """What was exported and how closely ONNX Runtime matched PyTorch."""

    path: Path
    opset: int
    exporter: str
    output: str
    fp16: bool
    checks: tuple[ParityCheck, ...]
    max_abs_diff_limit: float
    min_agreement: float
    size_bytes: int

    @property
    def max_abs_diff(self) -> float:
        """Largest difference over all checks."""
        return max(c.max_abs_diff for c in self.checks)

    @property
    def agreement(self) -> float:
        """Lowest argmax agreement over all checks."""
        return min(c.agreement for c in self.checks)


def _graph_module(model: nn.Module, card: ModelCard, output: OutputKind, fp16: bool) -> nn.Module:
    import torch

    from .models.standardize import Standardize

    class GraphModule(Standardize):
        """Standardise [0, 1] pixels, run the network, optionally softmax; float32 in and out.

        A :class:`Standardize` itself rather than holding one, so the graph's statistics keep
        the initializer names ``mean`` and ``std`` that earlier exports gave them.
        """

        def __init__(self) -> None:
            super().__init__(card.mean, card.std)  # stays float32 when the network is halved
            self.net = model.half() if fp16 else model

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = super().forward(image)
            logits = self.net(x.half() if fp16 else x).float()
            return torch.softmax(logits, dim=1) if output == "probabilities" else logits

    return GraphModule().eval()


def parity_inputs(
    card: ModelCard, image: str | os.PathLike[str] | None = None, static_size: int | None = None
) -> list[np.ndarray]:
    """Real-imagery test batches ``(B, bands, H, W)`` in [0, 1]: one non-square, one square of batch 2.

    Bands beyond the image's are taken cyclically from its bands; images smaller than a
    tile are mirrored to fill it. With ``static_size`` both batches are that square size.
    """
    import rasterio

    path = Path(image) if image else PARITY_IMAGE
    with open_raster(path) as src:
        try:
            data = src.read(masked=False).astype(np.float32)
        except rasterio.errors.RasterioError as exc:
            raise InputRasterError(f"cannot read parity image ({first_line(exc)})", path=path) from exc
        scale = 255.0 if src.dtypes[0] == "uint8" else max(float(data.max()), 1.0)
    data /= scale
    bands = len(card.bands)
    data = data[[i % data.shape[0] for i in range(bands)]]
    shapes = [(static_size, static_size), (static_size, static_size)] if static_size else [(256, 384), (200, 200)]
    batches = []
    for batch_size, (h, w) in zip((1, 2), shapes, strict=True):
        tiles = []
        for k in range(batch_size):
            pad = ((0, 0), (0, max(0, h + 37 * k - data.shape[1])), (0, max(0, w + 53 * k - data.shape[2])))
            full = np.pad(data, pad, mode="symmetric")
            top, left = (37 * k) % max(1, full.shape[1] - h + 1), (53 * k) % max(1, full.shape[2] - w + 1)
            tiles.append(full[:, top : top + h, left : left + w])
        batches.append(np.ascontiguousarray(np.stack(tiles)))
    return batches


def _trace(module: nn.Module, dest: Path, bands: int, opset: int, static_size: int | None) -> str:
    import torch

    size = static_size or 64
    example = torch.rand(1, bands, size, size)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if opset >= ONNX_OPSET:
            dims = {0: torch.export.Dim("batch")}
            if not static_size:
                dims |= {2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                dynamic_shapes={"image": dims},
                input_names=["image"],
                output_names=["output"],
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
            program.save(str(dest), external_data=False)  # type: ignore[union-attr]  # a program whenever dynamo=True
            return "dynamo"
        axes = {0: "batch"} if static_size else {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(
            module,
            (example,),
            str(dest),
            dynamo=False,
            input_names=["image"],
            output_names=["output"],
            dynamic_axes={"image": axes, "output": axes},
            opset_version=opset,
        )
        return "torchscript"


def _measure(path: Path, module: nn.Module, batches: list[np.ndarray]) -> tuple[ParityCheck, ...]:
    import torch

    session = open_session(path)
    checks = []
    for batch in batches:
        with torch.inference_mode():
            expected = module(torch.from_numpy(batch)).numpy()
        got = session.run(None, {"image": batch})[0]
        if got.shape != expected.shape:
            raise ExportParityError(f"ONNX output shape {got.shape} != PyTorch {expected.shape}", path=path)
        diff = float(np.nanmax(np.abs(got - expected))) if np.isfinite(got).all() else float("inf")
        agreement = float((got.argmax(1) == expected.argmax(1)).mean())
        checks.append(ParityCheck(tuple(batch.shape), diff, agreement))
    return tuple(checks)


def _metadata(
    card: ModelCard, output: str, checks: tuple[ParityCheck, ...], fp16: bool, static_size: int | None
) -> dict[str, str]:
    """The card and the Deepness/GeoDeep contract's keys, which read back the same map without the card.

    A static graph records its own tile and the overlap its runner uses there; ``seg_thresh`` 0:
    the map is the plain argmax.
    """
    from .deepness import overlap_percent

    tile = static_size or card.tile_size
    overlap = min(card.overlap, tile // 4) if static_size else card.overlap
    meta = {
        CARD_KEY: card.to_json(),
        PRECISION_KEY: "fp16" if fp16 else "fp32",
        "aerialseg.input": f"float32 (batch, {len(card.bands)} bands {'-'.join(card.bands)}, height, width): "
        f"pixels / {card.pixel_max:g}; standardisation is inside the graph",
        OUTPUT_KEY: output,
        "aerialseg.parity": json.dumps([asdict(c) for c in checks]),
        # QGIS Deepness / GeoDeep contract (JSON-encoded values).
        "model_type": json.dumps("Segmentor"),
        "class_names": json.dumps({str(i): name for i, name in enumerate(card.class_names)}),
        "tile_size": json.dumps(tile),
        "tiles_overlap": json.dumps(overlap_percent(tile, overlap)),
        "standardization_mean": json.dumps([0.0] * len(card.bands)),
        "standardization_std": json.dumps([1.0] * len(card.bands)),
        "seg_thresh": json.dumps(0),
    }
    if card.gsd_m:
        meta["resolution"] = json.dumps(round(card.gsd_m * 100, 4))
    return meta


def export_onnx(
    weights: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    opset: int = ONNX_OPSET,
    fp16: bool = False,
    output: OutputKind = "probabilities",
    static_size: int | None = None,
    parity_image: str | os.PathLike[str] | None = None,
    max_abs_diff: float | None = None,
    min_agreement: float | None = None,
    overwrite: bool = False,
    extra_metadata: Mapping[str, str] | None = None,
) -> ExportResult:
    """Export a weights file (name or path) to one self-contained ONNX file, gated on parity.

    ``extra_metadata`` adds properties to the graph's metadata (the export cache records its key there).
    """
    import onnx

    from .weights import load_model, resolve_weights

    if output not in ("probabilities", "logits"):
        raise ValueError("output must be 'probabilities' or 'logits'")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise AerialsegError(f"opset {opset} is not supported", hint=f"choose {MIN_OPSET}..{newest}")
    check_output(output_path, overwrite, [resolve_weights(weights), *([parity_image] if parity_image else [])])
    default_diff, default_agreement = DEFAULT_LIMITS[(fp16, output)]
    limit_diff = default_diff if max_abs_diff is None else max_abs_diff
    limit_agreement = default_agreement if min_agreement is None else min_agreement
    model, card = load_model(weights)
    reference = _graph_module(model, card, output, fp16=False)
    module = _graph_module(load_model(weights)[0], card, output, fp16) if fp16 else reference
    batches = parity_inputs(card, parity_image, static_size)
    with atomic_output(output_path, overwrite=overwrite) as tmp:
        try:
            exporter = _trace(module, tmp, len(card.bands), opset, static_size)
        except OSError:
            raise  # the file could not be written (a full disk): atomic_output names the output, not its temporary
        except Exception as exc:  # exporter internals raise many types; report, keep the cause
            raise AerialsegError(f"ONNX export failed ({type(exc).__name__}: {str(exc)[:300]})") from exc
        checks = _measure(tmp, reference, batches)
        worst_diff = max(c.max_abs_diff for c in checks)
        worst_agreement = min(c.agreement for c in checks)
        if not (worst_diff <= limit_diff and worst_agreement >= limit_agreement):
            raise ExportParityError(
                f"ONNX Runtime disagrees with PyTorch on real tiles: max |{output} difference| "
                f"{worst_diff:.3g} (limit {limit_diff:g}), argmax agreement {worst_agreement:.4%} "
                f"(limit {limit_agreement:.2%}); nothing written",
                path=output_path,
                hint="try another --opset, or drop --fp16",
            )
        graph = onnx.load(str(tmp))
        for key, value in (_metadata(card, output, checks, fp16, static_size) | dict(extra_metadata or {})).items():
            graph.metadata_props.add(key=key, value=value)
        graph.doc_string = f"aerialseg {card.arch}-{card.backbone}, {card.num_classes} classes"
        onnx.save(graph, str(tmp))
    path = Path(output_path)
    return ExportResult(path, opset, exporter, output, fp16, checks, limit_diff, limit_agreement, path.stat().st_size)

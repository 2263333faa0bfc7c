"""Provenance tags: what made an output raster, written into every raster of a run.

A class map is only as trustworthy as the record of how it was made: the package version,
the network and its weights' digest (an ONNX file's own for a Deepness file, whose card came from
its metadata), the class rule, the engine and precision (with the accuracy gate's
figure for reduced precision), the input's bands and scaling, the tiling and whether the
raster was predicted at the model's GSD. ``gdalinfo`` shows them; ``predict`` and the
cluster's assembled rasters carry the same ones. A local input is recorded by its file name,
a remote one by its URL without query string or credentials (signed URLs carry keys), a STAC
input also by its item id and asset key.
"""

from __future__ import annotations

import time

from .blend import ClassRule
from .conventions import Tag
from .locations import InputRef, public_url
from .runners import Runner, describe_precision, gate_result
from .source import RasterSource
from .tiling import TilePlan

__all__ = ["provenance_tags", "source_tags"]


def provenance_tags(
    runner: Runner, source: RasterSource, plan: TilePlan, rule: ClassRule, extra_tags: dict[str, str]
) -> dict[str, str]:
    """The ``AERIALSEG_*`` tags of a run (creation time included), then ``extra_tags``.

    The test-time augmentation is the runner's own (a :class:`~aerialseg.runners.tta.TTARunner`
    says its mode), so every caller records it, whoever opened the runner.
    """
    from . import __version__

    card = runner.card
    return {
        Tag.VERSION: __version__,
        Tag.MODEL: f"{card.arch}-{card.backbone}",
        Tag.WEIGHTS_SHA256: card.sha256,
        Tag.CARD: "Deepness metadata of the ONNX file" if card.origin == "deepness" else "aerialseg",
        Tag.CLASS_RULE: rule.describe(card.class_names),
        Tag.BACKEND: runner.description,
        **_precision_tags(runner),
        Tag.TTA: getattr(runner, "tta", None) or "none",
        **source_tags(source.path),
        Tag.BANDS: ",".join(map(str, source.indexes)),
        Tag.SCALING: source.scaling.rule,
        Tag.TILING: f"tile {plan.tile}, overlap {plan.overlap}, blend {plan.blend}",
        Tag.GSD: (
            f"input {source.grid.input_gsd_m:.4g} m, predicted at the model's {source.grid.model_gsd_m:.4g} m "
            "and resampled back (bilinear probabilities)"
            if source.grid
            else f"native (model {card.gsd_m:.4g} m)"
            if card.gsd_m
            else "native (model GSD unknown)"
        ),
        Tag.CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra_tags,
    }


def source_tags(path: InputRef) -> dict[str, str]:
    """``AERIALSEG_SOURCE`` (and, for a STAC item's asset, ``AERIALSEG_STAC_ITEM`` and ``AERIALSEG_STAC_ASSET``)."""
    from pathlib import Path

    if isinstance(path, Path):
        return {Tag.SOURCE: path.name}
    if path.stac is not None:
        return {
            Tag.SOURCE: public_url(path.stac.href) if path.remote else Path(path.stac.href).name,
            Tag.STAC_ITEM: path.stac.item,
            Tag.STAC_ASSET: path.stac.asset,
        }
    return {Tag.SOURCE: public_url(path.spelling)}


def _precision_tags(runner: Runner) -> dict[str, str]:
    """What precision ran and, for reduced precision, the accuracy gate's figure."""
    result = gate_result(runner)
    agreement = {} if result is None else {Tag.PRECISION_AGREEMENT: f"{result.agreement:.6f}"}
    return {Tag.PRECISION: describe_precision(runner), **agreement}

"""Provenance tags: what made an output raster, written into every raster of a run.

A class map is only as trustworthy as the record of how it was made: the package version,
the network and its weights' digest, the engine and precision (with the accuracy gate's
figure for reduced precision), the input's bands and scaling, the tiling and whether the
raster was predicted at the model's GSD. ``gdalinfo`` shows them; ``predict`` and the
cluster's assembled rasters carry the same ones. A local input is recorded by its file name,
a remote one by its URL without query string or credentials (signed URLs carry keys), a STAC
input also by its item id and asset key.
"""

from __future__ import annotations

import time

from .locations import InputRef, public_url
from .runners import Runner, describe_precision, gate_result
from .source import RasterSource
from .tiling import TilePlan

__all__ = ["provenance_tags", "source_tags"]


def provenance_tags(runner: Runner, source: RasterSource, plan: TilePlan, extra_tags: dict[str, str]) -> dict[str, str]:
    """The ``AERIALSEG_*`` tags of a run (creation time included), then ``extra_tags``."""
    from . import __version__

    card = runner.card
    return {
        "AERIALSEG_VERSION": __version__,
        "AERIALSEG_MODEL": f"{card.arch}-{card.backbone}",
        "AERIALSEG_WEIGHTS_SHA256": card.sha256,
        "AERIALSEG_BACKEND": runner.description,
        **_precision_tags(runner),
        **source_tags(source.path),
        "AERIALSEG_BANDS": ",".join(map(str, source.indexes)),
        "AERIALSEG_SCALING": source.scaling.rule,
        "AERIALSEG_TILING": f"tile {plan.tile}, overlap {plan.overlap}, blend {plan.blend}",
        "AERIALSEG_GSD": (
            f"input {source.grid.input_gsd_m:.4g} m, predicted at the model's {source.grid.model_gsd_m:.4g} m "
            "and resampled back (bilinear probabilities)"
            if source.grid
            else f"native (model {card.gsd_m:.4g} m)"
            if card.gsd_m
            else "native (model GSD unknown)"
        ),
        "AERIALSEG_CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra_tags,
    }


def source_tags(path: InputRef) -> dict[str, str]:
    """``AERIALSEG_SOURCE`` (and, for a STAC item's asset, ``AERIALSEG_STAC_ITEM`` and ``AERIALSEG_STAC_ASSET``)."""
    from pathlib import Path

    if isinstance(path, Path):
        return {"AERIALSEG_SOURCE": path.name}
    if path.stac is not None:
        return {
            "AERIALSEG_SOURCE": public_url(path.stac.href) if path.remote else Path(path.stac.href).name,
            "AERIALSEG_STAC_ITEM": path.stac.item,
            "AERIALSEG_STAC_ASSET": path.stac.asset,
        }
    return {"AERIALSEG_SOURCE": public_url(path.spelling)}


def _precision_tags(runner: Runner) -> dict[str, str]:
    """What precision ran and, for reduced precision, the accuracy gate's figure."""
    result = gate_result(runner)
    agreement = {} if result is None else {"AERIALSEG_PRECISION_AGREEMENT": f"{result.agreement:.6f}"}
    return {"AERIALSEG_PRECISION": describe_precision(runner), **agreement}

"""Provenance tags: what made an output raster, written into every raster of a run.

A class map is only as trustworthy as the record of how it was made: the package version,
the network and its weights' digest, the engine and precision (with the accuracy gate's
figure for reduced precision), the input's bands and scaling, the tiling and whether the
raster was predicted at the model's GSD. ``gdalinfo`` shows them; ``predict`` and the
cluster's assembled rasters carry the same ones.
"""

from __future__ import annotations

import time

from .runners import Runner, describe_precision, gate_result
from .source import RasterSource
from .tiling import TilePlan

__all__ = ["provenance_tags"]


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
        "AERIALSEG_SOURCE": source.path.name,
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


def _precision_tags(runner: Runner) -> dict[str, str]:
    """What precision ran and, for reduced precision, the accuracy gate's figure."""
    result = gate_result(runner)
    agreement = {} if result is None else {"AERIALSEG_PRECISION_AGREEMENT": f"{result.agreement:.6f}"}
    return {"AERIALSEG_PRECISION": describe_precision(runner), **agreement}

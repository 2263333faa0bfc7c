"""Prediction settings in three groups: how to tile, how to read the input, what to write; and evaluation's.

The command line, the Python API, ``evaluate``, ``doctor`` and the cluster build the same
:class:`PredictOptions`; :meth:`TilingOptions.resolve` applies the model card's defaults once,
so every caller plans the same tiles. Torch- and numpy-free: the command line declares its
options from these defaults when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AerialsegError

if TYPE_CHECKING:
    from .card import ModelCard
    from .runners import RunnerSpec
    from .vector import VectorizeOptions

__all__ = [
    "BLENDS",
    "GSD_MODES",
    "TilingOptions",
    "Tiling",
    "InputOptions",
    "OutputOptions",
    "PredictOptions",
    "EvalOptions",
]

BLENDS = ("cosine", "linear", "center")
"""Tile blending: cosine or linear ramps over the overlap, or a plain centre crop."""

GSD_MODES = ("auto", "native")
"""``auto`` predicts at the model's GSD when the input's differs by more than 10 %; ``native`` never resamples."""


@dataclass(frozen=True)
class Tiling:
    """Tile size, overlap, blending and batch size with the model card's defaults applied."""

    tile: int
    overlap: int
    blend: str
    batch_size: int


@dataclass(frozen=True)
class TilingOptions:
    """How the raster is cut into tiles; ``None`` takes the model card's value."""

    tile_size: int | None = None
    overlap: int | None = None
    blend: str = "cosine"
    batch_size: int = 1

    def resolve(self, card: ModelCard) -> Tiling:
        """The tiling this model runs with (card defaults filled in, values checked)."""
        tile = self.tile_size or card.tile_size
        overlap = card.overlap if self.overlap is None else self.overlap
        if tile < 1:
            raise AerialsegError(f"tile size {tile} is not positive", hint="pass --tile-size 512, for example")
        if not 0 <= overlap < tile:
            raise AerialsegError(f"overlap {overlap} must be at least 0 and below the tile size {tile}")
        if self.blend not in BLENDS:
            raise AerialsegError(f"unknown blend {self.blend!r}", hint=f"use one of {', '.join(BLENDS)}")
        if self.batch_size < 1:
            raise AerialsegError(f"batch size {self.batch_size} is not positive", hint="pass --batch-size 1 or more")
        return Tiling(tile, overlap, self.blend, self.batch_size)


@dataclass(frozen=True)
class InputOptions:
    """How the input raster is read.

    ``bands``: 1-based input bands in the model's order. ``scale``: divisor for non-8-bit
    input (else a 2-98 percentile stretch). ``gsd``: see :data:`GSD_MODES`. ``rows=(start,
    stop)`` predicts only those input rows, into outputs that cover just them (georeferenced
    where they lie) and equal those rows of a whole-raster run (how a cluster splits one raster).
    ``mosaic``: the inputs of a batch, on one pixel grid, are predicted as one raster and cut
    back into one output per input (see :mod:`aerialseg.mosaic`). ``asset``: the asset of a
    STAC item input to read (None: its visual image; see :mod:`aerialseg.stac`).
    """

    bands: tuple[int, ...] | None = None
    scale: float | None = None
    allow_no_crs: bool = False
    gsd: str = "auto"
    rows: tuple[int, int] | None = None
    mosaic: bool = False
    asset: str | None = None


@dataclass(frozen=True)
class OutputOptions:
    """What is written and how.

    ``resume`` continues an interrupted (partial) run of the same input, model and settings
    (see :mod:`aerialseg.journal`); ``skip_finished`` leaves an input of a batch whose class
    raster already exists alone (status ``skipped``; see :mod:`aerialseg.batch`).
    ``probabilities`` / ``uncertainty`` also write ``<output>_probabilities.tif`` (one band per
    class) / ``<output>_uncertainty.tif`` (confidence, margin, entropy), values x 254.
    ``vectorize`` then turns the class raster into ``<output>_objects<objects_suffix>``, or
    into ``objects_path`` when one is given (a run with a single output only: a file of the
    user's choosing, as a QGIS Processing destination is).
    ``cog=False`` leaves the rasters as plain tiled GeoTIFFs without overviews nor style files:
    for parts that are assembled or compared and then deleted (a cluster's bands, eval's maps).
    """

    overwrite: bool = False
    resume: bool = False
    skip_finished: bool = False
    probabilities: bool = False
    uncertainty: bool = False
    vectorize: VectorizeOptions | None = None
    objects_suffix: str = ".gpkg"
    objects_path: Path | None = None
    cog: bool = True
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictOptions:
    """Settings of one prediction run: the three groups, the class threshold, and how many tiles each queue holds.

    ``threshold``: class scores below it count as 0 before the argmax (0: off); None takes the
    model card's (0 for aerialseg's networks, ``seg_thresh`` for a Deepness file).
    """

    tiling: TilingOptions = field(default_factory=TilingOptions)
    input: InputOptions = field(default_factory=InputOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    threshold: float | None = None
    queue_tiles: int = 4


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate (``data``, ``split``, ``labels``, ``patches``), with which network, and how to tile.

    ``runner`` is the network and its engine, as ``predict`` opens it; ``tiling`` defaults to
    the model card's. ``save_maps`` keeps the predicted class rasters in that folder.
    """

    data: Path
    runner: RunnerSpec
    split: str = "test"
    labels: str = "auto"
    patches: bool = False
    tiling: TilingOptions = field(default_factory=TilingOptions)
    save_maps: Path | None = None

"""evaluate(): the papers' test protocol through the same tiled, blended path as ``predict``.

Each full test tile (a *scene* of the prepared manifest) is predicted with
:func:`aerialseg.pipeline.predict` into a class GeoTIFF — tiles, overlaps, blending, TTA
exactly as a user's run — and compared with its label raster strip by strip into one
global confusion matrix. Evaluating whole tiles rather than the prepared patches means no
pixel is counted twice and no padding is counted at all. ISPRS scores use the eroded
labels by default (boundary pixels ignored), as the papers do; ``labels="full"`` scores
every pixel. ``patches=True`` evaluates the prepared patches instead (for datasets
prepared without scenes, or to compare with patch-based numbers).

The pipeline is imported when :func:`evaluate` runs, so importing this module stays light:
the command line reads :class:`EvalOptions`' defaults at start-up.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data.manifest import Manifest
from .errors import AerialsegError, DatasetLayoutError
from .metrics import ConfusionMatrix, Scores
from .options import EvalOptions, InputOptions, OutputOptions, PredictOptions
from .raster import open_raster, read_bands
from .runners import Runner, describe_precision

if TYPE_CHECKING:
    from .pipeline import Progress

__all__ = ["EvalOptions", "EvalResult", "evaluate", "compare_rasters"]


@dataclass(frozen=True)
class EvalResult:
    """The global scores, the confusion matrix (rows truth, columns prediction) and per-image overall accuracy."""

    dataset: str
    split: str
    labels: str
    scores: Scores
    matrix: np.ndarray
    images: list[dict[str, object]] = field(default_factory=list)
    model: str = ""
    settings: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary: the papers' table plus the matrix and per-image rows."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "labels": self.labels,
            "model": self.model,
            "settings": self.settings,
            **self.scores.to_dict(),
            "confusion_matrix": self.matrix.tolist(),
            "images": self.images,
        }


def compare_rasters(prediction: Path, label: Path, matrix: ConfusionMatrix, rows: int = 512) -> int:
    """Add a class raster's agreement with a label raster (same size) to ``matrix``, strip by strip.

    Returns the number of pixels counted.
    """
    from rasterio.windows import Window

    before = matrix.matrix.sum()
    with open_raster(prediction) as pred, open_raster(label) as truth:
        if (pred.width, pred.height) != (truth.width, truth.height):
            raise DatasetLayoutError(
                f"label is {truth.width} x {truth.height} but the image is {pred.width} x {pred.height}", path=label
            )
        for top in range(0, truth.height, rows):
            window = Window(0, top, truth.width, min(rows, truth.height - top))
            try:
                matrix.update(read_bands(truth, 1, window=window), read_bands(pred, 1, window=window))
            except ValueError as exc:
                raise AerialsegError(
                    f"{exc} (nodata in the prediction where the label has a class)", path=label
                ) from exc
    return int(matrix.matrix.sum() - before)


def _items(manifest: Manifest, split: str, labels: str, patches: bool) -> tuple[list[tuple[str, Path, Path]], str]:
    """``(name, image, label)`` to evaluate, and which labels were used (``eroded`` or ``full``)."""
    info = manifest.split(split)
    eroded = info.has_eroded if labels == "auto" else labels == "eroded"
    if labels not in ("auto", "eroded", "full"):
        raise AerialsegError(f"unknown labels {labels!r}; choose eroded or full")
    if eroded and not info.has_eroded:
        raise DatasetLayoutError(f"split {split!r} has no eroded labels", path=manifest.folder, hint="use --full")
    kind = "eroded" if eroded else "full"
    if patches:
        pairs = manifest.patch_pairs(split, eroded=eroded)
        if not pairs:
            raise DatasetLayoutError(
                f"split {split!r} has no patches", path=manifest.folder, hint="evaluate its scenes without --patches"
            )
        return [(image.stem, image, label) for image, label in pairs], kind
    labelled = [(s, label) for s in info.scenes if (label := s.label_eroded if eroded else s.label)]
    if not labelled:
        raise DatasetLayoutError(
            f"split {split!r} has no labelled scenes", path=manifest.folder, hint="evaluate its patches with --patches"
        )
    items = []
    for scene, label in labelled:
        image = Path(scene.image)
        if not image.is_file():
            raise DatasetLayoutError(
                "scene image is missing (moved since prepare?)", path=image, hint="prepare the dataset again"
            )
        items.append((scene.id, image, manifest.resolve(label)))
    return items, kind


def evaluate(
    options: EvalOptions,
    progress: Callable[[str, int, int], None] | None = None,
    tile_progress: Callable[[Progress], None] | None = None,
    opened: Runner | None = None,
) -> EvalResult:
    """Predict every image of the split and score it (see the module docstring).

    ``progress(name, done, total)`` is called after each image. ``opened`` is a runner to use
    instead of opening ``options.runner`` (callers holding a model already).
    """
    from .pipeline import predict

    manifest = Manifest.load(options.data)
    card = opened.card if opened is not None else options.runner.card()  # the network loads once all is checked
    names = [c.name for c in manifest.classes]
    if card.class_names != names:
        raise AerialsegError(f"model classes {card.class_names} differ from the dataset's {names}", path=options.data)
    if tuple(card.bands) != tuple(manifest.bands):
        raise AerialsegError(f"model bands {card.bands} differ from the dataset's {manifest.bands}", path=options.data)
    items, kind = _items(manifest, options.split, options.labels, options.patches)
    tiling = options.tiling.resolve(card)
    if options.save_maps is not None and Path(options.save_maps).exists() and not Path(options.save_maps).is_dir():
        raise AerialsegError("--save-maps names a file", path=options.save_maps, hint="give a folder for the maps")
    runner = opened or options.runner.open()
    predict_options = PredictOptions(
        tiling=options.tiling,
        input=InputOptions(
            bands=tuple(range(1, len(manifest.bands) + 1)),  # prepared in the model's band order
            allow_no_crs=True,
            gsd="native",  # the benchmark's test tiles are at the training resolution
        ),
        output=OutputOptions(overwrite=True, cog=options.save_maps is not None),  # compared, deleted: no overviews
    )
    matrix = ConfusionMatrix(len(names), manifest.ignore_index)
    rows = []
    from rasterio.errors import NotGeoreferencedWarning

    # Benchmark patches and frames (UAVid PNGs) have no CRS: said once in the docs, not per image.
    with tempfile.TemporaryDirectory(prefix="aerialseg-eval-") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        folder = Path(options.save_maps) if options.save_maps else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for done, (name, image, label) in enumerate(items, start=1):
            output = folder / f"{name}_classes.tif"
            predict(image, output, runner, predict_options, tile_progress)
            own = ConfusionMatrix(len(names), manifest.ignore_index)
            pixels = compare_rasters(output, label, own)
            matrix.merge(own)
            oa = own.matrix.trace() / pixels if pixels else float("nan")
            rows.append({"image": name, "pixels": pixels, "oa": None if np.isnan(oa) else round(float(oa) * 100, 3)})
            if progress:
                progress(name, done, len(items))
    if not matrix.matrix.any():
        raise DatasetLayoutError(
            f"no pixel of split {options.split!r} has a class label: every label value is the ignore index "
            f"{manifest.ignore_index} or outside 0..{len(names) - 1}",
            path=options.data,
            hint="check the labels, or prepare the dataset again",
        )
    scores = matrix.scores(names, [c.in_mean for c in manifest.classes])
    return EvalResult(
        dataset=manifest.dataset,
        split=options.split,
        labels=kind,
        scores=scores,
        matrix=matrix.matrix.copy(),
        images=rows,
        model=f"{runner.card.arch}-{runner.card.backbone} ({runner.card.sha256[:12]})",  # an ONNX file's hash
        settings=f"{runner.description}; {describe_precision(runner)}; tiles {tiling.tile}, blend {tiling.blend}",
    )

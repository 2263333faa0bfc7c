"""Raster sinks: GIS-ready, cloud-optimised GeoTIFFs written strip by strip.

Strips stream into a tiled intermediate GeoTIFF beside the output (ZSTD level 1: cheap
while the network runs). ``close`` builds overviews there (``mode`` for the class map: the
majority class, right for categories; ``average`` for probability bands) and copies the
file with its overviews into the COG layout, DEFLATE-compressed on every core; GDAL's COG
driver would buffer the whole raster in memory, so the GTiff driver's
``COPY_SRC_OVERVIEWS`` is used. Every output keeps the input's CRS, transform and size,
has nodata 255, and carries provenance tags.

* :func:`class_raster`: uint8 class ids with a palette of the classes' colours and the
  class names in the band metadata; delivered with its style beside it (a QML QGIS applies,
  and GDAL's PAM sidecar with category names and an attribute table: :mod:`aerialseg.styles`).
* :func:`probability_raster`: one band per class, probability x 254 (GDAL scale 1/254).
* :func:`uncertainty_raster`: confidence (top probability), margin (top minus second) and
  normalised entropy, each x 254.

:func:`raster_sinks` opens the sinks of one run behind write-then-rename, each output locked
for the run (:func:`aerialseg.journal.output_lock`: a second run writing it is refused);
:func:`assemble_bands` streams rasters of consecutive bands of rows (a cluster's parts of one
raster) into one output through the same sink, so they come out as ``predict`` writes them.

Every write goes through :func:`aerialseg.raster.writing`: a full disk or any failed write
is one line naming the output the user asked for (not its temporary name), and the
intermediate file of a sink whose write failed is deleted, never kept for a resume (some of
its blocks may be missing).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_output
from .blend import Strip
from .card import ModelCard
from .conventions import CLASS_NAMES_TAG, NODATA_CLASS, PROBABILITY_NODATA, PROBABILITY_SCALE, class_tag
from .errors import OutputWriteError
from .journal import output_lock, partial_paths
from .raster import open_raster, read_bands, writing
from .styles import ClassStyle, paletted_qml, pam_path, pam_xml, qml_path

__all__ = [
    "RasterSink",
    "raster_sinks",
    "assemble_bands",
    "SinkLayout",
    "class_raster",
    "probability_raster",
    "uncertainty_raster",
    "encode_probabilities",
    "encode_uncertainty",
    "BLOCK",
    "sidecars",
]

BLOCK = 512
_MIN_OVERVIEW = 256


@dataclass(frozen=True)
class SinkLayout:
    """What one output raster holds, band by band, and how a finished strip becomes its bands.

    ``encode`` maps a :class:`~aerialseg.blend.Strip` to ``(bands, rows, width)`` uint8.
    ``legend`` (the class raster's classes) makes a delivered raster come with its style files.
    """

    name: str
    descriptions: tuple[str, ...]
    overview_resampling: str
    encode: Callable[[Strip], np.ndarray]
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    band_tags: dict[str, str] = field(default_factory=dict)
    scale: float = 1.0
    legend: tuple[ClassStyle, ...] = ()


def class_raster(card: ModelCard) -> SinkLayout:
    """Class ids with a palette and class names."""
    colors = {i: (*c.color, 255) for i, c in enumerate(card.classes)}
    colors[NODATA_CLASS] = (0, 0, 0, 0)
    names = {class_tag(i): name for i, name in enumerate(card.class_names)}
    return SinkLayout(
        "classes",
        ("class",),
        "mode",
        lambda strip: strip.classes[None],
        colors,
        {CLASS_NAMES_TAG: json.dumps(card.class_names), **names},
        legend=tuple(ClassStyle(i, c.name, c.color) for i, c in enumerate(card.classes)),
    )


def sidecars(path: Path, layout: SinkLayout) -> dict[Path, str]:
    """The style files written beside the raster at ``path`` (none but the class raster's), with their text."""
    if not layout.legend:
        return {}
    return {qml_path(path): paletted_qml(layout.legend, NODATA_CLASS), pam_path(path): pam_xml(layout.legend)}


def probability_raster(card: ModelCard) -> SinkLayout:
    """One band per class: probability x 254."""
    return SinkLayout(
        "probabilities",
        tuple(f"p({name})" for name in card.class_names),
        "average",
        lambda strip: encode_probabilities(*_scores(strip)),
        scale=1 / PROBABILITY_SCALE,
    )


def _scores(strip: Strip) -> tuple[np.ndarray, np.ndarray]:
    """A strip's probabilities and valid mask, which the probability-based layouts need."""
    if strip.probabilities is None or strip.valid is None:
        raise ValueError("this output needs probabilities: the dense accumulator must keep them")
    return strip.probabilities, strip.valid


def uncertainty_raster(card: ModelCard) -> SinkLayout:
    """Confidence, margin and normalised entropy, each x 254."""
    return SinkLayout(
        "uncertainty",
        ("confidence", "margin", "entropy"),
        "average",
        lambda strip: encode_uncertainty(*_scores(strip)),
        scale=1 / PROBABILITY_SCALE,
    )


class RasterSink:
    """Write ``(bands, rows, width)`` uint8 strips to ``path`` through ``stream_path``.

    Call ``close()`` once on success (``cog=False``: no overviews or final copy); ``suspend()``
    keeps the intermediate file for a resume (unless a write failed), ``discard()`` deletes it,
    ``release()`` deletes it unless it was kept. ``resume=True`` reopens an existing
    intermediate file of the same size (``resumed`` tells whether that happened). ``output``
    is the file errors name: the one the user asked for, which ``path`` (a temporary name)
    becomes; by default ``path``.
    """

    _dataset: Any  # the intermediate GeoTIFF, open with rasterio

    def __init__(
        self,
        path: str | os.PathLike[str],
        stream_path: str | os.PathLike[str],
        layout: SinkLayout,
        *,
        width: int,
        height: int,
        crs: Any,
        transform: Any,
        tags: dict[str, str],
        resume: bool = False,
        cog: bool = True,
        output: str | os.PathLike[str] | None = None,
    ):
        self.cog = cog
        self.path = Path(path)
        self.output = self.path if output is None else Path(output)
        self.stream_path = Path(stream_path)
        self.layout = layout
        self.resumed = False
        self.kept = False
        self.failed = False
        if resume and self._reopen(width, height, len(layout.descriptions)):
            with self._writing():
                self._dataset.update_tags(**tags)
            return
        profile = dict(
            driver="GTiff",
            width=width,
            height=height,
            count=len(layout.descriptions),
            dtype="uint8",
            crs=crs,
            transform=transform,
            nodata=NODATA_CLASS,
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            BIGTIFF="IF_SAFER",
            interleave="band",
            # Fast compression while the network runs; the final copy compresses once, properly.
            compress="zstd",
            zstd_level=1,
        )
        self._dataset = open_raster(self.stream_path, "w", named=self.output, **profile)
        with self._writing():
            self._describe(tags)

    def _describe(self, tags: dict[str, str]) -> None:
        """The new intermediate file's palette, band descriptions, scales and tags."""
        ds, layout = self._dataset, self.layout
        if layout.colormap:
            ds.write_colormap(1, layout.colormap)
        for band, description in enumerate(layout.descriptions, start=1):
            ds.set_band_description(band, description)
        if layout.band_tags:
            ds.update_tags(1, **layout.band_tags)
        if layout.scale != 1.0:
            ds.scales = (layout.scale,) * ds.count
        ds.update_tags(**tags)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write to this sink's files (see the module docstring); a failure marks the sink failed."""
        try:
            with writing(self.output):
                yield
        except OutputWriteError:
            self.failed = True
            raise

    def _reopen(self, width: int, height: int, count: int) -> bool:

        try:
            self._dataset = open_raster(self.stream_path, "r+")
        except OutputWriteError:
            return False  # unreadable leftover: start over
        if (self._dataset.width, self._dataset.height, self._dataset.count) != (width, height, count):
            self._dataset.close()
            return False
        self.resumed = True
        return True

    def write(self, row_off: int, bands: np.ndarray) -> None:
        """Write finished rows ``(bands, rows, width)`` uint8 starting at ``row_off``."""
        from rasterio.windows import Window

        if bands.shape[1]:
            window = Window(0, row_off, bands.shape[2], bands.shape[1])
            with self._writing():
                self._dataset.write(np.ascontiguousarray(bands), window=window)

    def close(self) -> None:
        """Overviews, then the COG-layout copy to ``path``; the intermediate file is removed.

        Without ``cog`` the intermediate file itself becomes ``path`` (tiled, ZSTD, no overviews):
        for parts that are read once and assembled or compared, not delivered.
        """
        if not self.cog:
            self._close_dataset()
            os.replace(self.stream_path, self.path)
            return
        try:
            with self._writing():
                self._deliver()
        finally:
            self.discard()

    def _deliver(self) -> None:
        """Overviews in the intermediate file, then its COG-layout copy to ``path``."""
        import rasterio
        import rasterio.shutil
        from rasterio.enums import Resampling

        ds = self._dataset
        factors = []
        factor = 2
        while min(ds.width, ds.height) // factor >= _MIN_OVERVIEW:
            factors.append(factor)
            factor *= 2
        if factors:
            # GDAL warns that palette overviews are resampled from the palette-less level
            # below; with mode/nearest that is exactly what is wanted, so keep it quiet.
            gdal_log = logging.getLogger("rasterio._env")
            level = gdal_log.level
            gdal_log.setLevel(logging.ERROR)
            try:
                with rasterio.Env(CPL_LOG=os.devnull, GDAL_NUM_THREADS="ALL_CPUS"):
                    ds.build_overviews(factors, Resampling[self.layout.overview_resampling])
            finally:
                gdal_log.setLevel(level)
            ds.update_tags(ns="rio_overview", resampling=self.layout.overview_resampling)
        ds.close()
        # The network is done by now, so compression may use every core.
        rasterio.shutil.copy(
            self.stream_path,
            self.path,
            driver="GTiff",
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            compress="deflate",
            copy_src_overviews=True,
            BIGTIFF="IF_SAFER",
            num_threads="ALL_CPUS",
        )

    def suspend(self) -> None:
        """Close the intermediate file cleanly and keep it (for ``--resume``); after a failed write, delete it.

        Called while a run stops on an error: a close that fails too leaves that error to be reported.
        """
        with suppress(OutputWriteError):
            self._close_dataset()
        if self.failed:
            self.discard()
            return
        self.kept = True

    def discard(self) -> None:
        """Close and delete the intermediate file (after success or failure)."""
        with suppress(OutputWriteError):  # a file about to go need not close cleanly (a full disk)
            self._close_dataset()
        self.stream_path.unlink(missing_ok=True)
        Path(str(self.stream_path) + ".ovr").unlink(missing_ok=True)

    def release(self) -> None:
        """The end of every run: the intermediate file goes unless :meth:`suspend` kept it."""
        if not self.kept:
            self.discard()

    def _close_dataset(self) -> None:
        """Close the intermediate file, writing what GDAL still holds of it."""
        if not self._dataset.closed:
            with self._writing():
                self._dataset.close()


@contextmanager
def raster_sinks(
    rasters: Sequence[tuple[Path, SinkLayout]], *, overwrite: bool, **grid: Any
) -> Iterator[list[RasterSink]]:
    """A :class:`RasterSink` per ``(path, layout)``, each writing to a temporary file renamed into place.

    ``grid`` holds the other :class:`RasterSink` arguments (size, CRS, transform, tags, resume,
    cog), the same for every raster. When the block ends normally every sink is closed and
    renamed to its path; when it raises, no output appears and the intermediate files go,
    except those :meth:`RasterSink.suspend` kept for a resume. A delivered (``cog``) raster's
    :func:`sidecars` go the same way, renamed just before their raster, so a raster that exists
    has its style. Each path is locked first (:func:`~aerialseg.journal.output_lock`), so a run
    writing one of them already is neither disturbed nor joined: this one is refused.
    """
    with ExitStack() as stack:
        sinks = []
        styles = []
        for path, _ in rasters:
            stack.enter_context(output_lock(path))
        for path, layout in rasters:
            tmp = stack.enter_context(atomic_output(path, overwrite=overwrite))
            if grid.get("cog", True):
                for side, text in sidecars(path, layout).items():
                    styles.append((stack.enter_context(atomic_output(side, overwrite=overwrite)), text))
            sink = RasterSink(tmp, partial_paths(path)[0], layout, output=path, **grid)
            stack.callback(sink.release)
            sinks.append(sink)
        yield sinks
        for sink in sinks:
            sink.close()
        for side_tmp, text in styles:
            side_tmp.write_text(text, encoding="utf-8")


def assemble_bands(parts: Sequence[tuple[int, Path]], target: Path, layout: SinkLayout, *, overwrite: bool) -> None:
    """Stream ``(first row, raster)`` parts covering consecutive rows, in order, into ``target``.

    The parts were written by ``predict`` with ``rows=`` and ``cog=False``; the first one gives
    the georeferencing and the tags. ``target`` comes out through :func:`raster_sinks` as a
    whole-raster ``predict`` would write it: overviews, COG layout, write-then-rename.
    """
    from rasterio.windows import Window

    ordered = sorted(parts)
    with open_raster(ordered[0][1]) as first:
        crs, transform, width, tags = first.crs, first.transform, first.width, first.tags()
    with open_raster(ordered[-1][1]) as last:
        height = ordered[-1][0] + last.height
    grid = dict(width=width, height=height, crs=crs, transform=transform, tags=tags)
    with raster_sinks([(target, layout)], overwrite=overwrite, **grid) as (sink,):
        for start, part in ordered:
            with open_raster(part) as src:
                for row in range(0, src.height, BLOCK):
                    window = Window(0, row, src.width, min(BLOCK, src.height - row))
                    sink.write(start + row, read_bands(src, range(1, src.count + 1), window=window))


def cut_raster(
    source: Path,
    window: tuple[int, int, int, int],
    target: Path,
    layout: SinkLayout,
    *,
    overwrite: bool,
    tags: dict[str, str],
) -> None:
    """Stream the ``(col_off, row_off, width, height)`` window of ``source`` into ``target``, georeferenced there.

    ``source`` is a raster ``predict`` wrote (its tags are kept, ``tags`` added); ``target``
    comes out through :func:`raster_sinks` as a ``predict`` output: overviews, COG layout,
    write-then-rename. How a mosaic's map becomes one map per input file.
    """
    from rasterio.windows import Window

    col_off, row_off, width, height = window
    with open_raster(source) as src:
        grid = dict(
            width=width,
            height=height,
            crs=src.crs,
            transform=src.window_transform(Window(col_off, row_off, width, height)),
            tags=src.tags() | tags,
        )
        with raster_sinks([(target, layout)], overwrite=overwrite, **grid) as (sink,):
            for row in range(0, height, BLOCK):
                rows = min(BLOCK, height - row)
                sink.write(
                    row, read_bands(src, range(1, src.count + 1), window=Window(col_off, row_off + row, width, rows))
                )


def encode_probabilities(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(K, rows, width)`` probabilities -> uint8 x 254 with nodata 255 where not ``valid``."""
    out = np.rint(probabilities * PROBABILITY_SCALE).astype(np.uint8)
    out[:, ~valid] = PROBABILITY_NODATA
    return out


def encode_uncertainty(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Confidence, margin and entropy / ln K, ``(3, rows, width)`` uint8 x 254, nodata 255."""
    k = probabilities.shape[0]
    if k > 1:
        top2 = np.partition(probabilities, k - 2, axis=0)[k - 2 :]
        confidence, margin = top2[1], top2[1] - top2[0]
    else:
        confidence = margin = probabilities[0]
    p = np.clip(probabilities, 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0) / np.log(k) if k > 1 else np.zeros_like(confidence)
    return encode_probabilities(np.clip(np.stack([confidence, margin, entropy]), 0.0, 1.0), valid)

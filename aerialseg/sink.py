"""ClassRasterSink: the class map as a GIS-ready, cloud-optimised GeoTIFF, written strip by strip.

Strips stream into a tiled intermediate GeoTIFF beside the output (ZSTD level 1: cheap while
the network runs);
``close`` builds overviews there with ``mode`` resampling (the majority class, right for
categories; ``nearest`` via ``overview_resampling``) and copies it with its overviews into
the COG layout (GDAL's COG driver would buffer the whole raster in memory, so the GTiff
driver's ``COPY_SRC_OVERVIEWS`` is used), DEFLATE-compressed on every core. The result keeps the input's CRS, transform and
size; carries a palette, class names, nodata 255, and provenance tags.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .blend import NODATA, Strip
from .card import ModelCard
from .errors import OutputWriteError

__all__ = ["ClassRasterSink", "BLOCK"]

BLOCK = 512
_MIN_OVERVIEW = 256


class ClassRasterSink:
    """Write class strips to ``path`` through ``stream_path`` (see the module docstring).

    Call ``close()`` once on success; ``suspend()`` keeps the intermediate file for a resume,
    ``discard()`` deletes it. ``resume=True`` reopens an existing intermediate file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        stream_path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        crs: Any,
        transform: Any,
        card: ModelCard,
        tags: dict[str, str],
        overview_resampling: str = "mode",
        resume: bool = False,
    ):
        import rasterio

        self.path = Path(path)
        self.stream_path = Path(stream_path)
        self.overview_resampling = overview_resampling
        if resume:
            try:
                self._dataset = rasterio.open(self.stream_path, "r+")
                self._dataset.update_tags(**tags)
                return
            except rasterio.errors.RasterioError:
                pass  # unreadable leftover: start over
        profile = dict(
            driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs=crs, transform=transform,
            nodata=NODATA, tiled=True, blockxsize=BLOCK, blockysize=BLOCK, BIGTIFF="IF_SAFER",
            # Fast compression while the network runs; the final copy compresses once, properly.
            compress="zstd", zstd_level=1,
        )  # fmt: skip
        try:
            self._dataset = rasterio.open(self.stream_path, "w", **profile)
        except rasterio.errors.RasterioError as exc:
            raise OutputWriteError(f"cannot create ({exc})", path=self.path) from exc
        colors = {i: (*c.color, 255) for i, c in enumerate(card.classes)}
        colors[NODATA] = (0, 0, 0, 0)
        self._dataset.write_colormap(1, colors)
        self._dataset.set_band_description(1, "class")
        self._dataset.update_tags(1, CLASS_NAMES=json.dumps(card.class_names),
                                  **{f"CLASS_{i}": name for i, name in enumerate(card.class_names)})
        self._dataset.update_tags(**tags)

    def write(self, strip: Strip) -> None:
        """Write finished rows."""
        from rasterio.windows import Window

        rows = strip.classes.shape[0]
        if rows:
            window = Window(0, strip.row_off, strip.classes.shape[1], rows)
            self._dataset.write(np.ascontiguousarray(strip.classes)[None], window=window)

    def close(self) -> None:
        """Overviews, then the COG-layout copy to ``path``; the intermediate file is removed."""
        import rasterio
        import rasterio.shutil
        from rasterio.enums import Resampling

        try:
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
                        ds.build_overviews(factors, Resampling[self.overview_resampling])
                finally:
                    gdal_log.setLevel(level)
                ds.update_tags(ns="rio_overview", resampling=self.overview_resampling)
            ds.close()
            # The network is done by now, so compression may use every core.
            rasterio.shutil.copy(
                self.stream_path, self.path, driver="GTiff", tiled=True, blockxsize=BLOCK, blockysize=BLOCK,
                compress="deflate", copy_src_overviews=True, BIGTIFF="IF_SAFER", num_threads="ALL_CPUS",
            )  # fmt: skip
        finally:
            self.discard()

    def suspend(self) -> None:
        """Close the intermediate file cleanly and keep it (for ``--resume``)."""
        if not self._dataset.closed:
            self._dataset.close()

    def discard(self) -> None:
        """Close and delete the intermediate file (after success or failure)."""
        if not self._dataset.closed:
            self._dataset.close()
        self.stream_path.unlink(missing_ok=True)
        Path(str(self.stream_path) + ".ovr").unlink(missing_ok=True)

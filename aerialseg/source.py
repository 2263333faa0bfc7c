"""RasterSource: an input raster read window by window as model-ready pixels plus a validity mask.

Opening checks what can go wrong before any work: unreadable or truncated files, zero
bands, bands that cannot be mapped onto the model's, a missing CRS. Reads return float32
``(bands, h, w)`` arrays in the model's input order, scaled to [0, 1] as the card says,
and a boolean ``(h, w)`` mask of valid pixels from the file's nodata value, alpha band or
internal mask (GDAL's dataset mask: a pixel is invalid only where every band is). In
floating-point rasters a NaN or infinite value in any band read is nodata too, whatever
the file declares: GDAL's mask only knows a declared nodata value, and one NaN pixel fed
to the network would spread through its attention to the whole tile. Such pixels reach
the network as 0 and leave the output as class nodata.

Band mapping: ``bands=`` (1-based, ``--bands 4,1,2``) wins. Otherwise bands are matched by
colour interpretation (red, green, blue) or description (e.g. "NIR", "near infrared");
alpha bands are never data. If names do not settle it but the number of data bands equals
the model's, the file order is used, with a warning naming the assumption.

Resolution (``gsd=``): with ``"auto"``, an input whose pixel size differs from the card's
GSD is read through a warped view at the model's GSD (see :mod:`aerialseg.gsd`); then
``height``/``width`` are the model grid's and ``native_*`` the file's. ``"native"`` reads
the file as it is.

Scaling (``scale=`` is ``--scale``): 8-bit data is divided by the card's ``pixel_max``
(255). Other types are divided by ``scale`` when given, or by the card's ``pixel_max``
when the model was trained on such data (``pixel_max`` > 255); otherwise each band is
stretched linearly between its 2nd and 98th percentiles (measured on a decimated read of
at most 1024 x 1024 pixels, so memory stays flat, nodata and non-finite values left out)
and clipped to [0, 1].
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .card import ModelCard
from .errors import AerialsegError, AerialsegWarning, BandMismatchError, GSDMismatchError, InputRasterError
from .gsd import ModelGrid, model_grid
from .locations import RasterRef, as_input
from .raster import open_raster, read_bands, read_mask
from .tiling import Window

__all__ = ["RasterSource", "resolve_bands", "valid_pixels", "BandAssumptionWarning"]

_COLOR_CODES = {"red": "R", "green": "G", "blue": "B", "gray": "PAN"}
_DESCRIPTION_CODES = {
    "r": "R",
    "red": "R",
    "g": "G",
    "green": "G",
    "b": "B",
    "blue": "B",
    "nir": "NIR",
    "ir": "NIR",
    "infrared": "NIR",
    "near infrared": "NIR",
    "near-infrared": "NIR",
    "pan": "PAN",
    "panchromatic": "PAN",
    "dsm": "DSM",
}
_STATS_SIZE = 1024


class BandAssumptionWarning(AerialsegWarning):
    """The file's bands were taken in file order because their names did not say."""


def _band_code(colorinterp: str, description: str | None) -> str | None:
    if description and description.strip().lower() in _DESCRIPTION_CODES:
        return _DESCRIPTION_CODES[description.strip().lower()]
    return _COLOR_CODES.get(colorinterp)


def resolve_bands(
    colorinterp: list[str],
    descriptions: list[str | None],
    wanted: tuple[str, ...],
    bands: tuple[int, ...] | None,
    path: object,
) -> tuple[int, ...]:
    """1-based band indexes of the file that feed the model's ``wanted`` bands, in order (``path`` names the file)."""
    count = len(colorinterp)
    if bands:
        if len(bands) != len(wanted):
            raise BandMismatchError(
                f"--bands names {len(bands)} bands but the model reads {len(wanted)} ({'-'.join(wanted)})", path=path
            )
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise BandMismatchError(f"--bands {bad} outside the file's bands 1..{count}", path=path)
        return tuple(bands)
    data = [i + 1 for i, ci in enumerate(colorinterp) if ci != "alpha"]
    codes = {i: _band_code(colorinterp[i - 1], descriptions[i - 1]) for i in data}
    by_code: dict[str | None, int] = {}
    for i in data:
        by_code.setdefault(codes[i], i)
    if all(code in by_code for code in wanted):
        return tuple(by_code[code] for code in wanted)
    have = ", ".join(f"{i}:{codes[i] or colorinterp[i - 1]}" for i in data) or "none"
    if len(data) == len(wanted):
        warnings.warn(
            f"{path}: band names ({have}) do not identify the model's bands {'-'.join(wanted)}; "
            f"using the file order {','.join(map(str, data))} (pass --bands to choose)",
            BandAssumptionWarning,
            stacklevel=3,
        )
        return tuple(data)
    example = ",".join(str(i) for i in ([*data, *data, *data][: len(wanted)] if data else [1] * len(wanted)))
    raise BandMismatchError(
        f"the model reads {len(wanted)} bands ({'-'.join(wanted)}) but the file has {len(data)} "
        f"data band{'s' if len(data) != 1 else ''} ({have})",
        path=path,
        hint=f"pass --bands with {len(wanted)} band numbers, e.g. --bands {example}",
    )


_FLOAT32_TINY, _FLOAT32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def scale_problem(scale: float) -> str | None:
    """Why ``scale`` cannot divide the pixels, or None: it must be a positive float32 number.

    ``nan`` and ``inf`` make every pixel the same; a divisor beyond float32 (1e-50, 1e50)
    becomes 0 or inf in the float32 arithmetic and gives NaN or 0 pixels, a meaningless map.
    """
    if not (np.isfinite(scale) and scale > 0):
        return f"{scale:g} is not a positive number"
    if not _FLOAT32_TINY <= scale <= _FLOAT32_MAX:
        return f"{scale:g} is outside the 32-bit range of a divisor ({_FLOAT32_TINY:.3g} to {_FLOAT32_MAX:.3g})"
    return None


def _floating(dataset: Any, indexes: tuple[int, ...]) -> bool:  # noqa: ANN401 (a rasterio dataset)
    return any(np.dtype(dataset.dtypes[i - 1]).kind == "f" for i in indexes)


def valid_pixels(dataset: Any, indexes: tuple[int, ...], **options: Any) -> np.ndarray:  # noqa: ANN401
    """Valid mask ``(h, w)`` of ``dataset`` read with ``options`` (``window``, ``out_shape=(h, w)`` ...).

    GDAL's dataset mask, and in floating-point bands finite values in every band of
    ``indexes`` (see the module docstring): what :meth:`RasterSource.read` calls valid.
    """
    valid = read_mask(dataset, **options) > 0
    if _floating(dataset, indexes):
        if "out_shape" in options:
            options = {**options, "out_shape": (len(indexes), *options["out_shape"])}
        valid &= np.isfinite(read_bands(dataset, indexes, **options)).all(axis=0)
    return valid


@dataclass(frozen=True)
class Scaling:
    """``clip((x - offset) / divisor, 0, 1)`` per band (offset, divisor shaped (bands, 1, 1))."""

    offset: np.ndarray
    divisor: np.ndarray
    clip: bool
    rule: str


class RasterSource:
    """An open input raster (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        path: str | os.PathLike[str] | RasterRef,
        card: ModelCard,
        *,
        bands: tuple[int, ...] | None = None,
        scale: float | None = None,
        allow_no_crs: bool = False,
        gsd: str = "auto",
    ):
        self.path = as_input(path)
        self._dataset = open_raster(self.path, NUM_THREADS="ALL_CPUS")
        try:
            self._check(allow_no_crs)
            ds = self._dataset
            self.indexes = resolve_bands(
                [ci.name for ci in ds.colorinterp], list(ds.descriptions), card.bands, bands, self.path
            )
            self.scaling = self._scaling(card, scale)
            ds = self._dataset
            self.grid = model_grid(ds.crs, ds.transform, ds.height, ds.width, card.gsd_m) if gsd == "auto" else None
        except GSDMismatchError as exc:
            self._dataset.close()
            raise GSDMismatchError(exc.message, path=self.path, hint=exc.hint) from exc
        except BaseException:
            self._dataset.close()
            raise
        ds = self._dataset
        self.native_height, self.native_width = ds.height, ds.width
        self.crs, self.transform = ds.crs, ds.transform
        self._floating = _floating(ds, self.indexes)
        self._reader = ds if self.grid is None else self._warped(self.grid)
        self.height, self.width = self._reader.height, self._reader.width
        self._mask_reader: Any = None  # a second rasterio handle, opened by the writer thread's first call

    def _check(self, allow_no_crs: bool) -> None:
        ds = self._dataset
        if ds.count == 0:
            inner = ", ".join(ds.subdatasets[:3])
            raise InputRasterError(
                "has no bands", path=self.path, hint=f"open one of its subdatasets: {inner}" if inner else None
            )
        if ds.crs is None and not allow_no_crs:
            raise InputRasterError(
                "has no CRS, so the output would not line up with any map",
                path=self.path,
                hint="georeference it first, or pass --allow-no-crs to predict in pixel space",
            )
        if np.dtype(ds.dtypes[0]).kind == "c":
            raise InputRasterError(f"has complex pixels ({ds.dtypes[0]})", path=self.path)

    def _scaling(self, card: ModelCard, scale: float | None) -> Scaling:
        n = len(self.indexes)
        dtype = np.dtype(self._dataset.dtypes[self.indexes[0] - 1])
        ones = np.ones((n, 1, 1), np.float32)
        if scale is not None:
            problem = scale_problem(scale)
            if problem:
                raise AerialsegError(
                    f"scale {problem}",
                    path=self.path,
                    hint="pass the divisor that maps the pixels to [0, 1], e.g. --scale 4095 for 12-bit data",
                )
            return Scaling(0 * ones, scale * ones, True, f"divide by {scale:g} (--scale)")
        if dtype == np.uint8 or card.pixel_max > 255:
            return Scaling(0 * ones, card.pixel_max * ones, card.pixel_max > 255, f"divide by {card.pixel_max:g}")
        low, high = self._percentiles()
        return Scaling(low, np.maximum(high - low, 1e-6), True, "per-band 2-98 percentile stretch")

    def _percentiles(self) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.enums import Resampling

        ds = self._dataset
        factor = max(1, int(np.ceil(max(ds.height, ds.width) / _STATS_SIZE)))
        shape = (len(self.indexes), max(1, ds.height // factor), max(1, ds.width // factor))
        sample = read_bands(ds, self.indexes, out_shape=shape, resampling=Resampling.nearest, masked=True)
        low, high = [], []
        for band in sample:
            values = band.compressed()
            values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            values = values if values.size else np.zeros(1)
            low.append(np.percentile(values, 2))
            high.append(np.percentile(values, 98))
        as_array = lambda v: np.asarray(v, np.float32).reshape(-1, 1, 1)  # noqa: E731
        return as_array(low), as_array(high)

    def _warped(self, grid: ModelGrid):  # noqa: ANN202 (rasterio WarpedVRT)
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        resampling = Resampling.average if grid.factor > 1 else Resampling.bilinear
        ds = self._dataset
        return WarpedVRT(
            ds, crs=ds.crs, transform=grid.transform, width=grid.width, height=grid.height, resampling=resampling
        )

    def native_valid(self, row_off: int, rows: int) -> np.ndarray:
        """Validity ``(rows, native_width)`` at the input's own resolution (own file handle: writer thread)."""
        from rasterio.windows import Window as RioWindow

        if self._mask_reader is None:
            self._mask_reader = open_raster(self.path)
        return valid_pixels(self._mask_reader, self.indexes, window=RioWindow(0, row_off, self.native_width, rows))

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Model-ready pixels ``(bands, h, w)`` float32 and the valid mask ``(h, w)`` bool."""
        from rasterio.windows import Window as RioWindow

        rio_window = RioWindow(window.col_off, window.row_off, window.width, window.height)
        try:
            data = read_bands(self._reader, self.indexes, window=rio_window).astype(np.float32)
            valid = read_mask(self._reader, window=rio_window) > 0
        except InputRasterError as exc:  # named after the file, not a warped view of it
            raise InputRasterError(f"{exc.message} at {window}", path=self.path) from exc
        if self._floating:
            finite = np.isfinite(data)
            valid &= finite.all(axis=0)
            data[~finite] = 0.0
        s = self.scaling
        data = (data - s.offset) / s.divisor if s.offset.any() else data / s.divisor
        if s.clip:
            np.clip(data, 0.0, 1.0, out=data)
        return data, valid

    def close(self) -> None:
        """Close the file (and the warped view and mask handle, if any)."""
        for handle in (self._reader, self._mask_reader, self._dataset):
            if handle is not None and not handle.closed:
                handle.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

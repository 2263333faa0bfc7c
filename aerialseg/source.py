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
(255). A model read from Deepness metadata takes other types only with ``scale``. Other
types are divided by ``scale`` when given, or by the card's ``pixel_max`` when the model
was trained on such data (``pixel_max`` > 255); otherwise each band is stretched linearly
between its 2nd and 98th percentiles (measured on a decimated read of at most 1024 x 1024
pixels, so memory stays flat, nodata and non-finite values left out) and clipped to [0, 1].
The arithmetic is float64 whatever the file's type: a float64 raster's values (up to
1.8e308) and their range overflow float32, which would turn valid pixels into infinities,
then nodata, and report an all-nodata map as a success. A scaling
that still cannot show the network anything (a band of many values that the stretch or
divisor turns into at most two grey levels: values beyond float64's range, or a fill value
such as -3.4e38 taken for data) is refused in one line naming the band's value range.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .card import ModelCard, scale_problem
from .errors import AerialsegError, AerialsegWarning, BandMismatchError, GSDMismatchError, InputRasterError
from .gsd import ModelGrid, model_grid
from .locations import RasterRef, as_input
from .raster import open_raster, read_bands, read_mask
from .tiling import TilePlan, Window

if TYPE_CHECKING:
    from .options import PredictOptions

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


def _stretch(sample: list[np.ndarray]) -> Scaling:
    """The per-band 2-98 percentile stretch of ``sample`` (see :meth:`RasterSource._sample`), in float64."""
    low, high = (
        np.array([np.percentile(values if values.size else np.zeros(1), q) for values in sample]).reshape(-1, 1, 1)
        for q in (2, 98)
    )
    with np.errstate(over="ignore"):  # a range beyond float64: an infinite divisor, refused as flattening
        divisor = np.maximum(high - low, 1e-6)
    return Scaling(low, divisor, True, "per-band 2-98 percentile stretch")


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


_DISTINCT_VALUES = 16
"""A band with at least this many distinct values must keep more than two grey levels when scaled."""


@dataclass(frozen=True)
class Scaling:
    """``clip((x - offset) / divisor, 0, 1)`` per band (offset, divisor float64 shaped (bands, 1, 1))."""

    offset: np.ndarray
    divisor: np.ndarray
    clip: bool
    rule: str

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Finite pixels ``(bands, h, w)`` of any type scaled in float64 (see the module docstring), as float32."""
        with np.errstate(over="ignore"):  # a value far beyond the stretch's range: clipped to 1 below
            scaled = (data.astype(np.float64) - self.offset) / self.divisor
        if self.clip:
            np.clip(scaled, 0.0, 1.0, out=scaled)
        return scaled.astype(np.float32)


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
            if card.gsd_m is None and card.origin == "deepness" and gsd == "auto":
                warnings.warn(
                    f"{self.path}: the model's metadata states no resolution; predicting at the input's own pixel size",
                    AerialsegWarning,
                    stacklevel=2,
                )
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
        dtype = np.dtype(self._dataset.dtypes[self.indexes[0] - 1])
        ones = np.ones((len(self.indexes), 1, 1), np.float64)
        if scale is None and dtype == np.uint8:  # 8-bit data over the card's maximum: no sample to read
            return Scaling(0 * ones, card.pixel_max * ones, card.pixel_max > 255, f"divide by {card.pixel_max:g}")
        if scale is None and card.origin == "deepness":  # never guess: Deepness divides uint16 by 255 (its #219)
            raise AerialsegError(
                f"holds {dtype} pixels; this Deepness model reads 8-bit pixels divided by 255",
                path=self.path,
                hint="pass --scale with the divisor that maps them to [0, 1] as in its training "
                "(e.g. --scale 65535 for full-range 16-bit data)",
            )
        sample = self._sample()
        if scale is not None:
            problem = scale_problem(scale)
            if problem:
                raise AerialsegError(
                    f"scale {problem}",
                    path=self.path,
                    hint="pass the divisor that maps the pixels to [0, 1], e.g. --scale 4095 for 12-bit data",
                )
            scaling = Scaling(0 * ones, scale * ones, True, f"divide by {scale:g} (--scale)")
        elif card.pixel_max > 255:
            scaling = Scaling(0 * ones, card.pixel_max * ones, True, f"divide by {card.pixel_max:g}")
        else:
            scaling = _stretch(sample)
        self._refuse_flattening(scaling, sample)
        return scaling

    def _sample(self) -> list[np.ndarray]:
        """Each band's valid, finite values on a decimated read of at most ``_STATS_SIZE`` pixels a side."""
        from rasterio.enums import Resampling

        ds = self._dataset
        factor = max(1, int(np.ceil(max(ds.height, ds.width) / _STATS_SIZE)))
        shape = (len(self.indexes), max(1, ds.height // factor), max(1, ds.width // factor))
        sample = read_bands(ds, self.indexes, out_shape=shape, resampling=Resampling.nearest, masked=True)
        return [np.ma.masked_invalid(band).compressed().astype(np.float64) for band in sample]

    def _refuse_flattening(self, scaling: Scaling, sample: list[np.ndarray]) -> None:
        """Refuse a scaling that turns a band of many values into at most two grey levels (module docstring)."""
        for band, values, divisor in zip(self.indexes, sample, scaling.divisor.ravel(), strict=True):
            if np.unique(values).size < _DISTINCT_VALUES:
                continue
            scaled = scaling.apply(values.reshape(1, 1, -1)) if np.isfinite(divisor) else np.zeros(1)
            if np.unique(np.rint(scaled * 255)).size <= 2:
                raise AerialsegError(
                    f"band {band} holds values from {values.min():.3g} to {values.max():.3g}: scaled for the network "
                    f"({scaling.rule}) they become at most two grey levels, nothing it could classify",
                    path=self.path,
                    hint="declare the file's fill value as nodata (gdal_edit.py -a_nodata VALUE), or pass --scale "
                    "with the divisor that maps the pixels to [0, 1]",
                )

    def check_memory(self, plan: TilePlan, card: ModelCard, options: PredictOptions) -> None:
        """Refuse, before any work, a raster that ``plan`` cannot predict in the memory this machine has available.

        The estimate is doctor's (:func:`aerialseg.diagnosis.memory_estimate`): predict stops in
        one line where it would otherwise grow until the system kills it.
        """
        from .diagnosis import memory_estimate, memory_problem  # the doctor imports this module

        estimate = memory_estimate(self.path, card, plan, options, resampled=self.grid is not None)
        problem = memory_problem(estimate, plan, options, resampled=self.grid is not None)
        if problem is not None and problem.level == "error":
            raise AerialsegError(problem.message, path=self.path, hint=problem.fix)

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
            data = read_bands(self._reader, self.indexes, window=rio_window)
            valid = read_mask(self._reader, window=rio_window) > 0
        except InputRasterError as exc:  # named after the file, not a warped view of it
            raise InputRasterError(f"{exc.message} at {window}", path=self.path) from exc
        if self._floating:
            finite = np.isfinite(data)
            valid &= finite.all(axis=0)
            data[~finite] = 0.0
        return self.scaling.apply(data), valid

    def close(self) -> None:
        """Close the file (and the warped view and mask handle, if any)."""
        for handle in (self._reader, self._mask_reader, self._dataset):
            if handle is not None and not handle.closed:
                handle.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

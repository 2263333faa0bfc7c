"""Ground sampling distance: the input's pixel size in metres, and the grid the model should see.

A network trained at 9 cm sees a 5 cm orthophoto's buildings 1.8 times too large. When the
input's pixel size differs from the card's ``gsd_m`` by more than ``TOLERANCE``, the
pipeline reads the input through a warped view at the model's GSD (same CRS and extent,
``average`` resampling when shrinking, ``bilinear`` when enlarging), predicts there, and
resamples the class probabilities back to the input grid before taking the argmax, so the
map still aligns pixel for pixel with the orthophoto.

Pixel sizes are measured on the ground at the raster's centre (WGS 84 ellipsoid), whatever
the CRS's units, which is what matters for the few-kilometre extents of aerial orthophotos.
A georeferencing that puts that pixel outside the CRS's domain (10,000 km pixels in UTM,
latitudes past the pole) cannot be measured: :class:`~aerialseg.errors.GSDMismatchError`
says so with the pixel size in CRS units, and ``--gsd native`` predicts without measuring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import GSDMismatchError

__all__ = ["pixel_size_m", "ModelGrid", "model_grid", "TOLERANCE", "MAX_FACTOR"]

TOLERANCE = 0.10
MAX_FACTOR = 8.0
_WGS84_A = 6378137.0
_WGS84_E2 = 6.69437999014e-3


def pixel_size_m(crs: Any, transform: Any, height: int, width: int = 1) -> tuple[float, float] | None:
    """``(x, y)`` ground size in metres of the raster's central pixel, or None without a CRS.

    The pixel's corners are taken to longitude/latitude and measured on the ellipsoid, so
    the answer is right for geographic CRSs and for projections whose units are not ground
    metres away from their standard lines (Web Mercator: 0.6 "m" pixels at 38 N are 0.47 m).
    Raises :class:`~aerialseg.errors.GSDMismatchError` (no path: the caller names the file)
    when the pixel cannot be measured (see the module docstring).
    """
    from rasterio.warp import transform as warp_points

    if crs is None:
        return None
    col, row = width / 2, height / 2
    corners = [transform @ (col, row), transform @ (col + 1, row), transform @ (col, row + 1)]
    try:
        lons, lats = warp_points(crs, "EPSG:4326", [c[0] for c in corners], [c[1] for c in corners])
    except Exception as exc:  # PROJ's refusals come as rasterio's private CPLE_* types
        raise _unmeasurable(crs, transform, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    if not all(math.isfinite(v) for v in (*lons, *lats)) or max(abs(v) for v in lats) > 90:
        raise _unmeasurable(crs, transform, "it lies outside the CRS's area")
    latitude = math.radians(lats[0])
    sin2 = math.sin(latitude) ** 2
    # radii of curvature of the WGS 84 ellipsoid: meridian (north-south) and prime vertical (east-west)
    meridian = _WGS84_A * (1 - _WGS84_E2) / (1 - _WGS84_E2 * sin2) ** 1.5
    normal = _WGS84_A / math.sqrt(1 - _WGS84_E2 * sin2)

    def metres(i: int) -> float:
        north = math.radians(lats[i] - lats[0]) * meridian
        east = math.radians(lons[i] - lons[0]) * normal * math.cos(latitude)
        return math.hypot(north, east)

    size = metres(1), metres(2)
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise _unmeasurable(crs, transform, "its corners do not map to distinct places on the ground")
    return size


def _unmeasurable(crs: Any, transform: Any, why: str) -> GSDMismatchError:
    """The error for a pixel whose ground size cannot be measured, with its size as the georeferencing gives it."""
    return GSDMismatchError(
        f"cannot measure the ground pixel size of {_nominal_size(crs, transform)} ({why})",
        hint="check the georeferencing (gdalinfo), or pass --gsd native to predict at the file's own resolution",
    )


def _nominal_size(crs: Any, transform: Any) -> str:
    """The pixel size in the CRS's units: degrees, metres, or units aerialseg cannot name."""
    from rasterio.errors import CRSError

    x, y = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        return f"{x:.4g} x {y:.4g} degrees"
    try:
        factor = float(crs.linear_units_factor[1])
    except CRSError:  # a CRS without linear units
        return f"{x:.4g} x {y:.4g} CRS units"
    return f"{x * factor:.4g} x {y * factor:.4g} m"


@dataclass(frozen=True)
class ModelGrid:
    """The input's extent re-gridded at the model's GSD."""

    height: int
    width: int
    transform: Any
    input_gsd_m: float
    model_gsd_m: float

    @property
    def factor(self) -> float:
        """Model pixel size over input pixel size (> 1: the model sees fewer, larger pixels)."""
        return self.model_gsd_m / self.input_gsd_m


def model_grid(crs: Any, transform: Any, height: int, width: int, model_gsd_m: float | None) -> ModelGrid | None:
    """The grid to predict on, or None when the input is already at the model's GSD (or either is unknown)."""
    from rasterio.transform import Affine

    if not model_gsd_m:
        return None
    size = pixel_size_m(crs, transform, height, width)
    if size is None:
        return None
    input_gsd = math.sqrt(size[0] * size[1])
    if abs(input_gsd / model_gsd_m - 1) <= TOLERANCE:
        return None
    factor = model_gsd_m / input_gsd
    if not 1 / MAX_FACTOR <= factor <= MAX_FACTOR:
        raise GSDMismatchError(
            f"pixel size {input_gsd:.3g} m is {input_gsd / model_gsd_m:.3g} times the model's {model_gsd_m:.3g} m, "
            f"beyond the {MAX_FACTOR:g}x the pipeline resamples",
            hint="use a model trained near this resolution, or pass --gsd native to predict anyway",
        )
    new_height = max(1, round(height / factor))
    new_width = max(1, round(width / factor))
    new_transform = transform @ Affine.scale(width / new_width, height / new_height)
    return ModelGrid(new_height, new_width, new_transform, input_gsd, model_gsd_m)

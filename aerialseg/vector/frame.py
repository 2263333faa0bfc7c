"""Coordinates: pixel -> metric frame (for clean-up and measurement) -> the raster's CRS.

Projected CRSs are measured in their own plane (units converted to metres), as GIS users
expect for areas and lengths at orthophoto scale. A geographic CRS (degrees) is measured
in the UTM zone of the raster's centre, and results go back to longitude/latitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputRasterError

if TYPE_CHECKING:
    from shapely import Geometry

__all__ = ["Frame"]


@dataclass
class Frame:
    """Maps polygons between pixel space, a metric plane and the output CRS."""

    transform: Any
    crs: Any
    pixel_m: float  # ground size of a pixel (geometric mean of x and y), metres
    _to_metric: Any = None  # pyproj transformers for a geographic CRS, else None
    _from_metric: Any = None
    _unit: float = 1.0  # metres per CRS unit of a projected CRS

    @classmethod
    def for_raster(cls, path: object, crs: Any, transform: Any, height: int, width: int) -> Frame:
        """The frame of a ``height`` x ``width`` raster at ``path``; refused without a CRS (nothing to measure in)."""
        from ..errors import GSDMismatchError
        from ..gsd import pixel_size_m

        try:
            size = pixel_size_m(crs, transform, height, width)  # None without a CRS
        except GSDMismatchError as exc:  # its hint is predict's (--gsd native): the georeferencing is the fix here
            raise InputRasterError(exc.message, path=path, hint="check the georeferencing (gdalinfo)") from exc
        if size is None:
            raise InputRasterError(
                "class raster has no CRS, so object sizes cannot be measured",
                path=path,
                hint="assign one first (gdal_edit.py -a_srs EPSG:xxxx)",
            )
        sx, sy = size
        frame = cls(transform, crs, float(np.sqrt(sx * sy)))
        if crs.is_geographic:
            from pyproj import CRS, Transformer

            lon, lat = transform @ (width / 2, height / 2)
            zone = int((lon + 180) // 6) % 60 + 1
            utm = CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
            frame._to_metric = Transformer.from_crs(crs.to_wkt(), utm, always_xy=True)
            frame._from_metric = Transformer.from_crs(utm, crs.to_wkt(), always_xy=True)
        else:
            frame._unit = float(crs.linear_units_factor[1])
        return frame

    def pixel_to_world(self, geometry: Geometry) -> Geometry:
        """Pixel-space geometry (x = column, y = row) in the raster's CRS."""
        import shapely

        t = self.transform
        matrix = np.array([[t.a, t.d], [t.b, t.e]])
        return shapely.transform(geometry, lambda xy: xy @ matrix + (t.c, t.f))

    def world_to_pixel(self, geometry: Geometry) -> Geometry:
        """CRS geometry in pixel space (x = column, y = row): :meth:`pixel_to_world` undone."""
        import shapely

        t = ~self.transform
        matrix = np.array([[t.a, t.d], [t.b, t.e]])
        return shapely.transform(geometry, lambda xy: xy @ matrix + (t.c, t.f))

    def to_metric(self, geometry: Geometry) -> Geometry:
        """CRS geometry in ground metres."""
        return _convert(geometry, self._to_metric, self._unit, inverse=False)

    def from_metric(self, geometry: Geometry) -> Geometry:
        """Metric geometry back in the raster's CRS."""
        return _convert(geometry, self._from_metric, self._unit, inverse=True)


def _convert(geometry: Geometry, transformer: Any, unit: float, inverse: bool) -> Geometry:
    """``geometry`` through a pyproj ``transformer`` if there is one, else times (or over) ``unit``."""
    import shapely

    if transformer is not None:
        return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    if unit == 1.0:
        return geometry
    return shapely.transform(geometry, lambda xy: xy / unit if inverse else xy * unit)

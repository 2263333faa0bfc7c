"""Streaming vectorization vs polygonising the whole class raster at once: speed and peak memory.

Run by hand, not by CI:
    python benchmarks/vectorize.py --sizes 4096 16384

Builds class rasters (ISPRS classes, 10 cm) whose buildings are the real SpaceNet footprints
from ../shared/data (rasterised at 0.5 m, enlarged 4x, mirrored to the requested size) and
whose cars are rotated 4.5 x 1.8 m rectangles in rows along streets, then for each size runs,
each in a fresh process (so peak RSS is that run's alone):

* ``whole``: ``rasterio.features.shapes`` on the full array, geometries built with shapely
  (what peers do; no clean-up, no attributes);
* ``stream exact``: ``aerialseg.vectorize`` with clean-up and car instances off (the same
  polygons);
* ``stream default``: ``aerialseg.vectorize`` as a user runs it: the default clean-up (min
  area, holes, simplification), touching cars split into single cars, all attributes.

Two maps: ``realistic`` (above) and ``dense`` (random classes on a 16-pixel grid with
wobbling edges: tens of thousands of small building and car regions, the worst case). Peak
memory is the measuring process's, and, in ``+ worker MB``, that of the process aerialseg
polygonises strips in (an upper bound: it counts the pages shared when it started).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from _child import run_child
from _data import class_raster_profile, potsdam_class_names

ROOT = Path(__file__).resolve().parents[1]
SPACENET = ROOT.parent / "shared" / "data" / "spacenet-solaris"

CHILD = r"""
import json, sys, time
import numpy as np
mode, raster, out = sys.argv[1:4]
start = time.perf_counter()
if mode == "whole":
    import rasterio, shapely
    from rasterio.features import shapes
    with rasterio.open(raster) as src:
        array = src.read(1)
        polygons = [shapely.geometry.shape(g) for g, v in shapes(array, mask=np.isin(array, [1, 4]), connectivity=4,
                                                                  transform=src.transform)]
    count = len(polygons)
else:
    from aerialseg.vector import VectorizeOptions, vectorize
    exact = dict(min_area_m2=0, fill_holes_m2=0, simplify=0, car_instances=False)  # the raster's own regions
    options = VectorizeOptions(overwrite=True, **({} if mode == "stream-default" else exact))
    count = sum(vectorize(raster, out, options).counts.values())
seconds = time.perf_counter() - start
import resource  # the polygonising process (stream modes): its peak, counted with the pages it shared at start
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(dict(seconds=seconds, polygons=count, rss_mb=peak_rss_mb(), worker_mb=worker)))
"""


def _profile(size: int) -> dict:
    """A tiled 10 cm class raster of ``size`` x ``size`` in UTM."""
    from rasterio.transform import from_origin

    return class_raster_profile(size, from_origin(500000, 5000000, 0.1, 0.1))


def make_classes(size: int, folder: Path) -> Path:
    """A 10 cm class raster of ``size`` x ``size``: real building footprints, rows of parked cars."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize

    path = folder / f"classes_{size}.tif"
    if path.exists():
        return path
    labels = gpd.read_file(SPACENET / "geotiff_labels.geojson")
    with rasterio.open(SPACENET / "sample_geotiff.tif") as src:
        scale = 4  # 0.5 m footprints drawn at 0.125 m pixels
        fine = src.transform * rasterio.Affine.scale(1 / scale)
        base = rasterize(
            ((g, 1) for g in labels.geometry),
            out_shape=(src.height * scale, src.width * scale),
            transform=fine,
            fill=0,
            dtype="uint8",
        )
    period = np.block([[base, base[:, ::-1]], [base[::-1], base[::-1, ::-1]]])
    rng = np.random.default_rng(0)
    profile = _profile(size)
    car = np.array([[-22, -9], [22, -9], [22, 9], [-22, 9]], float)  # 4.4 x 1.8 m at 0.1 m
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(1, CLASS_NAMES=json.dumps(potsdam_class_names()))
        for row in range(0, size, 1024):
            rows = np.arange(row, min(row + 1024, size))
            block = period[rows % period.shape[0]][:, np.arange(size) % period.shape[1]]
            block = np.where(block == 1, 1, 2 + ((rows[:, None] // 300 + np.arange(size)[None] // 300) % 2))
            block[(rows % 400 >= 150) & (rows % 400 < 210)] = np.where(
                block[(rows % 400 >= 150) & (rows % 400 < 210)] == 1, 1, 0
            )  # streets of impervious surface
            shapes = []
            for street in range(row - row % 400 + 160, row + 1024, 400):
                for x in range(int(rng.integers(0, 80)), size, int(rng.integers(55, 90))):
                    if rng.random() < 0.6:
                        angle = math.radians(rng.normal(0, 6))
                        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
                        corners = car @ turn.T + (x, street + 20 * (x // 90 % 2))
                        shapes.append(
                            ({"type": "Polygon", "coordinates": [corners.tolist() + [corners[0].tolist()]]}, 4)
                        )
            if shapes:
                cars = rasterize(
                    shapes,
                    out_shape=(len(rows), size),
                    transform=rasterio.Affine.translation(0, row),
                    fill=0,
                    dtype="uint8",
                )
                block[(cars == 4) & (block != 1)] = 4
            dst.write(block.astype(np.uint8), 1, window=rasterio.windows.Window(0, row, size, len(rows)))
    return path


def make_dense(size: int, folder: Path) -> Path:
    """A 10 cm class raster of ``size`` x ``size`` as busy as a map gets: smoothed blocky noise in the six classes.

    Random classes on a 16-pixel grid, its block edges displaced by a few pixels of smooth
    noise, give a few tens of thousands of building and car regions at 8192² (the worst case
    for a vectorizer: many small regions, no large empty areas).
    """
    import rasterio

    path = folder / f"dense_{size}.tif"
    if path.exists():
        return path
    rng = np.random.default_rng(1)
    grid = rng.integers(0, 6, size=(size // 16 + 2, size // 16 + 2), dtype=np.uint8)
    wobble = rng.integers(-4, 5, size=(2, size // 64 + 2))
    profile = _profile(size)
    columns = np.arange(size)
    shifted_columns = np.clip((columns + np.repeat(wobble[1], 64)[:size]) // 16, 0, grid.shape[1] - 1)
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(1, CLASS_NAMES=json.dumps(potsdam_class_names()))
        for row in range(0, size, 1024):
            rows = np.arange(row, min(row + 1024, size))
            shifted_rows = np.clip((rows + np.repeat(wobble[0], 64)[rows]) // 16, 0, grid.shape[0] - 1)
            block = grid[shifted_rows][:, shifted_columns]
            dst.write(block, 1, window=rasterio.windows.Window(0, row, size, len(rows)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--modes", nargs="+", default=["whole", "stream-exact", "stream-default"])
    parser.add_argument("--maps", nargs="+", default=["realistic", "dense"], choices=["realistic", "dense"])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aerialseg-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in args.maps:
        for size in args.sizes:
            raster = (make_classes if kind == "realistic" else make_dense)(size, args.workdir)
            for mode in args.modes:
                out = args.workdir / f"objects_{kind}_{size}.gpkg"
                r = run_child(CHILD, mode, raster, out, label=f"{mode} {kind} {size}")
                rate = r["polygons"] / r["seconds"]
                rows.append((kind, size, mode, r["polygons"], r["seconds"], rate, r["rss_mb"], r["worker_mb"]))
                print(f"done {mode} {kind} {size}", file=sys.stderr)
    print(f"\n{'map':<10} {'size':>6} {'mode':<15} {'polygons':>9} {'seconds':>8}", end="")
    print(f" {'polygons/s':>11} {'peak RSS MB':>12} {'+ worker MB':>12}")
    for kind, size, mode, count, seconds, rate, rss, worker in rows:
        print(f"{kind:<10} {size:>6} {mode:<15} {count:>9} {seconds:>8.1f} {rate:>11.0f} {rss:>12.0f} {worker:>12.0f}")


if __name__ == "__main__":
    main()

"""Cars counted one by one on car parks of real car shapes: split instances against connected components.

Run by hand, not by CI (it reads the ISPRS label patches in ../shared/data, which stay there):
    python benchmarks/cars.py --gsd 0.05 0.1

Car shapes are the car regions of the ISPRS Potsdam (5 cm) and Vaihingen (9 cm) label
patches, grown by the 3-pixel boundary band those labels leave out (cars the patch's edge
cuts are left out) and rotated so their long axis is horizontal. Each car park (per GSD) has
rows of cars side by side, rows nose to nose, rows parked at 45 degrees and queues end to
end; headings vary by a few degrees, and the gap to the next car is 0 to 3 pixels at random.
The class map is the truth blurred (Gaussian, sigma 1.5 pixels, as a network's scores are)
and cut at 0.5, so cars up to 2 pixels apart merge. ``aerialseg.vectorize`` turns it into
objects with car instances on (the default) and off (connected components); a true car is
recovered when one object overlaps it with IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import class_raster_profile, potsdam_class_names

ROOT = Path(__file__).resolve().parents[1]
ISPRS = ROOT.parent / "shared" / "data" / "isprs-mmseg-fixtures"
PATCHES = {"potsdam": ("2_10_0_0_512_512.png", 0.05), "vaihingen": ("area1_0_0_512_512.png", 0.09)}
CAR = 5  # the mmseg annotation's car (0 = boundary band, 1..6 = classes)
KINDS = ("side", "nose", "queue", "angled", "side", "nose", "queue", "angled")
"""The rows of a car park, top to bottom."""


def car_shapes(isprs: Path = ISPRS) -> list:
    """The real car outlines of the label patches in ``isprs``, in metres, centred, long axis along x."""
    import rasterio
    import shapely
    from rasterio.features import shapes

    found = []
    for name, (patch, gsd) in PATCHES.items():
        with rasterio.open(isprs / name / "ann" / patch) as src:
            ann = src.read(1)
        for geojson, _ in shapes(ann, mask=ann == CAR, connectivity=4):
            car = shapely.affinity.scale(shapely.geometry.shape(geojson), gsd, gsd, origin=(0, 0))
            car = car.buffer(3 * gsd, join_style="mitre")  # the 3-pixel boundary band the labels leave out
            box = shapely.oriented_envelope(car)
            sides = sorted(np.hypot(*np.diff(np.asarray(box.exterior.coords)[:3], axis=0).T))
            if sides[0] < 1.5 or sides[1] < 3.4:  # a car cut by the patch's edge
                continue
            box = shapely.oriented_envelope(car)
            corners = np.asarray(box.exterior.coords)
            a, b = corners[1] - corners[0], corners[2] - corners[1]
            side = a if np.hypot(*a) >= np.hypot(*b) else b
            angle = math.degrees(math.atan2(side[1], side[0]))
            car = shapely.affinity.rotate(car, -angle, origin=car.centroid)
            found.append(shapely.affinity.translate(car, -car.centroid.x, -car.centroid.y))
    return found


def car_park(gsd: float, shapes: list, rng: np.random.Generator, size_m: float = 120.0, kinds: tuple = KINDS) -> list:
    """Cars (metric polygons, y up) on a ``size_m`` square: rows side by side, nose to nose, angled, queues."""
    import shapely

    cars, y = [], 4.0
    for kind in kinds:
        x = 4.0
        offsets = [0.0, 4.6] if kind == "nose" else [0.0]
        heading = {"queue": 0.0, "angled": 45.0}.get(kind, 90.0)
        while x < size_m - 10:
            template = shapes[rng.integers(len(shapes))]
            car = shapely.affinity.rotate(template, heading + rng.normal(0, 3) + 180 * rng.integers(2), origin=(0, 0))
            if kind == "nose":  # the second row a little off, as parked cars are
                car = shapely.affinity.translate(car, rng.normal(0, 0.2), 0)
            gap = rng.integers(0, 4) * gsd
            x0, _, x1, _ = car.bounds
            for offset in offsets:
                cars.append(shapely.affinity.translate(car, x - x0, y + offset + 2.5))
            if kind == "angled":  # side by side along a slanted line: the stride is the width across it
                x += 1.9 / math.sin(math.radians(45.0)) + gap
            else:
                x += (x1 - x0) + gap
        y += 16.0 if kind == "nose" else 10.0
        if y > size_m - 12:
            break
    return cars


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur."""
    radius = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, out)


def run(gsd: float, shapes: list, folder: Path, strip_rows: int = 512) -> list[tuple]:
    """One car park at ``gsd``: the rows of the table (vectorized in strips of ``strip_rows``)."""
    import pyogrio
    import rasterio
    import shapely
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    from aerialseg.vector import VectorizeOptions, vectorize

    rng = np.random.default_rng(int(gsd * 1000))
    cars = car_park(gsd, shapes, rng)
    size = int(120.0 / gsd)
    transform = from_origin(500000, 5000120, gsd, gsd)
    world = [shapely.affinity.translate(c, 500000, 5000000) for c in cars]
    truth = rasterize(
        ((c, i + 1) for i, c in enumerate(world)), out_shape=(size, size), transform=transform, dtype="int32"
    )
    classes = np.where(blur((truth > 0).astype(np.float32), 1.5) >= 0.5, 4, 0).astype(np.uint8)
    raster = folder / f"carpark_{gsd}.tif"
    profile = class_raster_profile(size, transform)
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.update_tags(1, CLASS_NAMES=json.dumps(potsdam_class_names()))
    truth_polygons = [
        shapely.geometry.shape(g) for g, v in rasterio.features.shapes(truth, mask=truth > 0, transform=transform)
    ]
    rows = []
    for label, instances in (("connected components", False), ("car instances", True)):
        out = folder / f"cars_{gsd}_{instances}.gpkg"
        start = time.perf_counter()
        vectorize(
            raster,
            out,
            VectorizeOptions(
                classes=("car",),
                car_instances=instances,
                overwrite=True,
                min_area_m2=0,
                fill_holes_m2=0,
                simplify=0,
                strip_rows=strip_rows,
            ),
        )
        seconds = time.perf_counter() - start
        found = pyogrio.read_dataframe(out, layer="car")
        objects = found.geometry.values
        tree = shapely.STRtree(objects)
        recovered = 0
        for car in truth_polygons:
            hits = tree.query(car, predicate="intersects")
            best = max((car.intersection(objects[h]).area / car.union(objects[h]).area for h in hits), default=0)
            recovered += best >= 0.5
        merged = 0
        if instances:
            merged = int(found["merged"].sum())
        rows.append(
            (
                gsd,
                label,
                len(truth_polygons),
                len(objects),
                recovered / len(truth_polygons),
                (len(objects) - len(truth_polygons)) / len(truth_polygons),
                merged,
                seconds,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsd", type=float, nargs="+", default=[0.05, 0.1])
    args = parser.parse_args()
    shapes = car_shapes()
    folder = Path(tempfile.mkdtemp(prefix="aerialseg-cars-"))
    rows = [row for gsd in args.gsd for row in run(gsd, shapes, folder)]
    print(f"{len(shapes)} real car shapes\n")
    columns = ("GSD", "method", "cars", "objects", "recovered", "count error", "merged", "s")
    print("{:>5} {:<21} {:>5} {:>8} {:>10} {:>12} {:>7} {:>5}".format(*columns))
    for gsd, label, cars, objects, recovered, error, merged, seconds in rows:
        line = f"{gsd:>5} {label:<21} {cars:>5} {objects:>8} {recovered:>10.1%} {error:>+12.1%} {merged:>7}"
        print(f"{line} {seconds:>5.1f}")


if __name__ == "__main__":
    main()

"""Cars counted one by one on car parks of real car shapes: split instances against connected components.

Run by hand, not by CI (it reads the ISPRS label patches in ../shared/data, which stay there):
    python benchmarks/cars.py --gsd 0.05 0.1

Car shapes are the car regions of the ISPRS Potsdam (5 cm) and Vaihingen (9 cm) label
patches, grown by the 3-pixel boundary band those labels leave out (cars the patch's edge
cuts are left out) and rotated so their long axis is horizontal. Each car park (per GSD) has
rows of cars side by side, rows nose to nose, rows parked at 45 degrees and queues end to
end; headings vary by a few degrees, and the gap to the next car is 0 to 3 pixels at random.
The class map is the truth blurred (Gaussian, sigma 1.5 pixels, as a network's scores are)
and cut at 0.5, so cars up to 2 pixels apart merge. The car score surface beside it is the
mean of that blur and the largest blur of any one car: a network is sure a seam between two
touching cars is car but not which car, so its score dips there (to about 0.75 where cars
touch, lower across a gap), with per-pixel noise (sigma 0.03) on top. ``aerialseg.vectorize``
turns the class map into objects three ways: car instances off (connected components), on
from the class map alone (the default), and on with the scores (``confidence=``); a true car
is recovered when one object overlaps it with IoU >= 0.5.
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

from aerialseg.conventions import PROBABILITY_SCALE

ROOT = Path(__file__).resolve().parents[1]
ISPRS = ROOT.parent / "shared" / "data" / "isprs-mmseg-fixtures"
PATCHES = {"potsdam": ("2_10_0_0_512_512.png", 0.05), "vaihingen": ("area1_0_0_512_512.png", 0.09)}
WEIGHTS = ROOT / "weights" / "manet-r18-potsdam-sample.safetensors"
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


def one_car_blur(truth: np.ndarray, sigma: float) -> np.ndarray:
    """The largest blur of any one car (``truth`` labels cars 1..n) at each pixel, car by car in its own window."""
    out = np.zeros(truth.shape, np.float32)
    pad = int(3 * sigma) + 2
    for label, (rows, cols) in enumerate(ndimage_slices(truth), start=1):
        if rows is None:
            continue
        r0, c0 = max(rows.start - pad, 0), max(cols.start - pad, 0)
        r1, c1 = rows.stop + pad, cols.stop + pad
        window = blur((truth[r0:r1, c0:c1] == label).astype(np.float32), sigma)
        np.maximum(out[r0:r1, c0:c1], window, out=out[r0:r1, c0:c1])
    return out


def ndimage_slices(labels: np.ndarray) -> list[tuple]:
    """The bounding slices of labels 1..max (``(None, None)`` for a label with no pixel)."""
    n = int(labels.max())
    rows, cols = np.nonzero(labels)
    values = labels[rows, cols] - 1
    low = np.full((2, n), np.iinfo(np.int64).max)
    high = np.full((2, n), -1)
    for axis, where in enumerate((rows, cols)):
        np.minimum.at(low[axis], values, where)
        np.maximum.at(high[axis], values, where)
    return [
        (slice(low[0, v], high[0, v] + 1), slice(low[1, v], high[1, v] + 1)) if high[0, v] >= 0 else (None, None)
        for v in range(n)
    ]


def run(gsd: float, shapes: list, folder: Path, strip_rows: int = 512, seed: int = 0) -> list[tuple]:
    """One car park at ``gsd``: the rows of the table (vectorized in strips of ``strip_rows``)."""
    import rasterio
    import shapely
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    rng = np.random.default_rng(int(gsd * 1000) + seed)
    cars = car_park(gsd, shapes, rng)
    size = int(120.0 / gsd)
    transform = from_origin(500000, 5000120, gsd, gsd)
    world = [shapely.affinity.translate(c, 500000, 5000000) for c in cars]
    truth = rasterize(
        ((c, i + 1) for i, c in enumerate(world)), out_shape=(size, size), transform=transform, dtype="int32"
    )
    union = blur((truth > 0).astype(np.float32), 1.5)
    classes = np.where(union >= 0.5, 4, 0).astype(np.uint8)
    raster = folder / f"carpark_{gsd}.tif"
    profile = class_raster_profile(size, transform)
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.update_tags(1, CLASS_NAMES=json.dumps(potsdam_class_names()))
    scored = folder / f"carpark_{gsd}_scores.tif"
    score = (union + one_car_blur(truth, 1.5)) / 2 + rng.normal(0, 0.03, union.shape)
    with rasterio.open(scored, "w", **(profile | {"nodata": None})) as dst:
        dst.write(np.clip(np.rint(score * PROBABILITY_SCALE), 0, PROBABILITY_SCALE).astype(np.uint8), 1)
        dst.set_band_description(1, "confidence")
    truth_polygons = [
        shapely.geometry.shape(g) for g, v in rasterio.features.shapes(truth, mask=truth > 0, transform=transform)
    ]
    return compare(f"{gsd}", raster, scored, truth_polygons, folder, strip_rows)


def compare(
    place: str, raster: Path, scored: Path, truth: list, folder: Path, strip_rows: int = 512, cleanup: bool = False
) -> list[tuple]:
    """Rows of the table: ``raster``'s cars vectorized three ways against the ``truth`` cars (polygons).

    ``cleanup``: the default clean-up of cars (specks dropped, holes filled, outlines simplified), else none.
    """
    import pyogrio
    import shapely

    from aerialseg.vector import VectorizeOptions, vectorize

    rows = []
    methods = (
        ("connected components", False, None),
        ("instances, classes", True, None),
        ("instances, scores", True, scored),
    )
    for label, instances, confidence in methods:
        out = folder / f"{raster.stem}_{instances}_{confidence is not None}.gpkg"
        start = time.perf_counter()
        vectorize(
            raster,
            out,
            VectorizeOptions(
                classes=("car",),
                confidence=confidence,
                car_instances=instances,
                overwrite=True,
                min_area_m2=None if cleanup else 0,
                fill_holes_m2=None if cleanup else 0,
                simplify=None if cleanup else 0,
                strip_rows=strip_rows,
            ),
        )
        seconds = time.perf_counter() - start
        found = pyogrio.read_dataframe(out, layer="car")
        objects = found.geometry.values
        tree = shapely.STRtree(objects)
        recovered = 0
        for car in truth:
            hits = tree.query(car, predicate="intersects")
            best = max((car.intersection(objects[h]).area / car.union(objects[h]).area for h in hits), default=0)
            recovered += best >= 0.5
        merged = int(found["merged"].sum()) if instances else 0
        error = (len(objects) - len(truth)) / len(truth)
        rows.append((place, label, len(truth), len(objects), recovered / len(truth), error, merged, seconds))
    return rows


def sample_weights(folder: Path) -> list[tuple]:
    """The Potsdam patch's cars as the shipped sample weights map and score them, against its labels.

    The patch (5 cm) is written as a GeoTIFF on a made-up UTM grid and predicted with
    ``--probabilities`` and vectorized with the default clean-up; the truth is each connected
    car region of its label grown by the 3-pixel boundary band. The sample weights were trained
    on this very patch (all but its rows 128-255), so these rows show the scores used on a
    network's real output, not its accuracy; the patch holds four cars, none touching.
    """
    import subprocess
    import sys

    import rasterio
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import from_origin

    patch = ISPRS / "potsdam"
    name, gsd = PATCHES["potsdam"]
    with rasterio.open(patch / "img" / name) as src:
        image = src.read()
    with rasterio.open(patch / "ann" / name) as src:
        ann = src.read(1)
    transform = from_origin(500000, 5000000, gsd, gsd)
    ortho = folder / "potsdam_patch.tif"
    profile = {"driver": "GTiff", "width": ann.shape[1], "height": ann.shape[0], "count": 3, "dtype": "uint8"}
    with rasterio.open(ortho, "w", **profile, crs="EPSG:32633", transform=transform) as dst:
        dst.write(image)
    classes = folder / "potsdam_patch_classes.tif"
    command = [sys.executable, "-m", "aerialseg", "predict", str(ortho), "-o", str(classes), "--probabilities"]
    subprocess.run([*command, "-m", str(WEIGHTS), "--overwrite", "--progress", "none"], check=True)
    truth = [
        shapely.geometry.shape(g).buffer(3 * gsd, join_style="mitre")
        for g, _ in shapes(ann, mask=ann == CAR, connectivity=4, transform=transform)
    ]
    scores = folder / "potsdam_patch_classes_probabilities.tif"
    return compare("patch", classes, scores, truth, folder, cleanup=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsd", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--seed", type=int, default=0, help="another car park (0: the one the README reports)")
    args = parser.parse_args()
    shapes = car_shapes()
    folder = Path(tempfile.mkdtemp(prefix="aerialseg-cars-"))
    rows = [row for gsd in args.gsd for row in run(gsd, shapes, folder, seed=args.seed)]
    rows += sample_weights(folder)
    print(f"{len(shapes)} real car shapes\n")
    columns = ("where", "method", "cars", "objects", "recovered", "count error", "merged", "s")
    print("{:>5} {:<21} {:>5} {:>8} {:>10} {:>12} {:>7} {:>5}".format(*columns))
    for gsd, label, cars, objects, recovered, error, merged, seconds in rows:
        line = f"{gsd:>5} {label:<21} {cars:>5} {objects:>8} {recovered:>10.1%} {error:>+12.1%} {merged:>7}"
        print(f"{line} {seconds:>5.1f}")


if __name__ == "__main__":
    main()

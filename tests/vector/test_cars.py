"""Touching cars counted one by one: real car shapes in a car park, single cars, a lorry, the raster's edge."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin

from aerialseg.vector import VectorizeOptions, vectorize
from aerialseg.vector.cars import split_cars

EXACT = dict(min_area_m2=0, fill_holes_m2=0, simplify=0)
NAMES = ["impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter"]


@pytest.fixture(scope="module")
def car_parks():
    """benchmarks/cars.py: the car parks of real ISPRS car shapes and their scoring."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "cars.py"
    spec = importlib.util.spec_from_file_location("car_parks", path)
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(path.parent))  # as `python benchmarks/cars.py` finds its neighbours
        spec.loader.exec_module(module)
    return module


def _car(length=4.6, width=1.9, heading=0.0, at=(0.0, 0.0)):
    """A car-shaped outline in metres: a rectangle with rounded corners."""
    body = shapely.box(-length / 2 + 0.3, -width / 2 + 0.3, length / 2 - 0.3, width / 2 - 0.3).buffer(0.3)
    return shapely.affinity.translate(shapely.affinity.rotate(body, heading, origin=(0, 0)), *at)


def _raster(path, shapes, size=200, gsd=0.1):
    """A class raster with ``shapes`` (metres from the top-left corner, y down) as cars."""
    transform = from_origin(0, 0, gsd, gsd)
    flipped = [shapely.affinity.scale(s, 1, -1, origin=(0, 0)) for s in shapes]
    array = rasterize(((s, 4) for s in flipped), out_shape=(size, size), transform=transform, dtype="uint8")
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:32632")
    with rasterio.open(path, "w", **profile, transform=transform, nodata=255) as dst:
        dst.write(array, 1)
        dst.update_tags(1, CLASS_NAMES=json.dumps(NAMES))
    return path


def _cars(raster, tmp_path, **options):
    out = vectorize(
        raster, tmp_path / "cars.gpkg", VectorizeOptions(classes=("car",), overwrite=True, **EXACT, **options)
    )
    return pyogrio.read_dataframe(out.output, layer="car")


def test_a_real_car_park_is_counted_car_by_car(car_parks, shared_data, tmp_path):
    shapes = car_parks.car_shapes(shared_data / "isprs-mmseg-fixtures")
    components, classes, scores = car_parks.run(0.1, shapes, tmp_path)
    cars, recovered_cc = components[2], components[4]
    assert cars > 300 and recovered_cc < 0.6  # touching cars merge into regions of several
    assert classes[4] >= 0.9 and abs(classes[5]) <= 0.05  # the class map alone
    assert scores[4] >= 0.95 and abs(scores[5]) <= 0.03  # with the car scores


def test_a_strip_boundary_through_the_cars_changes_nothing(car_parks, shared_data, tmp_path):
    shapes = car_parks.car_shapes(shared_data / "isprs-mmseg-fixtures")
    found = {}
    for name, rows in (("whole", 100_000), ("strips", 37)):
        (tmp_path / name).mkdir()
        car_parks.run(0.1, shapes, tmp_path / name, strip_rows=rows)
        for scored in (False, True):
            cars = pyogrio.read_dataframe(tmp_path / name / f"carpark_0.1_True_{scored}.gpkg", layer="car")
            cars["wkb"] = shapely.to_wkb(cars.geometry.values)  # the same cars, found in another order
            found[name, scored] = cars.drop(columns=["geometry", "car_id"]).sort_values("wkb").reset_index(drop=True)
    for scored in (False, True):
        assert len(found["whole", scored]) > 300 and found["whole", scored].equals(found["strips", scored])


@pytest.mark.parametrize("heading", [0, 30, 90, 135])
@pytest.mark.parametrize(("length", "width"), [(4.6, 1.9), (5.5, 2.2), (3.6, 1.6)], ids=["car", "van", "small"])
def test_a_single_car_is_never_split(tmp_path, heading, length, width):
    cars = _cars(_raster(tmp_path / "one.tif", [_car(length, width, heading, (10, 10))]), tmp_path)
    assert len(cars) == 1 and not cars["merged"][0] and cars["car_id"].tolist() == [1]
    assert cars["length_m"][0] == pytest.approx(length, abs=0.25) and cars["width_m"][0] == pytest.approx(
        width, abs=0.25
    )


def test_touching_cars_side_by_side_end_to_end_and_at_an_angle_become_one_object_each(tmp_path):
    side = [_car(heading=90, at=(4 + 1.9 * i, 4)) for i in range(6)]  # widths touching
    queue = [_car(at=(3 + 4.6 * i, 12)) for i in range(3)]  # bumper to bumper
    angled = [_car(heading=45, at=(4 + 2.69 * i, 17)) for i in range(4)]  # angled parking, touching
    raster = _raster(tmp_path / "park.tif", [*side, *queue, *angled])
    cars = _cars(raster, tmp_path)
    assert len(_cars(raster, tmp_path, car_instances=False)) < 13 / 2  # touching cars: one region per few
    assert len(cars) == 13 and not cars["merged"].any() and sorted(cars["car_id"]) == list(range(1, 14))
    truth = [shapely.affinity.scale(s, 1, -1, origin=(0, 0)) for s in [*side, *queue, *angled]]
    for car in truth:
        best = max(car.intersection(g).area / car.union(g).area for g in cars.geometry)
        assert best >= 0.7
    assert cars["length_m"].between(4.0, 5.0).all() and cars["width_m"].between(1.6, 2.2).all()


def test_a_lorry_stays_one_object_flagged_merged(tmp_path):
    lorry = shapely.box(4, 4, 16, 6.5)  # 12 x 2.5 m, square ends: no car fits it
    cars = _cars(_raster(tmp_path / "lorry.tif", [lorry]), tmp_path)
    assert len(cars) == 1 and cars["merged"][0]
    assert cars["length_m"][0] == pytest.approx(12, abs=0.2)


def test_cars_cut_by_the_raster_edge_are_split_and_kept(tmp_path):
    row = [_car(heading=90, at=(0.5 + 1.9 * i, 5)) for i in range(4)]  # the first car half outside the raster
    cars = _cars(_raster(tmp_path / "edge.tif", row), tmp_path)
    assert len(cars) == 4 and not cars["merged"].any()
    assert sorted(cars["touches_raster_edge"].tolist()) == [False, False, False, True]


def test_the_split_is_a_regions_own_and_needs_no_pixels():
    split = split_cars(shapely.union_all([_car(heading=90, at=(1.9 * i, 0)) for i in range(5)]), 0.1)
    assert len(split.cars) == 5 and not split.merged
    assert all(c.area == pytest.approx(_car().area, rel=0.15) for c in split.cars)


def test_the_command_line_can_keep_connected_regions(tmp_path, cli):
    raster = _raster(tmp_path / "row.tif", [_car(heading=90, at=(4 + 1.9 * i, 4)) for i in range(5)])
    counts = {}
    for flag in ("--car-instances", "--no-car-instances"):
        code, _, err = cli(["vectorize", str(raster), "-o", str(tmp_path / f"{flag}.gpkg"), "--classes", "car", flag])
        assert code == 0, err
        counts[flag] = len(pyogrio.read_dataframe(tmp_path / f"{flag}.gpkg", layer="car"))
    assert counts["--car-instances"] == 5 and counts["--no-car-instances"] < 5  # touching cars: shared regions


def _scores_with_seam_at(x_m: float, width_m: float = 0.1):
    """A score surface (points in metres -> score) of 0.95 with a dip to 0.6 across x = ``x_m``."""

    def score_at(points):
        return np.where(np.abs(points[:, 0] - x_m) < width_m / 2, 0.6, 0.95)

    return score_at


def test_the_scores_find_a_seam_the_outline_does_not_show():
    # a short car and a long one end to end as one straight rectangle: no pinch, so the outline alone cannot cut it
    queue = shapely.box(0, 0, 9.0, 1.9)
    by_shape = split_cars(queue, 0.1)
    by_scores = split_cars(queue, 0.1, _scores_with_seam_at(3.6))
    assert by_shape.cars == [queue] and by_shape.merged
    assert sorted(c.bounds[2] - c.bounds[0] for c in by_scores.cars) == pytest.approx([3.6, 5.4], abs=0.1)
    assert not by_scores.merged
    assert split_cars(_car(), 0.1, _scores_with_seam_at(0.0)).cars == [_car()]  # one car: no dip splits it


def test_vectorize_splits_by_the_confidence_raster_beside_the_class_map(tmp_path):
    raster = _raster(tmp_path / "queue.tif", [shapely.box(2, 2, 11, 3.9)])
    with rasterio.open(raster) as src:
        profile, shape = src.profile, src.shape
    scores = np.full(shape, 240, np.uint8)
    scores[:, 56] = 150  # the seam, 3.6 to 3.7 m from the queue's start at x = 2 m
    with rasterio.open(tmp_path / "queue_uncertainty.tif", "w", **(profile | {"nodata": None})) as dst:
        dst.write(scores, 1)
        dst.set_band_description(1, "confidence")
    cars = _cars(raster, tmp_path, confidence=tmp_path / "queue_uncertainty.tif")
    assert sorted(cars["length_m"]) == pytest.approx([3.65, 5.35], abs=0.1) and not cars["merged"].any()
    alone = _cars(raster, tmp_path)
    assert len(alone) == 1 and alone["merged"][0]  # the class map alone shows one 9 m block

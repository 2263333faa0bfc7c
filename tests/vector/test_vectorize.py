"""Streaming vectorization: exact across strips, right on real labels, measured in metres, every format."""

import json
import math
import os
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.features import rasterize, shapes
from rasterio.transform import from_origin

from aerialseg.conventions import NODATA_CLASS, PROBABILITY_SCALE
from aerialseg.errors import AerialsegError, InputRasterError, OutputExistsError, OutputWriteError
from aerialseg.vector import VectorizeOptions, resolve_classes, vectorize
from aerialseg.vector.polygonizer import Polygonizer
from aerialseg.vector.regions import iter_region_batches, iter_regions
from aerialseg.vector.shapes import oriented_box, regularize

EXACT = dict(min_area_m2=0, fill_holes_m2=0, simplify=0)


def _write_classes(path, array, names, crs="EPSG:32632", transform=None, nodata=NODATA_CLASS):
    transform = transform or from_origin(500000, 5000000, 0.5, 0.5)
    profile = dict(
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        if names:
            dst.update_tags(1, CLASS_NAMES=json.dumps(names))
    return path


def _strips(array, rows):
    """The strips iter_regions reads, built straight from an in-memory array (nodata NODATA_CLASS)."""
    padded = np.pad(array, 1, constant_values=0)[:, 1:-1]
    nodata = np.pad(array == NODATA_CLASS, ((1, 1), (0, 0)))
    for r in range(0, array.shape[0], rows):
        n = min(rows, array.shape[0] - r)
        yield r, padded[r : r + n + 2], nodata[r : r + n + 2], None


def _whole(array, class_ids):
    """Independent reference: GDAL polygonize of the whole array at once."""
    mask = np.isin(array, class_ids)
    return [(shapely.geometry.shape(g), int(v)) for g, v in shapes(array, mask=mask, connectivity=4)]


def _tricky_raster():
    """Shapes that cross strip edges in every awkward way, plus random blobs."""
    a = np.zeros((97, 83), np.uint8)
    a[5:60, 5:40] = 1
    a[15:50, 15:30] = 0  # a hole spanning many strips
    a[20:25, 20:25] = 1  # an island in the hole
    a[5:70, 50:55] = 1  # a U: two arms ...
    a[5:70, 65:70] = 1
    a[65:70, 50:70] = 1  # ... joined only near the bottom
    a[72:76, 5:9] = 4
    a[76:80, 9:13] = 4  # touches the car above only at a corner: two regions
    a[80:96, 40:80] = 1
    a[85:90, 45:50] = NODATA_CLASS  # nodata inside a building
    rng = np.random.default_rng(3)
    blobs = rng.random((97, 83)) < 0.08
    a[blobs & (a == 0)] = 4
    return a


@pytest.mark.parametrize("nodata", [True, False], ids=["nodata", "no-nodata"])  # labels drawn whole, or by row
@pytest.mark.parametrize("rows", [1, 2, 3, 7, 16, 64, 97])
def test_streamed_regions_equal_whole_raster_polygons(rows, nodata):
    array = _tricky_raster()
    if not nodata:
        array[array == NODATA_CLASS] = 0
    streamed = list(iter_regions(_strips(array, rows), [1, 4], array.shape[0]))
    whole = _whole(array, [1, 4])
    assert len(streamed) == len(whole)
    unmatched = list(whole)
    for region in streamed:
        assert region.geometry.is_valid
        match = next(i for i, (g, v) in enumerate(unmatched) if v == region.class_id and g.equals(region.geometry))
        geometry, _ = unmatched.pop(match)
        assert region.pixels == geometry.area  # pixel units: one pixel is 1 x 1
    assert not unmatched


def test_region_statistics_and_nodata_contact():
    array = _tricky_raster()
    confidence = np.linspace(0, 1, array.size, dtype=np.float32).reshape(array.shape)
    strips = [(r, c, n, confidence[r : r + c.shape[0] - 2]) for r, c, n, _ in _strips(array, 10)]
    regions = list(iter_regions(iter(strips), [1], array.shape[0]))
    for region in regions:
        inside = rasterize([(region.geometry, 1)], out_shape=array.shape, fill=0).astype(bool)
        assert region.pixels == inside.sum()
        assert region.confidence_sum == pytest.approx(confidence[inside].sum(), rel=1e-5)
        assert region.confidence_max == pytest.approx(confidence[inside].max())
        grown = inside.copy()
        grown[1:] |= inside[:-1]
        grown[:-1] |= inside[1:]
        grown[:, 1:] |= inside[:, :-1]
        grown[:, :-1] |= inside[:, 1:]
        assert region.touches_nodata == bool((grown & (array == NODATA_CLASS)).any())
    assert sum(r.touches_nodata for r in regions) == 1


@pytest.fixture(scope="module")
def spacenet_classes(tmp_path_factory, spacenet):
    labels = gpd.read_file(spacenet / "geotiff_labels.geojson")
    with rasterio.open(spacenet / "sample_geotiff.tif") as src:
        array = rasterize(
            ((g, 1) for g in labels.geometry), out_shape=src.shape, transform=src.transform, fill=0, dtype="uint8"
        )
        path = _write_classes(
            tmp_path_factory.mktemp("sn") / "classes.tif",
            array,
            ["background", "building"],
            crs=src.crs,
            transform=src.transform,
        )
        bounds = shapely.box(*src.bounds)
    return path, labels, bounds, array


def _match(originals, found):
    """Greedy one-to-one matching by IoU: list of (original, found) IoUs."""
    pairs = sorted(
        (
            (o.intersection(f).area / o.union(f).area, i, j)
            for i, o in enumerate(originals)
            for j, f in enumerate(found)
            if o.intersects(f)
        ),
        reverse=True,
    )
    used_i, used_j, ious = set(), set(), {}
    for iou, i, j in pairs:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            ious[i] = iou
    return [ious.get(i, 0.0) for i in range(len(originals))]


@pytest.mark.parametrize("strip_rows", [512, 37])
def test_spacenet_buildings_round_trip(spacenet_classes, tmp_path, strip_rows):
    path, labels, bounds, array = spacenet_classes
    out = tmp_path / "b.gpkg"
    result = vectorize(path, out, VectorizeOptions(strip_rows=strip_rows))
    buildings = gpd.read_file(out, layer="building")
    originals = [g.intersection(bounds) for g in labels.geometry]
    assert result.counts == {"building": len(labels)} and len(buildings) == len(labels)
    assert buildings.crs == labels.crs and buildings.is_valid.all()
    ious = np.array(_match(originals, list(buildings.geometry)))
    areas = np.array([g.area for g in originals])
    # Small buildings lose most to the 0.5 m pixel staircase of the rasterisation itself.
    assert ious.min() >= 0.8 and (ious[areas >= 100] >= 0.9).all(), (ious.min(), np.sort(ious)[:5])

    # Without clean-up every polygon is exactly its rasterised footprint (one speck of one pixel too).
    exact = vectorize(path, tmp_path / "exact.gpkg", VectorizeOptions(strip_rows=strip_rows, **EXACT))
    raw = gpd.read_file(tmp_path / "exact.gpkg", layer="building")
    with rasterio.open(path) as src:
        whole = [shapely.geometry.shape(g) for g, _ in shapes(array, mask=array == 1, transform=src.transform)]
    assert exact.counts["building"] == len(whole) == len(raw)
    assert min(_match(whole, list(raw.geometry))) > 0.999


def test_attributes_in_metres(tmp_path):
    a = np.zeros((60, 80), np.uint8)
    a[10:30, 20:60] = 1  # 20 x 40 pixels of 0.5 m: 10 m x 20 m
    a[15:20, 25:30] = 0  # a 2.5 m x 2.5 m hole
    a[40:60, 0:4] = 1  # touches the raster edge
    a[50:52, 10:20] = NODATA_CLASS
    a[45:55, 8:10] = 1  # touches nodata
    path = _write_classes(tmp_path / "c.tif", a, ["background", "building"])
    vectorize(path, tmp_path / "o.gpkg", VectorizeOptions(**EXACT))
    layer = gpd.read_file(tmp_path / "o.gpkg", layer="building").sort_values("area_m2", ascending=False)
    big = layer.iloc[0]
    assert big.area_m2 == pytest.approx(10 * 20 - 2.5 * 2.5)
    assert big.perimeter_m == pytest.approx(2 * (10 + 20) + 4 * 2.5)
    assert not big.touches_nodata and not big.touches_raster_edge
    assert list(layer.touches_raster_edge) == [False, True, False]
    assert list(layer.touches_nodata) == [False, False, True]
    filled = vectorize(path, tmp_path / "f.gpkg", VectorizeOptions(fill_holes_m2=7, min_area_m2=6, simplify=0))
    assert filled.counts == {"building": 2}
    assert gpd.read_file(tmp_path / "f.gpkg", layer="building").area_m2.max() == pytest.approx(200)


def test_geographic_raster_is_measured_on_the_ground(tmp_path):
    a = np.zeros((50, 50), np.uint8)
    a[10:30, 10:30] = 1
    dlat = 1e-5  # about 1.11 m
    dlon = dlat / math.cos(math.radians(45))  # the same on the ground at 45 N
    path = _write_classes(
        tmp_path / "g.tif",
        a,
        ["background", "building"],
        crs="EPSG:4326",
        transform=from_origin(7.0, 45.0003, dlon, dlat),
    )
    vectorize(path, tmp_path / "g.gpkg", VectorizeOptions(**EXACT))
    layer = gpd.read_file(tmp_path / "g.gpkg", layer="building")
    assert layer.crs.to_epsg() == 4326
    side = 20 * dlat * 111_132  # metres per degree of latitude at 45 N
    assert layer.area_m2[0] == pytest.approx(side**2, rel=0.01)
    assert layer.geometry[0].equals(
        shapely.box(7.0 + 10 * dlon, 45.0003 - 30 * dlat, 7.0 + 30 * dlon, 45.0003 - 10 * dlat)
    )


def test_oriented_box_of_a_rotated_rectangle():
    rectangle = shapely.affinity.rotate(shapely.box(0, 0, 4.5, 1.8), 30, origin=(0, 0))  # long axis 30 deg above east
    box = oriented_box(rectangle)
    assert box.length_m == pytest.approx(4.5) and box.width_m == pytest.approx(1.8)
    assert box.heading_deg == pytest.approx(60.0)  # clockwise from north
    north = oriented_box(shapely.box(0, 0, 1.8, 4.5))
    assert north.heading_deg == pytest.approx(0.0, abs=1e-9) or north.heading_deg == pytest.approx(180.0)


def test_cars_get_boxes_and_headings(tmp_path):
    a = np.zeros((100, 100), np.uint8)
    yy, xx = np.mgrid[:100, :100]
    u = (xx - 50) * math.cos(math.radians(30)) + (50 - yy) * math.sin(math.radians(30))  # along 30 deg above east
    v = -(xx - 50) * math.sin(math.radians(30)) + (50 - yy) * math.cos(math.radians(30))
    a[(np.abs(u) <= 20) & (np.abs(v) <= 8)] = 4  # a 40 x 16 px car = 4.0 x 1.6 m at 0.1 m
    path = _write_classes(
        tmp_path / "car.tif",
        a,
        ["imp", "building", "low", "tree", "car", "clutter"],
        transform=from_origin(500000, 5000000, 0.1, 0.1),
    )
    vectorize(path, tmp_path / "cars.gpkg", VectorizeOptions(car_geometry="box"))
    car = gpd.read_file(tmp_path / "cars.gpkg", layer="car").iloc[0]
    assert car.length_m == pytest.approx(4.0, abs=0.2) and car.width_m == pytest.approx(1.6, abs=0.2)
    assert car.heading_deg == pytest.approx(60.0, abs=3)
    assert len(car.geometry.exterior.coords) == 5
    assert pyogrio.list_layers(tmp_path / "cars.gpkg")[:, 0].tolist() == ["building", "car", "layer_styles"]


def test_regularized_building_has_right_angles():
    # An L-shaped building, rotated 20 degrees, drawn as a pixel staircase at 0.1 m.
    shape = shapely.Polygon([(0, 0), (12, 0), (12, 5), (5, 5), (5, 9), (0, 9)])
    turned = shapely.affinity.rotate(shape, 20, origin=(0, 0))
    pixels = rasterize(
        [(shapely.affinity.scale(turned, 10, 10, origin=(0, 0)), 1)],
        out_shape=(200, 200),
        transform=rasterio.Affine.translation(-50, -50),
        dtype="uint8",
    )
    stair = shapely.union_all([shapely.geometry.shape(g) for g, _ in shapes(pixels, mask=pixels == 1)])
    stair = shapely.affinity.scale(shapely.affinity.translate(stair, -50, -50), 0.1, 0.1, origin=(0, 0))
    square = regularize(stair, 0.15)
    coords = np.asarray(square.exterior.coords)
    edges = np.diff(coords, axis=0)
    angles = np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) % 90
    assert len(coords) - 1 == 6
    assert np.allclose(np.minimum(np.abs(angles - 20), 90 - np.abs(angles - 20)), 0, atol=1.5)
    assert square.intersection(turned).area / square.union(turned).area > 0.95


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".fgb", ".geojson"])
def test_every_format_round_trips(spacenet_classes, tmp_path, suffix):
    path = spacenet_classes[0]
    out = tmp_path / f"objects{suffix}"
    result = vectorize(path, out, VectorizeOptions())
    if suffix == ".parquet":
        frame = gpd.read_parquet(out)
    else:  # a GeoPackage also holds its layer_styles table: a layer is read by name
        frame = gpd.read_file(out, layer="building" if suffix == ".gpkg" else None)
    assert len(frame) == result.counts["building"] == 43
    assert frame.crs == spacenet_classes[1].crs and frame.is_valid.all()
    assert set(frame["class"]) == {"building"} and frame.area_m2.min() >= 4
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    if suffix in (".fgb", ".geojson"):  # single-layer formats name their layer after the file, not its temporary name
        assert [name for name, _ in pyogrio.list_layers(out)] == ["objects"]


def test_geopackage_carries_provenance(spacenet_classes, tmp_path):
    vectorize(spacenet_classes[0], tmp_path / "p.gpkg", VectorizeOptions())
    meta = pyogrio.read_info(tmp_path / "p.gpkg", layer="building")["layer_metadata"]
    assert meta["source"].endswith("classes.tif") and "cleanup" in meta and meta["aerialseg_version"]


def test_bad_requests_are_one_line_errors(spacenet_classes, tmp_path):
    path = spacenet_classes[0]
    with pytest.raises(AerialsegError, match="no class 'road'.*0=background, 1=building"):
        vectorize(path, tmp_path / "x.gpkg", VectorizeOptions(classes=("road",)))
    (tmp_path / "x.gpkg").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        vectorize(path, tmp_path / "x.gpkg")
    assert (tmp_path / "x.gpkg").read_bytes() == b"keep"
    with pytest.raises(AerialsegError, match="unknown vector format"):
        vectorize(path, tmp_path / "x.shp")
    with pytest.raises(AerialsegError, match="unknown car geometry 'circle'; use outline or box"):
        vectorize(path, tmp_path / "y.gpkg", VectorizeOptions(car_geometry="circle"))
    unnamed = _write_classes(tmp_path / "u.tif", np.ones((5, 5), np.uint8), None)
    with pytest.raises(AerialsegError, match="no class names"):
        vectorize(unnamed, tmp_path / "u.gpkg")
    result = vectorize(unnamed, tmp_path / "u.gpkg", VectorizeOptions(classes=("roof=1",), **EXACT))
    assert result.counts == {"roof": 1}


def test_class_names_resolve_like_a_user_means_them(tmp_path):
    uavid = ["building", "road", "tree", "low_vegetation", "moving_car", "static_car", "human", "clutter"]
    assert resolve_classes(None, uavid, tmp_path) == [(0, "building"), (4, "moving_car"), (5, "static_car")]
    assert resolve_classes(["car"], uavid, tmp_path) == [(4, "moving_car"), (5, "static_car")]
    assert resolve_classes(["2", "road"], uavid, tmp_path) == [(2, "tree"), (1, "road")]


def _write_bands(path, bands, descriptions):
    """A uint8 raster beside the classes of test_confidence_attributes_and_refusals (same CRS and origin)."""
    profile = dict(driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=len(bands), dtype="uint8")
    with rasterio.open(path, "w", crs="EPSG:32632", transform=from_origin(500000, 5000000, 0.5, 0.5), **profile) as dst:
        dst.write(bands)
        for band, description in enumerate(descriptions, start=1):
            dst.set_band_description(band, description)
    return path


def test_confidence_attributes_and_refusals(tmp_path):
    a = np.zeros((40, 40), np.uint8)
    a[5:15, 5:25] = 1  # a building of 200 pixels
    a[25:30, 10:20] = 4  # a car of 50 pixels
    names = ["imp", "building", "low", "tree", "car", "clutter"]
    path = _write_classes(tmp_path / "c.tif", a, names)
    half = PROBABILITY_SCALE // 2
    probabilities = np.zeros((6, 40, 40), np.uint8)
    probabilities[1][a == 1] = half
    probabilities[1, 5, 5] = PROBABILITY_SCALE
    probabilities[4][a == 4] = half
    probabilities[4, 0, 0] = PROBABILITY_SCALE  # not a car pixel: must not count
    p = _write_bands(tmp_path / "p.tif", probabilities, [f"p({n})" for n in names])
    vectorize(path, tmp_path / "p.gpkg", VectorizeOptions(confidence=p, strip_rows=7, **EXACT))
    building = gpd.read_file(tmp_path / "p.gpkg", layer="building").iloc[0]
    car = gpd.read_file(tmp_path / "p.gpkg", layer="car").iloc[0]
    assert building.mean_confidence == pytest.approx((199 * half + PROBABILITY_SCALE) / 200 / PROBABILITY_SCALE)
    assert building.max_confidence == pytest.approx(1.0)
    assert car.mean_confidence == pytest.approx(half / PROBABILITY_SCALE) == car.max_confidence

    uncertainty = np.zeros((3, 40, 40), np.uint8)
    uncertainty[0][a == 4] = PROBABILITY_SCALE
    u = _write_bands(tmp_path / "u.tif", uncertainty, ["confidence", "margin", "entropy"])
    vectorize(path, tmp_path / "u.gpkg", VectorizeOptions(confidence=u, **EXACT))
    assert gpd.read_file(tmp_path / "u.gpkg", layer="car").mean_confidence[0] == pytest.approx(1.0)
    assert gpd.read_file(tmp_path / "u.gpkg", layer="building").max_confidence[0] == 0.0

    small = _write_bands(tmp_path / "s.tif", probabilities[:, :39], [f"p({n})" for n in names])
    with pytest.raises(InputRasterError, match="s.tif: is 40x39, the class raster 40x40"):
        vectorize(path, tmp_path / "x.gpkg", VectorizeOptions(confidence=small))
    unnamed = _write_bands(tmp_path / "n.tif", probabilities[:2], ["", ""])
    with pytest.raises(InputRasterError, match="n.tif: has no band for class 'building'"):
        vectorize(path, tmp_path / "x.gpkg", VectorizeOptions(confidence=unnamed))
    (tmp_path / "junk.tif").write_bytes(b"not a raster")
    with pytest.raises(InputRasterError, match="junk.tif: cannot open as a raster"):
        vectorize(tmp_path / "junk.tif", tmp_path / "x.gpkg")
    with pytest.raises(InputRasterError, match="junk.tif: cannot open as a raster"):
        vectorize(path, tmp_path / "x.gpkg", VectorizeOptions(confidence=tmp_path / "junk.tif"))
    assert not (tmp_path / "x.gpkg").exists()


def _spacenet_ids(spacenet_classes, ids):
    """The SpaceNet footprints rasterised with footprint i as class ids[i % len(ids)] (0 elsewhere)."""
    _, labels, _, _ = spacenet_classes
    with rasterio.open(spacenet_classes[0]) as src:
        shape, transform, crs = src.shape, src.transform, src.crs
    pairs = ((g, ids[i % len(ids)]) for i, g in enumerate(labels.geometry))
    return rasterize(pairs, out_shape=shape, transform=transform, fill=0, dtype="uint8"), transform, crs


def test_class_names_become_safe_distinct_layer_names(spacenet_classes, tmp_path):
    names = ["background", "gpkg_contents", "sheds/garages", "Building", "building", "roof\nwall " + "x" * 80]
    names.append("Layer_Styles")  # QGIS's table of layer styles in the same file
    array, transform, crs = _spacenet_ids(spacenet_classes, [1, 2, 3, 4, 5, 6])
    path = _write_classes(tmp_path / "named.tif", array, names, crs=crs, transform=transform)
    options = VectorizeOptions(classes=("1", "2", "3", "4", "5", "6"), **EXACT)
    result = vectorize(path, tmp_path / "o.gpkg", options)
    layers = ["class_gpkg_contents", "sheds_garages", "Building", "building_4", ("roof_wall " + "x" * 80)[:63]]
    layers.append("class_Layer_Styles")
    assert pyogrio.list_layers(tmp_path / "o.gpkg")[:, 0].tolist() == [*layers, "layer_styles"]
    with rasterio.open(path) as src:
        pieces = {v: 0 for v in range(1, 7)}
        for _, value in shapes(array, mask=array > 0, transform=src.transform):
            pieces[int(value)] += 1
    assert result.counts == {layer: pieces[class_id] for class_id, layer in enumerate(layers, start=1)}
    for class_id, layer in enumerate(layers, start=1):
        frame = gpd.read_file(tmp_path / "o.gpkg", layer=layer)
        assert set(frame["class"]) == {names[class_id]} and set(frame["class_id"]) == {class_id}
    parquet = gpd.read_parquet(vectorize(path, tmp_path / "o.parquet", options).output)
    assert set(parquet["class"]) == set(names[1:])


def test_class_ids_beyond_the_class_names_are_an_error(spacenet_classes, tmp_path):
    names = ["imp", "building", "low", "tree", "car", "clutter"]
    array, transform, crs = _spacenet_ids(spacenet_classes, [1, 1, 9])  # every third footprint: class id 9
    array[:20, :20] = NODATA_CLASS  # nodata is no class id
    path = _write_classes(tmp_path / "c.tif", array, names, crs=crs, transform=transform)
    with pytest.raises(InputRasterError, match=r"c\.tif: holds class id 9 .* names only 6 classes, 0\.\.5"):
        vectorize(path, tmp_path / "o.gpkg", VectorizeOptions(strip_rows=64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]
    named = vectorize(path, tmp_path / "o.gpkg", VectorizeOptions(classes=("building", "other=9"), **EXACT))
    assert named.counts["other"] == int((np.arange(43) % 3 == 2).sum())


def _fill(qml_text):
    """``(fill rgba, outline rgba)`` of the first fill symbol of a QML style."""
    props = {p.get("k"): p.get("v") for p in ET.fromstring(qml_text).iter("prop")}
    return props["color"], props["outline_color"]


def _rgba(color, alpha):
    return ",".join(str(v) for v in (*color, alpha))


def test_each_geopackage_layer_opens_with_its_class_colour(neon_map):
    colors = {c.name: c.color for c in neon_map.card.classes}
    with closing(sqlite3.connect(neon_map.objects)) as db:
        rows = db.execute(
            "SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, styleQML, "
            "useAsDefault FROM layer_styles ORDER BY id"
        ).fetchall()
        kind = db.execute(
            "SELECT data_type, identifier FROM gpkg_contents WHERE table_name = 'layer_styles'"
        ).fetchall()
    assert [row[2] for row in rows] == list(neon_map.layers)  # one row per layer, named by its table
    assert kind == [("attributes", "layer_styles")]  # registered as QGIS (through GDAL) registers it
    for catalog, schema, layer, geometry, name, qml, default in rows:
        assert (catalog, schema, name, default) == ("", "", layer, 1)  # QGIS finds a default by these
        assert geometry == pyogrio.read_info(neon_map.objects, layer=layer)["geometry_name"]
        assert ET.fromstring(qml).find("renderer-v2").get("type") == "singleSymbol"
        fill, outline = _fill(qml)
        assert fill == _rgba(colors[layer], 102) and outline == _rgba(colors[layer], 255)
    # GDAL sees an attribute table beside the unchanged layers
    assert pyogrio.list_layers(neon_map.objects).tolist() == [
        *([layer, "Polygon"] for layer in neon_map.layers),
        ["layer_styles", None],
    ]
    styles = pyogrio.read_dataframe(neon_map.objects, layer="layer_styles")
    assert styles["f_table_name"].tolist() == list(neon_map.layers)
    assert len(pyogrio.read_dataframe(neon_map.objects, layer="clutter")) > 0


@pytest.mark.parametrize("suffix", [".fgb", ".geojson", ".parquet"])
def test_single_layer_formats_get_a_qml_beside_them(neon_map, tmp_path, suffix):
    out = tmp_path / f"objects{suffix}"
    vectorize(neon_map.classes, out, VectorizeOptions(classes=neon_map.layers))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "objects.qml"])
    renderer = ET.parse(tmp_path / "objects.qml").getroot().find("renderer-v2")
    assert (renderer.get("type"), renderer.get("attr")) == ("categorizedSymbol", "class")
    categories = [(c.get("value"), c.get("label"), c.get("symbol")) for c in renderer.iter("category")]
    assert categories == [(name, name, str(i)) for i, name in enumerate(neon_map.layers)]
    colors = {c.name: c.color for c in neon_map.card.classes}
    for symbol in renderer.iter("symbol"):
        name = neon_map.layers[int(symbol.get("name"))]
        assert _fill(ET.tostring(symbol)) == (_rgba(colors[name], 102), _rgba(colors[name], 255))
    # the style is an output like the objects: kept without --overwrite, refused before any work
    (tmp_path / "objects.qml").write_text("mine")
    out.unlink()
    with pytest.raises(OutputExistsError, match="objects.qml: output exists"):
        vectorize(neon_map.classes, out, VectorizeOptions(classes=neon_map.layers))
    assert not out.exists() and (tmp_path / "objects.qml").read_text() == "mine"
    vectorize(neon_map.classes, out, VectorizeOptions(classes=neon_map.layers, overwrite=True))
    assert (tmp_path / "objects.qml").read_text().startswith("<!DOCTYPE qgis")


def test_objects_of_a_raster_without_palette_are_coloured_by_kind(tmp_path):
    a = np.zeros((40, 40), np.uint8)
    a[2:20, 2:20], a[25:30, 25:35], a[32:38, 2:8] = 1, 4, 5
    path = _write_classes(tmp_path / "plain_classes.tif", a, ["imp", "building", "low", "tree", "car", "clutter"])
    vectorize(path, tmp_path / "o.gpkg", VectorizeOptions(classes=("building", "car", "clutter"), **EXACT))
    with closing(sqlite3.connect(tmp_path / "o.gpkg")) as db:
        styles = dict(db.execute("SELECT f_table_name, styleQML FROM layer_styles").fetchall())
    assert _fill(styles["building"])[1] == "0,0,255,255" and _fill(styles["car"])[1] == "255,255,0,255"
    assert _fill(styles["clutter"])[1].count(",") == 3  # some colour of its own


def test_the_objects_style_never_replaces_the_class_rasters(neon_map, tmp_path):
    raster = tmp_path / "neon_classes.tif"
    shutil.copyfile(neon_map.classes, raster)
    shutil.copyfile(neon_map.classes.with_suffix(".qml"), raster.with_suffix(".qml"))
    before = raster.with_suffix(".qml").read_bytes()
    with pytest.raises(AerialsegError, match="would destroy the input"):
        vectorize(raster, tmp_path / "neon_classes.fgb", VectorizeOptions(classes=neon_map.layers, overwrite=True))
    assert raster.with_suffix(".qml").read_bytes() == before and not (tmp_path / "neon_classes.fgb").exists()


def test_styles_that_cannot_be_stored_fail_in_one_line_and_leave_nothing(neon_map, tmp_path, monkeypatch):
    monkeypatch.setattr("aerialseg.styles._CREATE_LAYER_STYLES", "CREATE TABLE gpkg_contents (taken)")
    with pytest.raises(OutputWriteError, match=r"o\.gpkg: cannot write \(cannot store the QGIS layer styles: table"):
        vectorize(neon_map.classes, tmp_path / "o.gpkg", VectorizeOptions(classes=neon_map.layers))
    assert list(tmp_path.iterdir()) == []


def test_a_remote_class_raster_vectorizes_as_the_local_file(spacenet_classes, range_server, tmp_path, cli):
    path = spacenet_classes[0]
    url = range_server.add(path)
    remote = vectorize(url, tmp_path / "remote.gpkg", VectorizeOptions(strip_rows=37))
    local = vectorize(path, tmp_path / "local.gpkg", VectorizeOptions(strip_rows=37))
    assert remote.counts == local.counts and remote.counts["building"] > 0 and str(remote.input) == url
    a, b = (gpd.read_file(tmp_path / name, layer="building") for name in ("remote.gpkg", "local.gpkg"))
    assert a.geometry.geom_equals(b.geometry).all()
    assert pyogrio.read_info(tmp_path / "remote.gpkg", layer="building")["layer_metadata"]["source"] == url
    assert 0 < range_server.bytes_sent() <= path.stat().st_size
    code, out, err = cli(["vectorize", url, "-o", str(tmp_path / "cli.gpkg"), "--json"])
    assert code == 0 and json.loads(out)["counts"] == remote.counts, err
    code, _, err = cli(["vectorize", range_server.url + "gone_classes.tif", "-o", str(tmp_path / "x.gpkg")])
    assert code == 1 and err.startswith(f"error: {range_server.url}gone_classes.tif: cannot open as a raster (")
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.gpkg").exists()


@pytest.mark.parametrize("cleanup", [EXACT, {}], ids=["exact", "default-cleanup"])
def test_polygonising_in_a_second_process_changes_nothing_in_the_file(tmp_path, cleanup):
    # a busy map: random classes on an 8-pixel grid, nodata in one corner, many strips
    rng = np.random.default_rng(5)
    array = np.kron(rng.integers(0, 6, (64, 48)), np.ones((8, 8), int)).astype(np.uint8)
    array[:40, :30] = NODATA_CLASS
    names = ["impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter"]
    raster = _write_classes(tmp_path / "busy.tif", array, names)
    written = {}
    for parallel in (True, False):
        options = VectorizeOptions(classes=("building", "car"), strip_rows=48, parallel=parallel, **cleanup)
        written[parallel] = vectorize(raster, tmp_path / f"objects_{parallel}.gpkg", options).output
    for layer in ("building", "car"):
        a, b = (pyogrio.read_dataframe(written[p], layer=layer) for p in (True, False))
        assert len(a) > 50 and a.drop(columns="geometry").equals(b.drop(columns="geometry"))
        assert list(shapely.to_wkb(a.geometry.values)) == list(shapely.to_wkb(b.geometry.values))


def _polygonizers() -> list[int]:
    """This process's living polygonising workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"aerialseg.vector.polygonizer" in command:
            found.append(int(stat.parent.name))
    return found


def test_a_caller_that_stops_early_ends_the_polygonising_process():
    array = _tricky_raster()
    batches = iter_region_batches(_strips(array, 10), [1, 4], array.shape[0])
    next(batches)
    assert len(_polygonizers()) == 1
    batches.close()
    assert _polygonizers() == []


def test_the_polygonising_process_reports_its_failure():
    worker = Polygonizer()
    worker.submit(np.ones((4, 4), np.int64), np.array([1]), 0)  # GDAL's polygoniser takes no int64
    with pytest.raises(RuntimeError, match="the polygonising process failed: ValueError"):
        worker.receive()
    worker.close()
    assert worker.process.returncode is not None

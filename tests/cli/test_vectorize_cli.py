"""`aerialseg vectorize` from the command line: layers written, bad requests one line with exit 1."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.transform import from_origin


@pytest.fixture
def classes(tmp_path):
    a = np.zeros((64, 64), np.uint8)
    a[4:30, 4:30] = 1
    a[40:44, 40:48] = 4
    path = tmp_path / "map_classes.tif"
    profile = dict(
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint8",
        crs="EPSG:32632",
        nodata=255,
        transform=from_origin(500000, 5000000, 0.25, 0.25),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(a, 1)
        dst.update_tags(1, CLASS_NAMES=json.dumps(["imp", "building", "low", "tree", "car", "clutter"]))
    return path


def test_vectorize_writes_a_layer_per_class(tmp_path, classes, cli):
    code, out, _ = cli(["vectorize", str(classes), "-o", str(tmp_path / "o.gpkg"), "--json"])
    assert code == 0 and json.loads(out)["counts"] == {"building": 1, "car": 1}
    assert sorted(pyogrio.list_layers(tmp_path / "o.gpkg")[:, 0]) == ["building", "car", "layer_styles"]


@pytest.mark.parametrize(
    "extra, expected_code, message",
    [
        (["--classes", "road"], 1, "no class 'road' (classes: 0=imp, 1=building"),  # known once the raster is read
        (["--simplify", "much"], 2, "give a tolerance like 1px or 0.3m"),  # usage errors
        (["--car-geometry", "circle"], 2, "'circle' is not one of 'outline', 'box'"),
    ],
)
def test_bad_requests_are_one_line_with_their_exit_code(tmp_path, classes, cli, extra, expected_code, message):
    code, _, err = cli(["vectorize", str(classes), "-o", str(tmp_path / "o.gpkg"), *extra])
    assert code == expected_code and len(err.strip().splitlines()) == 1 and message in " ".join(err.split())
    assert not (tmp_path / "o.gpkg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map_classes.tif"]


def test_a_single_layer_output_writes_its_style_beside_it_like_an_output(tmp_path, classes, cli):
    out, style = tmp_path / "o.fgb", tmp_path / "o.qml"
    style.write_text("the user's style")
    code, _, err = cli(["vectorize", str(classes), "-o", str(out)])
    assert code == 1 and f"{style}: output exists; pass --overwrite" in " ".join(err.split())
    assert not out.exists() and style.read_text() == "the user's style"
    code, _, _ = cli(["vectorize", str(classes), "-o", str(out), "--overwrite"])
    assert code == 0 and out.exists() and 'type="categorizedSymbol"' in style.read_text()

"""Real QGIS, headless: the NEON class raster and its objects open styled with no styling step.

QGIS's Python bindings belong to a Python of their own (Debian's python3-qgis is built for
/usr/bin/python3), so QGIS runs in a subprocess of that Python (the ``qgis_python`` fixture)
on tests/qgis_check.py, which answers in JSON; the test compares the answer with the model
card. CI installs QGIS (.ci/run); elsewhere, without it, every test here skips saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

_CHECK = Path(__file__).resolve().parent / "qgis_check.py"


@pytest.fixture(scope="module")
def seen(qgis_python, neon_map, neon_tif, tmp_path_factory) -> dict:
    """What QGIS shows of the NEON outputs (see tests/qgis_check.py), rendered alone and over the orthophoto."""
    from aerialseg.vector import VectorizeOptions, vectorize

    folder = tmp_path_factory.mktemp("qgis")
    single = vectorize(neon_map.classes, folder / "neon_objects.fgb", VectorizeOptions(classes=neon_map.layers))
    png, overlaid = folder / "neon.png", folder / "neon_overlaid.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(folder)}
    command = [qgis_python, str(_CHECK), str(neon_map.classes), str(neon_map.objects)]
    done = subprocess.run(
        [*command, "--single", str(single.output), "--png", str(png)]
        + ["--orthophoto", str(neon_tif), "--overlay-png", str(overlaid)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout) | {"png": png, "overlaid_png": overlaid}


def test_the_class_raster_opens_paletted_with_the_class_names(seen, neon_map):
    raster = seen["raster"]
    assert raster["valid"] and raster["renderer"] == "paletted"
    card = [[i, c.name, [*c.color, 255]] for i, c in enumerate(neon_map.card.classes)]
    assert raster["classes"] == card  # the .qml: the classes only, named and coloured
    assert raster["transparent"] == [[255, 255, 100]]  # nodata
    # without the .qml, QGIS's own paletted legend of the palette is labelled from GDAL's category names
    plain = seen["raster_without_qml"]
    assert plain["renderer"] == "paletted" and plain["classes"][: len(card)] == card


def test_each_objects_layer_opens_with_its_stored_default_style(seen, neon_map):
    assert seen["sublayers"] == list(neon_map.layers)  # QGIS does not offer layer_styles as a layer
    colors = {c.name: list(c.color) for c in neon_map.card.classes}
    for name in neon_map.layers:
        layer = seen["layers"][name]
        assert layer["valid"] and layer["renderer"] == "singleSymbol" and layer["styles_in_file"] == [name]
        assert layer["fill"] == [*colors[name], 102] and layer["outline"] == [*colors[name], 255]
        assert layer["without_default_style"]["fill"] != layer["fill"]  # the colours come from the stored style
    assert seen["layers"]["clutter"]["features"] > 0


def test_a_single_layer_file_opens_with_the_qml_beside_it(seen, neon_map):
    single = seen["single"]
    assert single["renderer"] == "categorizedSymbol" and single["attribute"] == "class"
    colors = {c.name: list(c.color) for c in neon_map.card.classes}
    assert [(value, label) for value, label, _ in single["categories"]] == [(n, n) for n in neon_map.layers]
    assert [symbol["fill"] for _, _, symbol in single["categories"]] == [[*colors[n], 102] for n in neon_map.layers]


def test_qgis_renders_the_map_in_the_class_colours(seen, neon_map):
    assert seen["rendered"]
    with rasterio.open(seen["png"]) as png:  # GDAL reads PNG too
        pixels = png.read()[:3].reshape(3, -1).T
    drawn = {tuple(rgb) for rgb in np.unique(pixels, axis=0).tolist()}
    with rasterio.open(neon_map.classes) as src:
        present = set(np.unique(src.read(1)).tolist()) - {255}
    assert len(present) > 1 and {tuple(neon_map.card.classes[i].color) for i in present} <= drawn


def test_qgis_draws_the_map_half_transparent_over_the_orthophoto(seen, neon_tif):
    """The Quick start's picture: each drawn pixel mixes its class colour with the photo beneath it."""
    assert seen["overlaid"]
    with rasterio.open(seen["overlaid_png"]) as png, rasterio.open(seen["png"]) as plain:
        mixed, flat = png.read()[:3].reshape(3, -1).T, plain.read()[:3].reshape(3, -1).T
    # the class map alone has a few colours (classes, outlines, their edges); the photo shows through in thousands
    assert len(np.unique(flat, axis=0)) < 200 < 5000 < len(np.unique(mixed, axis=0))

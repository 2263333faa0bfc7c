"""The class raster's styles on the NEON orthophoto: what GDAL reads back and the QML QGIS loads, against the card.

rasterio has no API for GDAL's category names or attribute tables, so GDAL itself is asked
through ctypes (rasterio's own copy of the library, when its wheel bundles one), and the
sidecar is also read as the XML it is. Expected values always come from the model card.
"""

from __future__ import annotations

import ctypes
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import rasterio

from aerialseg.conventions import NODATA_CLASS
from aerialseg.options import InputOptions, OutputOptions, TilingOptions
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.sink import assemble_bands, class_raster

TILING = TilingOptions(tile_size=128, overlap=32)


def expected(card):
    """``(class id, name, (r, g, b))`` of every class, from the card alone."""
    return [(i, c.name, tuple(c.color)) for i, c in enumerate(card.classes)]


class Gdal:
    """The few GDAL C functions that read a band's category names and attribute table."""

    def __init__(self, library: Path):
        lib = ctypes.CDLL(str(library))
        handle, text = ctypes.c_void_p, ctypes.c_char_p
        signatures = {
            "GDALOpen": (handle, [text, ctypes.c_int]),
            "GDALClose": (None, [handle]),
            "GDALGetGeoTransform": (ctypes.c_int, [handle, ctypes.POINTER(ctypes.c_double)]),
            "GDALGetRasterBand": (handle, [handle, ctypes.c_int]),
            "GDALGetRasterCategoryNames": (ctypes.POINTER(text), [handle]),
            "GDALGetDefaultRAT": (handle, [handle]),
            "GDALRATGetRowCount": (ctypes.c_int, [handle]),
            "GDALRATGetColumnCount": (ctypes.c_int, [handle]),
            "GDALRATGetUsageOfCol": (ctypes.c_int, [handle, ctypes.c_int]),
            "GDALRATGetValueAsString": (text, [handle, ctypes.c_int, ctypes.c_int]),
        }
        for name, (restype, argtypes) in signatures.items():
            getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
        lib.GDALAllRegister()
        self.lib = lib

    def categories(self, path: Path) -> tuple[list[str], list[list[str]], list[int]]:
        """Band 1's category names, and its attribute table's rows and column usages."""
        lib = self.lib
        dataset = lib.GDALOpen(str(path).encode(), 0)
        assert dataset
        try:
            # GTiff loads its PAM sidecar lazily; reading the georeferencing does it, as QGIS does first.
            lib.GDALGetGeoTransform(dataset, (ctypes.c_double * 6)())
            band = lib.GDALGetRasterBand(dataset, 1)
            listed = lib.GDALGetRasterCategoryNames(band)
            names = []
            while listed and listed[len(names)] is not None:
                names.append(listed[len(names)].decode())
            rat = lib.GDALGetDefaultRAT(band)
            if not rat:
                return names, [], []
            columns = range(lib.GDALRATGetColumnCount(rat))
            rows = [
                [lib.GDALRATGetValueAsString(rat, row, col).decode() for col in columns]
                for row in range(lib.GDALRATGetRowCount(rat))
            ]
            return names, rows, [lib.GDALRATGetUsageOfCol(rat, col) for col in columns]
        finally:
            lib.GDALClose(dataset)


@pytest.fixture(scope="module")
def gdal() -> Gdal:
    """rasterio's bundled GDAL; skips where rasterio links a GDAL of the system instead."""
    root = Path(rasterio.__file__).parent
    found = sorted([*root.parent.glob("rasterio.libs/libgdal*.so*"), *root.glob(".dylibs/libgdal*.dylib")])
    if not found:
        pytest.skip("needs the GDAL library bundled in rasterio's wheel (reached through ctypes)")
    return Gdal(found[0])


def test_gdal_reads_the_class_names_and_colours_of_the_class_raster(neon_map, gdal):
    names, rows, usages = gdal.categories(neon_map.classes)
    classes = expected(neon_map.card)
    assert names == [name for _, name, _ in classes]
    # Value (min-max), class name, red, green, blue, alpha: GDAL's usages 5, 2, 6, 7, 8, 9
    assert usages == [5, 2, 6, 7, 8, 9]
    assert rows == [[str(i), name, *(str(v) for v in color), "255"] for i, name, color in classes]
    with rasterio.open(neon_map.classes) as src:  # the palette inside the GeoTIFF, as before
        palette = src.colormap(1)
        assert src.nodata == NODATA_CLASS and palette[NODATA_CLASS][3] == 0
    assert [palette[i][:3] for i, _, _ in classes] == [color for _, _, color in classes]


def test_the_pam_sidecar_is_gdal_xml_with_names_and_table(neon_map):
    band = ET.parse(f"{neon_map.classes}.aux.xml").getroot().find("PAMRasterBand")
    assert band.get("band") == "1"
    classes = expected(neon_map.card)
    assert [c.text for c in band.iter("Category")] == [name for _, name, _ in classes]
    table = band.find("GDALRasterAttributeTable")
    assert table.get("tableType") == "thematic"
    assert [f.findtext("Name") for f in table.iter("FieldDefn")] == ["Value", "Class", "Red", "Green", "Blue", "Alpha"]
    rows = [[f.text for f in row.iter("F")] for row in table.iter("Row")]
    assert rows == [[str(i), name, *(str(v) for v in color), "255"] for i, name, color in classes]


def test_the_qml_beside_the_class_raster_lists_every_class(neon_map):
    qml = neon_map.classes.with_suffix(".qml")
    assert qml.read_text(encoding="utf-8").startswith("<!DOCTYPE qgis")
    root = ET.parse(qml).getroot()
    assert root.tag == "qgis" and root.get("version").startswith("3.")
    renderer = root.find("pipe/rasterrenderer")
    assert (renderer.get("type"), renderer.get("band")) == ("paletted", "1")
    entries = [
        (int(e.get("value")), e.get("label"), e.get("color"), e.get("alpha")) for e in renderer.iter("paletteEntry")
    ]
    assert entries == [(i, name, "#" + bytes(color).hex(), "255") for i, name, color in expected(neon_map.card)]
    (clear,) = renderer.iter("pixelListEntry")
    assert (clear.get("min"), clear.get("max"), clear.get("percentTransparent")) == ("255", "255", "100")
    resampling = root.find("pipe/provider/resampling")
    assert (
        resampling.get("zoomedOutResamplingMethod") == resampling.get("zoomedInResamplingMethod") == "nearestNeighbour"
    )


def test_only_the_delivered_class_raster_has_style_files(tmp_path, neon_tif, context_runner):
    output = OutputOptions(probabilities=True, uncertainty=True)
    predict(neon_tif, tmp_path / "map.tif", context_runner(), PredictOptions(TILING, output=output))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.qml",
        "map.tif",
        "map.tif.aux.xml",
        "map_probabilities.tif",
        "map_uncertainty.tif",
    ]
    parts = tmp_path / "parts"  # a cluster's bands of rows and eval's unsaved maps: read once, not delivered
    parts.mkdir()
    predict(neon_tif, parts / "part.tif", context_runner(), PredictOptions(TILING, output=OutputOptions(cog=False)))
    assert [p.name for p in parts.iterdir()] == ["part.tif"]


def test_a_raster_assembled_from_bands_of_rows_has_the_style_files(tmp_path, neon_tif, neon_map, context_runner):
    parts = []
    for start, stop in ((0, 150), (150, 400)):  # as a cluster splits the 400 rows
        part = tmp_path / f"{start}.tif"
        options = PredictOptions(TILING, InputOptions(rows=(start, stop)), OutputOptions(cog=False))
        predict(neon_tif, part, context_runner(), options)
        parts.append((start, part))
    target = tmp_path / "assembled.tif"
    assemble_bands(parts, target, class_raster(neon_map.card), overwrite=False)
    assert sorted(p.name for p in tmp_path.glob("assembled*")) == [
        "assembled.qml",
        "assembled.tif",
        "assembled.tif.aux.xml",
    ]
    assert target.with_suffix(".qml").read_text() == neon_map.classes.with_suffix(".qml").read_text()
    assert Path(f"{target}.aux.xml").read_text() == Path(f"{neon_map.classes}.aux.xml").read_text()

"""Styles QGIS and GDAL read, so a class map and its objects open coloured and labelled with no styling step.

Every style here is made from one class list, :class:`ClassStyle` (id, name, colour), in the
formats the readers actually use:

* GDAL category names and a raster attribute table in the PAM sidecar ``<raster>.aux.xml``
  (:func:`pam_xml`). A GeoTIFF holds the palette but nowhere to put class names: GDAL's GTiff
  driver keeps category names and attribute tables only in that sidecar (measured with GDAL
  3.10). QGIS labels a paletted band with the category names (measured with QGIS 3.22); the
  table serves tools that read raster attribute tables.
* A QML style beside a file, ``<stem>.qml`` (:func:`qml_path`), which QGIS applies when the
  file is added: the class raster's paletted renderer (:func:`paletted_qml`: only the classes,
  where GDAL's palette alone lists all 256 entries) and the categories of a single-layer
  objects file (:func:`categorized_qml`).
* The ``layer_styles`` table of a GeoPackage (:func:`write_layer_styles`), where QGIS looks for
  each layer's default style before any file beside it; one fill per class (:func:`fill_qml`).

The QML is the subset of what QGIS 3.22 itself saves for these renderers (the oldest QGIS the
tests load it in); newer versions read it unchanged.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from .conventions import LAYER_STYLES, PAM_SUFFIX, QML_SUFFIX

__all__ = [
    "ClassStyle",
    "qml_path",
    "pam_path",
    "raster_sidecars",
    "pam_xml",
    "paletted_qml",
    "fill_qml",
    "categorized_qml",
    "write_layer_styles",
    "QML_VERSION",
    "FILL_ALPHA",
]

QML_VERSION = "3.22.0"
"""The QGIS version the QML is written as (QGIS upgrades older styles on reading, never newer ones)."""

FILL_ALPHA = 102
"""Opacity of an object's fill (40 %): the orthophoto stays visible under the objects; the outline is opaque."""

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
# GDAL's raster attribute table codes: field types and usages (gdal.h GDALRATFieldType, GDALRATFieldUsage).
_INTEGER, _STRING = 0, 2
_MIN_MAX, _NAME, _RED, _GREEN, _BLUE, _ALPHA = 5, 2, 6, 7, 8, 9


@dataclass(frozen=True)
class ClassStyle:
    """One class as the styles show it: its pixel value (class id), its name and its RGB colour."""

    value: int
    name: str
    color: tuple[int, int, int]


def qml_path(path: Path) -> Path:
    """The style QGIS loads with the file at ``path``: the same folder and stem, ``.qml``."""
    return path.with_suffix(QML_SUFFIX)


def pam_path(path: Path) -> Path:
    """GDAL's PAM sidecar of the raster at ``path``: ``<name>.aux.xml``."""
    return path.with_name(path.name + PAM_SUFFIX)


def raster_sidecars(path: Path) -> list[Path]:
    """The files beside a class raster that carry its style: the QML and GDAL's PAM sidecar."""
    return [qml_path(path), pam_path(path)]


def _text(root: ET.Element, doctype: bool = False) -> str:
    ET.indent(root)
    return (_DOCTYPE if doctype else "") + ET.tostring(root, encoding="unicode") + "\n"


def pam_xml(classes: Sequence[ClassStyle]) -> str:
    """The ``.aux.xml`` of a class raster: band 1's category names (index = class id) and attribute table.

    Ids without a class get an empty category name, as GDAL writes them.
    """
    band = ET.Element("PAMRasterBand", band="1")
    names = ET.SubElement(band, "CategoryNames")
    by_value = {c.value: c.name for c in classes}
    for class_id in range(max(by_value, default=-1) + 1):
        ET.SubElement(names, "Category").text = by_value.get(class_id, "")
    table = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    fields = [
        ("Value", _INTEGER, _MIN_MAX),
        ("Class", _STRING, _NAME),
        ("Red", _INTEGER, _RED),
        ("Green", _INTEGER, _GREEN),
        ("Blue", _INTEGER, _BLUE),
        ("Alpha", _INTEGER, _ALPHA),
    ]
    for index, (name, kind, usage) in enumerate(fields):
        field = ET.SubElement(table, "FieldDefn", index=str(index))
        for tag, text in (("Name", name), ("Type", str(kind)), ("Usage", str(usage))):
            ET.SubElement(field, tag).text = text
    for index, c in enumerate(classes):
        row = ET.SubElement(table, "Row", index=str(index))
        for cell in (c.value, c.name, *c.color, 255):
            ET.SubElement(row, "F").text = str(cell)
    root = ET.Element("PAMDataset")
    root.append(band)
    return _text(root)


def paletted_qml(classes: Sequence[ClassStyle], nodata: int) -> str:
    """QGIS's paletted renderer of band 1: each class's value, colour and name; ``nodata`` fully transparent.

    Nearest-neighbour resampling only: a class id is a category, never to be interpolated.
    """
    root = ET.Element("qgis", version=QML_VERSION, styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(
        provider,
        "resampling",
        enabled="false",
        maxOversampling="2",
        zoomedInResamplingMethod="nearestNeighbour",
        zoomedOutResamplingMethod="nearestNeighbour",
    )
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor=""
    )
    transparency = ET.SubElement(ET.SubElement(renderer, "rasterTransparency"), "singleValuePixelList")
    ET.SubElement(transparency, "pixelListEntry", min=str(nodata), max=str(nodata), percentTransparent="100")
    palette = ET.SubElement(renderer, "colorPalette")
    for c in classes:
        ET.SubElement(palette, "paletteEntry", value=str(c.value), color=_hex(c.color), alpha="255", label=c.name)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"
    return _text(root, doctype=True)


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _fill_symbol(parent: ET.Element, name: str, color: tuple[int, int, int]) -> None:
    """A simple fill: the class colour at :data:`FILL_ALPHA`, outlined opaque in the same colour.

    Properties are written both ways QGIS has stored them (``Option`` map and ``prop``), as 3.22 does.
    """
    symbol = ET.SubElement(parent, "symbol", type="fill", name=name, alpha="1", clip_to_extent="1", force_rhr="0")
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
    rgb = ",".join(str(v) for v in color)
    props = {
        "color": f"{rgb},{FILL_ALPHA}",
        "style": "solid",
        "outline_color": f"{rgb},255",
        "outline_style": "solid",
        "outline_width": "0.4",
        "outline_width_unit": "MM",
        "joinstyle": "miter",
    }
    options = ET.SubElement(layer, "Option", type="Map")
    for key, value in props.items():
        ET.SubElement(options, "Option", name=key, value=value, type="QString")
    for key, value in props.items():
        ET.SubElement(layer, "prop", k=key, v=value)


def _vector_qml(renderer_type: str, **attributes: str) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("qgis", version=QML_VERSION, styleCategories="Symbology")
    attributes = {"type": renderer_type, "symbollevels": "0", "enableorderby": "0", "forceraster": "0", **attributes}
    return root, ET.SubElement(root, "renderer-v2", attributes)


def fill_qml(color: tuple[int, int, int]) -> str:
    """The style of one class's layer: every polygon filled and outlined in the class colour."""
    root, renderer = _vector_qml("singleSymbol")
    _fill_symbol(ET.SubElement(renderer, "symbols"), "0", color)
    return _text(root, doctype=True)


def categorized_qml(attribute: str, classes: Sequence[ClassStyle]) -> str:
    """The style of a layer holding several classes: polygons coloured by the class name in ``attribute``."""
    root, renderer = _vector_qml("categorizedSymbol", attr=attribute)
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for index, c in enumerate(classes):
        ET.SubElement(categories, "category", render="true", symbol=str(index), value=c.name, label=c.name)
        _fill_symbol(symbols, str(index), c.color)
    return _text(root, doctype=True)


def write_layer_styles(gpkg: Path, styles: Mapping[str, str]) -> None:
    """Store ``styles`` (layer name -> QML) in ``gpkg`` as each layer's default style, as QGIS does.

    The table and its ``gpkg_contents`` entry (an attributes table) are those QGIS creates through
    GDAL; a row names its layer and geometry column, which is how QGIS finds the default style.
    Raises OSError when SQLite cannot write them.
    """
    import sqlite3  # here: the command line's start reads this module's neighbours, not SQLite

    try:
        with closing(sqlite3.connect(gpkg)) as db, db:
            columns = dict(db.execute("SELECT table_name, column_name FROM gpkg_geometry_columns").fetchall())
            db.execute(_CREATE_LAYER_STYLES)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            db.execute(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, last_change, srs_id) "
                "VALUES (?, 'attributes', ?, ?, 0)",
                (LAYER_STYLES, LAYER_STYLES, stamp),
            )
            db.executemany(
                f"INSERT INTO {LAYER_STYLES} (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
                "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL, ?)",
                list(_rows(styles, columns, stamp)),
            )
    except sqlite3.Error as exc:
        # An OSError, so the atomic_output around the temporary file reports it under the output's name.
        raise OSError(f"cannot store the QGIS layer styles: {exc}") from exc


def _rows(styles: Mapping[str, str], columns: Mapping[str, str], stamp: str) -> Iterable[tuple[str, ...]]:
    for layer, qml in styles.items():
        yield layer, columns.get(layer, "geom"), layer, qml, "aerialseg class colours", stamp


# The layout QGIS's OGR provider gives the table (its fields created through GDAL's GeoPackage driver).
_CREATE_LAYER_STYLES = f"""CREATE TABLE "{LAYER_STYLES}" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  "f_table_catalog" TEXT(256),
  "f_table_schema" TEXT(256),
  "f_table_name" TEXT(256),
  "f_geometry_column" TEXT(256),
  "styleName" TEXT(30),
  "styleQML" TEXT,
  "styleSLD" TEXT,
  "useAsDefault" BOOLEAN,
  "description" TEXT,
  "owner" TEXT(30),
  "ui" TEXT(30),
  "update_time" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)"""

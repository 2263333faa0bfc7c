"""What QGIS shows of aerialseg's outputs: run by a Python that has QGIS (not the test's), answers in JSON.

QGIS's Python bindings belong to the system Python (Debian's python3-qgis), not to the test
environment, so tests/test_qgis.py runs this file as a script rather than importing it:

    python3 tests/qgis_check.py CLASSES.tif OBJECTS.gpkg [--single OBJECTS.fgb] [--png OUT.png]
        [--orthophoto ORTHO.tif --overlay-png OUT.png]

It loads the class raster and every layer of the objects GeoPackage headless, the way QGIS
adds them (default styles on) and again with default styles off, and prints what each
renderer holds; ``--png`` renders the objects over the class raster into a picture, and
``--overlay-png`` the objects over the class raster drawn half transparent over the
orthophoto (:func:`overlay`: the README's pictures of QGIS).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _rgba(color) -> list[int]:
    return list(color.getRgb())


def _raster(path: str, default_style: bool) -> dict:
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(path, "classes", "gdal", QgsRasterLayer.LayerOptions(loadDefaultStyle=default_style))
    renderer = layer.renderer()
    transparency = renderer.rasterTransparency()
    return {
        "valid": layer.isValid(),
        "renderer": renderer.type(),
        "classes": [[int(c.value), c.label, _rgba(c.color)] for c in getattr(renderer, "classes", list)()],
        "transparent": [[e.min, e.max, e.percentTransparent] for e in transparency.transparentSingleValuePixelList()]
        if transparency
        else [],
    }


def _symbol(symbol) -> dict:
    fill = symbol.symbolLayer(0)
    return {"fill": _rgba(fill.color()), "outline": _rgba(fill.strokeColor()), "outline_mm": fill.strokeWidth()}


def _vector(uri: str, default_style: bool) -> dict:
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(uri, "objects", "ogr", QgsVectorLayer.LayerOptions(loadDefaultStyle=default_style))
    renderer = layer.renderer()
    out = {"valid": layer.isValid(), "features": layer.featureCount(), "renderer": renderer.type()}
    if renderer.type() == "singleSymbol":
        out |= _symbol(renderer.symbol())
    elif renderer.type() == "categorizedSymbol":
        out["attribute"] = renderer.classAttribute()
        out["categories"] = [[c.value(), c.label(), _symbol(c.symbol())] for c in renderer.categories()]
    stored = layer.listStylesInDatabase()  # (count related to this layer, ids, names, descriptions, error)
    out["styles_in_file"] = stored[2][: stored[0]] if stored[0] > 0 else []
    return out, layer


def overlay(orthophoto: str, classes: str, objects: list) -> list:
    """The layers of a map over its orthophoto, top first: ``objects``, the class raster at 30 % opacity, the photo."""
    from qgis.core import QgsRasterLayer

    photo = QgsRasterLayer(orthophoto, "orthophoto")
    raster = QgsRasterLayer(classes, "classes")
    raster.renderer().setOpacity(0.3)
    return [*objects, raster, photo]


def render(layers: list, extent_layer, png: str, size: int = 480) -> bool:
    """``layers`` (top first) drawn over ``extent_layer``'s extent into a ``size``-pixel square PNG."""
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(extent_layer.crs())
    settings.setExtent(extent_layer.extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage().save(png, "PNG")


def _report(args: argparse.Namespace) -> dict:
    """Everything QGIS shows; the layers are gone when it returns (QGIS must outlive them)."""
    from qgis.core import Qgis, QgsDataProvider, QgsRasterLayer, QgsVectorLayer

    report = {"qgis": Qgis.QGIS_VERSION, "raster": _raster(args.classes, True)}
    report["raster_without_qml"] = _raster(args.classes, False)
    whole = QgsVectorLayer(args.objects, "list", "ogr")
    names = [entry.split(QgsDataProvider.SUBLAYER_SEPARATOR)[1] for entry in whole.dataProvider().subLayers()]
    report["sublayers"] = names
    layers, drawn = {}, []
    for name in names:
        uri = f"{args.objects}|layername={name}"
        layers[name], layer = _vector(uri, True)
        layers[name]["without_default_style"] = _vector(uri, False)[0]
        drawn.append(layer)
    report["layers"] = layers
    if args.single:
        report["single"] = _vector(args.single, True)[0]
    if args.png:
        raster = QgsRasterLayer(args.classes, "classes")
        report["rendered"] = render([*drawn, raster], raster, args.png)
    if args.overlay_png:
        layers = overlay(args.orthophoto, args.classes, drawn)
        report["overlaid"] = render(layers, layers[-1], args.overlay_png, size=560)
    return report


def main() -> None:
    """Load, describe, optionally render; print one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("classes")
    parser.add_argument("objects")
    parser.add_argument("--single")
    parser.add_argument("--png")
    parser.add_argument("--orthophoto")
    parser.add_argument("--overlay-png")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        report = _report(args)
    finally:
        app.exitQgis()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()

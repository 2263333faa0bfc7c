"""The aerialseg provider inside QGIS's own Python: run by a Python that has QGIS (not the test's), answers in JSON.

tests/test_qgis_provider.py runs it as a script (QGIS's bindings belong to the system Python):

    python3 tests/qgis_provider_check.py PLUGINS_FOLDER cancel RASTER OUTPUT.tif
    python3 tests/qgis_provider_check.py PLUGINS_FOLDER fail INPUT OUTPUT.tif
    python3 tests/qgis_provider_check.py PLUGINS_FOLDER load CLASS_RASTER OBJECTS.gpkg CLASSES
    python3 tests/qgis_provider_check.py PLUGINS_FOLDER dialog RASTER OUT.png
    python3 tests/qgis_provider_check.py PLUGINS_FOLDER render ORTHOPHOTO CLASSES.tif OBJECTS.gpkg OUT.png

It starts QGIS headless with Processing, loads the installed plugin from PLUGINS_FOLDER the way
QGIS does (``classFactory(None).initProcessing()``), and runs algorithms through
``processing.run`` with a feedback that records what the provider tells it. ``cancel`` presses
Cancel at the first progress report; ``dialog`` saves a picture of the predict dialog and
``render`` one of its result over the orthophoto (the README's pictures of QGIS).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time


def _start(plugins: str):
    """QGIS, Processing and the plugin; the application and plugin objects, which must outlive the run."""
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    sys.path.insert(0, plugins)
    import aerialseg_processing

    plugin = aerialseg_processing.classFactory(None)
    plugin.initProcessing()
    return app, plugin


def _feedback(cancel_at_progress: bool):
    """A feedback that keeps the log, the progress and the pid, and optionally cancels at the first progress."""
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.infos, self.warnings, self.errors, self.progress = [], [], [], []
            self.pid = None
            self.canceled_at = None

        def pushInfo(self, info):  # noqa: N802
            self.infos.append(info)
            found = re.match(r"aerialseg \(pid (\d+)\)", info)
            if found:
                self.pid = int(found.group(1))

        def pushWarning(self, warning):  # noqa: N802
            self.warnings.append(warning)

        def reportError(self, error, fatalError=False):  # noqa: N802, N803
            self.errors.append(error)

        def setProgress(self, progress):  # noqa: N802
            super().setProgress(progress)
            self.progress.append(progress)
            if cancel_at_progress and self.canceled_at is None:
                self.canceled_at = time.monotonic()
                self.cancel()

    return Recorder()


def _run(algorithm: str, parameters: dict, feedback, context=None) -> str | None:
    """``processing.run``; the exception's text, None on success."""
    import processing

    try:
        processing.run(algorithm, parameters, feedback=feedback, context=context)
    except Exception as exc:  # QgsProcessingException: the answer names it
        return str(exc)
    return None


def cancel(raster: str, output: str) -> dict:
    """Predict, canceled at the first progress report: how long the group took to go, what is left."""
    feedback = _feedback(cancel_at_progress=True)
    error = _run("aerialseg:predict", {"INPUT": raster, "MODEL": "manet", "OUTPUT": output}, feedback)
    returned = time.monotonic()
    folder = os.path.dirname(output)
    return {
        "error": error,
        "progress": feedback.progress,
        "seconds_after_cancel": None if feedback.canceled_at is None else returned - feedback.canceled_at,
        "pid": feedback.pid,
        "files": sorted(os.listdir(folder)),
    }


def fail(source: str, output: str) -> dict:
    """Predict of an input aerialseg refuses: the exception and the log."""
    feedback = _feedback(cancel_at_progress=False)
    error = _run("aerialseg:predict", {"INPUT": source, "MODEL": "manet", "OUTPUT": output}, feedback)
    return {"error": error, "errors": feedback.errors, "infos": feedback.infos, "exists": os.path.exists(output)}


def load(raster: str, objects: str, classes: str) -> dict:
    """Vectorize into a GeoPackage meant to be loaded: the layers QGIS would load, and their renderers."""
    from qgis.core import (
        QgsProcessingContext,
        QgsProcessingOutputLayerDefinition,
        QgsProject,
        QgsVectorLayer,
    )

    project = QgsProject.instance()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = _feedback(cancel_at_progress=False)
    parameters = {"INPUT": raster, "CLASSES": classes, "OUTPUT": QgsProcessingOutputLayerDefinition(objects, project)}
    error = _run("aerialseg:vectorize", parameters, feedback, context)
    loaded = {}
    for uri, details in context.layersToLoadOnCompletion().items():
        layer = QgsVectorLayer(uri, details.name, "ogr")
        renderer = layer.renderer()
        single = renderer is not None and renderer.type() == "singleSymbol"
        loaded[uri] = {
            "name": details.name,
            "valid": layer.isValid(),
            "features": layer.featureCount(),
            "renderer": renderer.type() if renderer else None,
            "fill": list(renderer.symbol().color().getRgb()) if single else None,
        }
    return {"error": error, "progress": feedback.progress, "loaded": loaded}


def dialog(raster: str, png: str) -> dict:
    """The predict dialog as QGIS shows it, the orthophoto as a project layer, saved as a picture."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(raster, os.path.splitext(os.path.basename(raster))[0])
    QgsProject.instance().addMapLayer(layer)
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("aerialseg:predict")
    window = AlgorithmDialog(algorithm, False, None)
    window.setParameters({"INPUT": layer.id(), "MODEL": "manet", "VECTORIZE": "tree"})
    window.resize(760, 560)
    window.show()
    for _ in range(25):
        QgsApplication.processEvents()
        time.sleep(0.02)
    saved = window.grab().save(png, "PNG")
    window.close()
    return {"saved": saved, "title": window.windowTitle()}


def render(orthophoto: str, classes: str, objects: str, png: str) -> dict:
    """The orthophoto, the class raster over it half transparent, and the objects' layers, as QGIS draws them."""
    from qgis.core import QgsDataProvider, QgsVectorLayer
    from qgis_check import overlay
    from qgis_check import render as draw

    whole = QgsVectorLayer(objects, "objects", "ogr")
    names = [entry.split(QgsDataProvider.SUBLAYER_SEPARATOR)[1] for entry in whole.dataProvider().subLayers()]
    layers = overlay(
        orthophoto, classes, [QgsVectorLayer(f"{objects}|layername={name}", name, "ogr") for name in names]
    )
    return {"saved": draw(layers, layers[-1], png, size=560), "layers": names}


def main() -> None:
    """Start QGIS, run the command named, print one JSON object."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    plugins, command, *arguments = sys.argv[1:]
    app, _plugin = _start(plugins)
    try:
        answer = {"cancel": cancel, "fail": fail, "load": load, "dialog": dialog, "render": render}[command](*arguments)
    finally:
        app.exitQgis()
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()

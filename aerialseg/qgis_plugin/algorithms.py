"""The three algorithms: ``aerialseg:predict``, ``aerialseg:vectorize`` and ``aerialseg:doctor``.

Their ids and parameter names are an interface (models, scripts and ``qgis_process`` calls
name them). Each builds an aerialseg command line from its parameters and runs it
(:mod:`.process`): aerialseg reads the files and writes the outputs, atomically and styled
(``.qml`` sidecars, styles inside GeoPackages), so what QGIS loads is what the command line
writes. INPUT is passed on as the layer's file, or as typed when QGIS cannot open it (a URL,
a STAC item, a missing file): aerialseg reads it or says, in one line, why not.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from processing.core.ProcessingConfig import ProcessingConfig
from qgis.core import (
    NULL,
    QgsDataProvider,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)

from .config import EXECUTABLE_SETTING, PluginConfig, SetupProblem, aerialseg_command
from .process import Canceled, CommandFailed, Percent, run, share_of


class _Algorithm(QgsProcessingAlgorithm):
    """What the three share: the config, the INPUT rule, running aerialseg with QGIS's feedback."""

    command = ""
    title = ""
    help_text = ""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__()
        self.config = config

    def createInstance(self) -> _Algorithm:  # noqa: N802 (QGIS's name)
        """A fresh copy with the same config (QGIS runs copies)."""
        return type(self)(self.config)

    def name(self) -> str:
        """The id after ``aerialseg:``."""
        return self.command

    def displayName(self) -> str:  # noqa: N802 (QGIS's name)
        """The toolbox's entry."""
        return self.title

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS's name)
        """The dialog's help panel."""
        return self.help_text

    def checkParameterValues(self, parameters: dict, context: Any) -> tuple[bool, str]:  # noqa: N802, ANN401
        """QGIS's checks of every parameter but INPUT, which aerialseg checks (it reads more than QGIS opens)."""
        for definition in self.parameterDefinitions():
            name = definition.name()
            if name != "INPUT" and not definition.checkValueIsAcceptable(parameters.get(name), context):
                return False, f"Incorrect parameter value for {name}"
        return True, ""

    def input_source(self, parameters: dict, context: Any) -> str:  # noqa: ANN401
        """INPUT as aerialseg reads it: a file named, else a GDAL layer's source, else the text given.

        A file is passed on without QGIS opening it (opening computes statistics that GDAL may
        save beside the user's file).
        """
        value = parameters.get("INPUT")
        if isinstance(value, str) and os.path.isfile(value):
            return value
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is not None:
            if layer.providerType() != "gdal":
                raise QgsProcessingException(
                    f"INPUT: {layer.name()} is a {layer.providerType()} layer; aerialseg reads raster files (GDAL)"
                )
            return layer.source()
        value = self.parameterAsString(parameters, "INPUT", context).strip()
        if not value:
            raise QgsProcessingException("INPUT: give a raster layer or file")
        return value

    def optional(self, parameters: dict, name: str) -> Any:  # noqa: ANN401
        """A parameter's value, None when it was left blank."""
        value = parameters.get(name)
        return None if value is None or value == NULL or value == "" else value

    def aerialseg(self, arguments: list, feedback: Any, percent: Percent) -> str:  # noqa: ANN401
        """Run ``aerialseg ARGUMENTS``; its stdout, or the algorithm fails with aerialseg's line."""
        try:
            return self.run_aerialseg(arguments, feedback, percent)
        except (SetupProblem, CommandFailed, Canceled) as exc:
            raise QgsProcessingException(str(exc)) from None

    def run_aerialseg(self, arguments: list, feedback: Any, percent: Percent) -> str:  # noqa: ANN401
        """:meth:`aerialseg` with the plugin's own exceptions (see :mod:`.process`)."""
        command = aerialseg_command(ProcessingConfig.getSetting(EXECUTABLE_SETTING) or None, self.config)
        return run([*command, *arguments], feedback, percent)


def _advanced(parameter: Any) -> Any:  # noqa: ANN401
    """``parameter`` shown under the dialog's Advanced Parameters."""
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def _load_each_layer(path: str, context: Any) -> None:  # noqa: ANN401
    """A GeoPackage of several class layers loads as one QGIS layer per class (each with its stored style)."""
    if not context.willLoadLayerOnCompletion(path):
        return
    whole = QgsVectorLayer(path, "objects", "ogr")  # held: its provider lives as long as it does
    entries = whole.dataProvider().subLayers() if whole.isValid() else []
    names = [entry.split(QgsDataProvider.SUBLAYER_SEPARATOR)[1] for entry in entries]
    if len(names) < 2:
        return
    details = context.layerToLoadOnCompletionDetails(path)
    layers = {uri: item for uri, item in context.layersToLoadOnCompletion().items() if uri != path}
    for name in names:
        layers[f"{path}|layername={name}"] = QgsProcessingContext.LayerDetails(name, details.project, name)
    context.setLayersToLoadOnCompletion(layers)


class PredictAlgorithm(_Algorithm):
    """``aerialseg predict`` of one raster: the class raster, and the objects of the classes named."""

    command = "predict"
    title = "Predict land cover"
    help_text = (
        "Maps the orthophoto with an aerialseg model (MANet, MAResU-Net, ABCNet, or a Deepness/GeoDeep ONNX "
        "file): a class raster on the input's grid, opened styled. VECTORIZE names classes (e.g. building,car) "
        "whose polygons go to OUTPUT_OBJECTS. MODEL is a name from 'aerialseg models' or a weights file. "
        "Runs the aerialseg command line of the environment that installed the plugin."
    )

    def initAlgorithm(self, configuration: Any = None) -> None:  # noqa: N802, ANN401 (QGIS's name)
        """INPUT, MODEL, the tiling and engine options, VECTORIZE, OUTPUT, OUTPUT_OBJECTS."""
        choices = self.config.choices
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Orthophoto"))
        self.addParameter(QgsProcessingParameterString("MODEL", "Model (name or weights file)", defaultValue="manet"))
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    "TILE_SIZE", "Tile size in pixels (blank: the model's)", integer, optional=True, minValue=1
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    "OVERLAP", "Overlap in pixels (blank: the model's)", integer, optional=True, minValue=0
                )
            )
        )
        for name, label, options in (
            ("BACKEND", "Engine", choices.get("backend", ["auto"])),
            ("PRECISION", "Precision", choices.get("precision", ["auto"])),
            ("TTA", "Test-time augmentation", ["none", *choices.get("tta", [])]),
        ):
            self.addParameter(_advanced(QgsProcessingParameterEnum(name, label, options, defaultValue=0)))
        self.addParameter(
            QgsProcessingParameterString("VECTORIZE", "Vectorize classes (e.g. building,car)", optional=True)
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Class raster"))
        self.addParameter(
            QgsProcessingParameterVectorDestination("OUTPUT_OBJECTS", "Objects", optional=True, createByDefault=True)
        )

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:  # noqa: N802, ANN401
        """Run ``aerialseg predict`` into OUTPUT (and OUTPUT_OBJECTS)."""
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        model = self.parameterAsString(parameters, "MODEL", context).strip() or "manet"
        arguments = [self.command, self.input_source(parameters, context), "--model", model, "-o", output]
        for name, option in (("TILE_SIZE", "--tile-size"), ("OVERLAP", "--overlap")):
            if self.optional(parameters, name) is not None:
                arguments += [option, str(self.parameterAsInt(parameters, name, context))]
        choices = self.config.choices
        arguments += [
            "--backend",
            choices.get("backend", ["auto"])[self.parameterAsEnum(parameters, "BACKEND", context)],
        ]
        arguments += [
            "--precision",
            choices.get("precision", ["auto"])[self.parameterAsEnum(parameters, "PRECISION", context)],
        ]
        tta = self.parameterAsEnum(parameters, "TTA", context)
        if tta > 0:
            arguments += ["--tta", choices["tta"][tta - 1]]
        results = {"OUTPUT": output}
        classes = self.parameterAsString(parameters, "VECTORIZE", context).strip()
        if classes:
            objects = self.parameterAsOutputLayer(parameters, "OUTPUT_OBJECTS", context)
            if not objects:
                raise QgsProcessingException("VECTORIZE needs OUTPUT_OBJECTS (a vector file); or leave VECTORIZE blank")
            arguments += ["--vectorize", classes, "--objects", objects]
            results["OUTPUT_OBJECTS"] = objects
        feedback.pushConsoleInfo(
            self.aerialseg([*arguments, "--overwrite", "--progress", "json"], feedback, share_of("tiles"))
        )
        if classes:
            _load_each_layer(results["OUTPUT_OBJECTS"], context)
        return results


class VectorizeAlgorithm(_Algorithm):
    """``aerialseg vectorize``: a class raster's polygons, a layer per class."""

    command = "vectorize"
    title = "Vectorize class raster"
    help_text = (
        "Polygons of the classes of a class raster written by aerialseg (or any paletted raster with class "
        "names), with areas, perimeters and, for cars, oriented boxes. CLASSES: names or ids, comma-separated "
        "(blank: building,car). MIN_AREA drops smaller objects (m²)."
    )

    def initAlgorithm(self, configuration: Any = None) -> None:  # noqa: N802, ANN401 (QGIS's name)
        """INPUT, CLASSES, MIN_AREA, OUTPUT."""
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Class raster"))
        self.addParameter(
            QgsProcessingParameterString("CLASSES", "Classes (comma-separated; blank: building,car)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA", "Minimum area (m²)", QgsProcessingParameterNumber.Double, optional=True, minValue=0.0
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", "Objects"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:  # noqa: N802, ANN401
        """Run ``aerialseg vectorize`` into OUTPUT."""
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        arguments = [self.command, self.input_source(parameters, context), "-o", output]
        classes = self.parameterAsString(parameters, "CLASSES", context).strip()
        if classes:
            arguments += ["--classes", classes]
        if self.optional(parameters, "MIN_AREA") is not None:
            arguments += ["--min-area", repr(self.parameterAsDouble(parameters, "MIN_AREA", context))]
        feedback.pushConsoleInfo(
            self.aerialseg([*arguments, "--overwrite", "--progress", "json"], feedback, share_of("rows"))
        )
        _load_each_layer(output, context)
        return {"OUTPUT": output}


class DoctorAlgorithm(_Algorithm):
    """``aerialseg doctor``: the pre-flight report of a raster against a model, as HTML or text."""

    command = "doctor"
    title = "Check raster against model (doctor)"
    help_text = (
        "Before a long run: the raster's layout, CRS, pixel size against the model's, band mapping, nodata "
        "share, the memory and time predict will take, and what to fix. The report is HTML (or text for a "
        ".txt OUTPUT); problems also go to the log."
    )

    def initAlgorithm(self, configuration: Any = None) -> None:  # noqa: N802, ANN401 (QGIS's name)
        """INPUT, MODEL, OUTPUT."""
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Orthophoto"))
        self.addParameter(QgsProcessingParameterString("MODEL", "Model (name or weights file)", defaultValue="manet"))
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Report", "HTML files (*.html);;Text files (*.txt)")
        )

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:  # noqa: N802, ANN401
        """Run ``aerialseg doctor --json``, write its report, log its findings."""
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        model = self.parameterAsString(parameters, "MODEL", context).strip() or "manet"
        arguments = [self.command, self.input_source(parameters, context), "--model", model, "--json"]
        try:
            text = self.run_aerialseg(arguments, feedback, lambda event: None)
        except CommandFailed as exc:  # exit 1 with a report: the raster has problems, which the report says
            if not exc.output.lstrip().startswith("{"):
                raise QgsProcessingException(str(exc)) from None
            text = exc.output
        except (SetupProblem, Canceled) as exc:
            raise QgsProcessingException(str(exc)) from None
        report = json.loads(text)
        for finding in report["findings"]:
            line = f"{finding['message']} (fix: {finding['fix']})" if finding.get("fix") else finding["message"]
            if finding["level"] == "error":
                feedback.reportError(line, False)
            elif finding["level"] == "warning":
                feedback.pushWarning(line)
            else:
                feedback.pushInfo(line)
        written = _html(report) if not output.lower().endswith(".txt") else _text(report)
        _write(output, written)
        feedback.setProgress(100)
        return {"OUTPUT": output}


def _html(report: dict) -> str:
    """The report as an HTML page: facts, then findings (or that there are none)."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in report["facts"].items()
    )
    findings = "".join(
        f"<tr><td>{html.escape(f['level'])}</td><td>{html.escape(f['message'])}</td>"
        f"<td>{html.escape(f.get('fix') or '')}</td></tr>"
        for f in report["findings"]
    )
    found = (
        f"<table><tr><th>level</th><th>finding</th><th>fix</th></tr>{findings}</table>"
        if findings
        else "<p>No problems found.</p>"
    )
    title = html.escape(f"aerialseg doctor: {report['path']}")
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>'
        "<style>th, td { text-align: left; vertical-align: top; padding: 2px 8px; }</style></head>"
        f"<body><h1>{title}</h1><table>{rows}</table><h2>Findings</h2>{found}</body></html>\n"
    )


def _text(report: dict) -> str:
    """The report as plain text."""
    lines = [f"aerialseg doctor: {report['path']}", *(f"{k}: {v}" for k, v in report["facts"].items()), ""]
    findings = [
        f"{f['level']}: {f['message']}" + (f" (fix: {f['fix']})" if f.get("fix") else "") for f in report["findings"]
    ]
    return "\n".join([*lines, *(findings or ["No problems found."])]) + "\n"


def _write(path: str, text: str) -> None:
    """``text`` into ``path`` through a temporary file in its folder, so no half report is left."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.part")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)


ALGORITHMS = (PredictAlgorithm, VectorizeAlgorithm, DoctorAlgorithm)
"""What the provider offers, in the toolbox's order."""

"""What aerialseg's files agree on: class nodata, probability encoding, tag and metadata keys.

Writers and readers of the same files (the sink and the vectorizer, the exporter and the
ONNX runner, ``save_weights`` and the card readers) take these names from here, so a change
is made once. Torch-free and import-light: the command line's start reads it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "NODATA_CLASS",
    "PROBABILITY_SCALE",
    "PROBABILITY_NODATA",
    "CLASS_NAMES_TAG",
    "CARD_KEY",
    "PRECISION_KEY",
    "OUTPUT_KEY",
    "SAMPLE_ORTHOPHOTO",
    "SAMPLE_WEIGHTS_MARK",
    "MODEL_CHOICE_TAG",
    "QML_SUFFIX",
    "PAM_SUFFIX",
    "LAYER_STYLES",
]

NODATA_CLASS = 255
"""Class id of pixels with no valid input (the class raster's nodata)."""

PROBABILITY_SCALE = 254
"""Probability, confidence, margin and entropy rasters store ``round(value x 254)`` as uint8."""

PROBABILITY_NODATA = 255
"""Nodata of the probability and uncertainty rasters (just above the scale)."""

CLASS_NAMES_TAG = "CLASS_NAMES"
"""Dataset tag of the class raster: a JSON list of class names, index = class id."""

CARD_KEY = "aerialseg.card"
"""Key of the JSON model card in safetensors metadata and ONNX metadata properties."""

PRECISION_KEY = "aerialseg.precision"
"""ONNX metadata property naming the precision a graph was exported at (absent: fp32)."""

OUTPUT_KEY = "aerialseg.output"
"""ONNX metadata property saying what the graph returns: ``probabilities`` or ``logits``."""

SAMPLE_ORTHOPHOTO = Path(__file__).resolve().parent / "resources" / "neon_osbs_029.tif"
"""The orthophoto shipped with the package (CC0 NEON crop, 10 cm): examples, export parity, tests."""

SAMPLE_WEIGHTS_MARK = "SAMPLE WEIGHTS"
"""How a card's training notes begin for sample weights (a model name prefers any trained weights to them)."""

MODEL_CHOICE_TAG = "AERIALSEG_MODEL_CHOICE"
"""Tag of a raster predicted with weights chosen by a model name: the name, the weights and their score."""

QML_SUFFIX = ".qml"
"""The style file QGIS applies to a file-based layer: same folder and stem, this suffix (``map.tif`` -> ``map.qml``)."""

PAM_SUFFIX = ".aux.xml"
"""GDAL's sidecar of what a format cannot hold (a GeoTIFF's category names): appended, ``map.tif.aux.xml``."""

LAYER_STYLES = "layer_styles"
"""The GeoPackage table QGIS keeps layer styles in: no class layer may take this name."""

"""What aerialseg's files agree on: class nodata, probability encoding, tag and metadata keys.

Writers and readers of the same files (the sink and the vectorizer, the exporter and the
ONNX runner, ``save_weights`` and the card readers) take these names from here, so a change
is made once. Torch-free and import-light: the command line's start reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = [
    "NODATA_CLASS",
    "PROBABILITY_SCALE",
    "PROBABILITY_NODATA",
    "CLASS_NAMES_TAG",
    "class_tag",
    "CARD_KEY",
    "PRECISION_KEY",
    "OUTPUT_KEY",
    "OutputKind",
    "ONNX_OPSET",
    "SAMPLE_ORTHOPHOTO",
    "SAMPLE_WEIGHTS_MARK",
    "Tag",
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
"""Band tag of the class raster: a JSON list of class names, index = class id."""


def class_tag(class_id: int) -> str:
    """Band tag of the class raster naming one class (``CLASS_4=car``), so ``gdalinfo`` lists the legend."""
    return f"CLASS_{class_id}"


CARD_KEY = "aerialseg.card"
"""Key of the JSON model card in safetensors metadata and ONNX metadata properties."""

PRECISION_KEY = "aerialseg.precision"
"""ONNX metadata property naming the precision a graph was exported at (absent: fp32)."""

OUTPUT_KEY = "aerialseg.output"
"""ONNX metadata property saying what the graph returns: ``probabilities`` or ``logits``."""

OutputKind = Literal["probabilities", "logits"]
"""What an exported graph returns (:data:`OUTPUT_KEY`): what QGIS Deepness and GeoDeep read, or logits."""

ONNX_OPSET = 18
"""The opset ``aerialseg export`` writes by default and the ONNX Runtime path exports at (dynamo exporter)."""

SAMPLE_ORTHOPHOTO = Path(__file__).resolve().parent / "resources" / "neon_osbs_029.tif"
"""The orthophoto shipped with the package (CC0 NEON crop, 10 cm): examples, export parity, tests."""

SAMPLE_WEIGHTS_MARK = "SAMPLE WEIGHTS"
"""How a card's training notes begin for sample weights (a model name prefers any trained weights to them)."""


class Tag:
    """Dataset tags of the rasters aerialseg writes (``gdalinfo`` shows them): what made the map.

    Every raster of a run carries the provenance tags (:mod:`aerialseg.provenance`); a folder
    given as input leaves out a GeoTIFF carrying :attr:`VERSION` (it is an earlier output).
    """

    VERSION = "AERIALSEG_VERSION"
    MODEL = "AERIALSEG_MODEL"
    WEIGHTS_SHA256 = "AERIALSEG_WEIGHTS_SHA256"
    BACKEND = "AERIALSEG_BACKEND"
    PRECISION = "AERIALSEG_PRECISION"
    PRECISION_AGREEMENT = "AERIALSEG_PRECISION_AGREEMENT"
    """The accuracy gate's share of pixels with fp32's class, for a reduced-precision run."""
    TTA = "AERIALSEG_TTA"
    """Test-time augmentation: flip, d4 or none."""
    MODEL_CHOICE = "AERIALSEG_MODEL_CHOICE"
    """Weights chosen by a model name: the name, the weights and their score."""
    SOURCE = "AERIALSEG_SOURCE"
    """The input: a local file's name, a URL without query string or credentials."""
    STAC_ITEM = "AERIALSEG_STAC_ITEM"
    STAC_ASSET = "AERIALSEG_STAC_ASSET"
    BANDS = "AERIALSEG_BANDS"
    SCALING = "AERIALSEG_SCALING"
    TILING = "AERIALSEG_TILING"
    GSD = "AERIALSEG_GSD"
    CARD = "AERIALSEG_CARD"
    """Where the model card came from: aerialseg's own, or an ONNX file's Deepness metadata."""
    CLASS_RULE = "AERIALSEG_CLASS_RULE"
    """How probabilities became classes: the argmax, and a threshold when one applies."""
    CREATED = "AERIALSEG_CREATED"
    MOSAIC = "AERIALSEG_MOSAIC"
    """An output cut from a mosaic: the files predicted together."""
    MOSAIC_INPUTS = "AERIALSEG_INPUTS"
    """Metadata of a mosaic's VRT: its sheets' identities (a resumed mosaic must read the same files)."""


QML_SUFFIX = ".qml"
"""The style file QGIS applies to a file-based layer: same folder and stem, this suffix (``map.tif`` -> ``map.qml``)."""

PAM_SUFFIX = ".aux.xml"
"""GDAL's sidecar of what a format cannot hold (a GeoTIFF's category names): appended, ``map.tif.aux.xml``."""

LAYER_STYLES = "layer_styles"
"""The GeoPackage table QGIS keeps layer styles in: no class layer may take this name."""

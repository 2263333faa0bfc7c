"""vectorize(): a class raster -> one polygon layer per class, streamed strip by strip.

Regions are found exactly and merged across strips (:mod:`.regions`), so no polygon is cut
at a strip or tile border and memory does not grow with the raster's height. The modules
split the work by job: which classes and which clean-up (:mod:`.classes`,
:mod:`.settings`), reading the rasters in strips (:mod:`.strips`), a region as a cleaned
feature measured in ground metres (:mod:`.features`, :mod:`.shapes`, :mod:`.frame`),
writing to a temporary file renamed at the end (:mod:`.writer`), and the run that ties
them together (:mod:`.run`). This module only names the public API.
"""

from __future__ import annotations

from .classes import class_kind, resolve_classes
from .run import VectorizeResult, vectorize
from .settings import VectorizeOptions
from .shapes import Cleanup

__all__ = ["VectorizeOptions", "VectorizeResult", "vectorize", "class_kind", "resolve_classes", "Cleanup"]

"""vectorize(): a class raster -> one polygon layer per class, streamed strip by strip.

Regions are found exactly and merged across strips (:mod:`.regions`), so no polygon is cut
at a strip or tile border and memory does not grow with the raster's height. The modules
split the work by job: which classes and which clean-up (:mod:`.classes`,
:mod:`.settings`), reading the rasters in strips (:mod:`.strips`), a region as a cleaned
feature measured in ground metres (:mod:`.features`, :mod:`.shapes`, :mod:`.frame`), touching
cars told apart (:mod:`.cars`), strips polygonised in a second process (:mod:`.polygonizer`),
writing to a temporary file renamed at the end (:mod:`.writer`), and the run that ties
them together (:mod:`.run`). This module only names the public API, imported when first used:
the command line reads :mod:`.settings` when it starts, and must not load numpy or shapely for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classes import class_kind, resolve_classes
    from .run import VectorizeResult, vectorize
    from .settings import Cleanup, VectorizeOptions

_API = {
    "VectorizeOptions": ".settings",
    "Cleanup": ".settings",
    "VectorizeResult": ".run",
    "vectorize": ".run",
    "class_kind": ".classes",
    "resolve_classes": ".classes",
}

__all__ = ["VectorizeOptions", "Cleanup", "VectorizeResult", "vectorize", "class_kind", "resolve_classes"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

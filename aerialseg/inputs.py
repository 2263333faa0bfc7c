"""Which rasters a batch's inputs name: files, folders, glob patterns, URLs and STAC items, expanded once.

Folders and patterns leave out aerialseg's own outputs (:func:`is_product`), so a rerun beside
earlier results sees the same inputs; a file named explicitly is taken as given. An input is a
local :class:`~pathlib.Path` or a :class:`~aerialseg.locations.RasterRef` (a URL, ``/vsi``
path or STAC item's asset). :func:`aerialseg.batch.predict_batch` is the one caller on the
prediction path: expanding twice would read a STAC item's assets as if they were items.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .conventions import PAM_SUFFIX, QML_SUFFIX, Tag
from .errors import AerialsegError
from .locations import RASTER_SUFFIXES, InputRef, RasterRef, remote_ref
from .outputs import BANDS_FOLDER_SUFFIX

__all__ = ["PRODUCT_SUFFIXES", "expand_inputs", "is_product"]

_log = logging.getLogger(__name__)

PRODUCT_SUFFIXES = ("_classes", "_probabilities", "_uncertainty")
"""Name endings (before the extension) of the rasters aerialseg writes; ``_classes_probabilities`` ends so too."""


def expand_inputs(items: Iterable[str | os.PathLike[str] | RasterRef], asset: str | None = None) -> list[InputRef]:
    """Files, folders (their rasters, sorted), glob patterns, URLs and STAC items, in the order given, without repeats.

    A URL or ``/vsi`` path is one remote input; a ``.json`` file or URL is a STAC Item (or
    ItemCollection), read now, whose ``asset`` (default: its visual image) is the input (see
    :mod:`aerialseg.stac`). A :class:`RasterRef` given is taken as it is. An ``asset`` with no
    STAC item among the inputs is refused: it would silently choose nothing.
    """
    from .stac import is_stac, stac_inputs

    paths: list[InputRef] = []
    items_read = 0
    for item in items:
        text = str(item)
        found: list[InputRef]
        if isinstance(item, RasterRef):
            found = [item]
        elif is_stac(text) and not Path(text).is_dir():
            found, items_read = stac_inputs(text, asset), items_read + 1
        elif isinstance(item, str) and (ref := remote_ref(text)) is not None:
            found = [ref]
        elif Path(text).is_dir():
            files = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
            found = [*_without_products(files)]
        elif any(ch in text for ch in "*?[") and not Path(text).exists():  # a file may have [ in its name
            matches = _without_products(sorted(Path(p) for p in glob.glob(text, recursive=True)))
            items_read += sum(is_stac(str(p)) for p in matches)
            found = [each for p in matches for each in (stac_inputs(str(p), asset) if is_stac(str(p)) else [p])]
        else:
            found = [Path(text)]
        paths += [p for p in found if p not in paths]
    if asset is not None and not items_read:  # it would choose nothing
        raise AerialsegError(
            f"--asset {asset!r} names an asset of a STAC item, but no input is one",
            hint="drop --asset, or give the item's .json file or URL",
        )
    return paths


def is_product(path: Path) -> bool:
    """Whether ``path`` is a file aerialseg wrote (a folder or pattern then leaves it out).

    Known by its name: hidden (scratch files, a cluster's band folders), a raster ending in
    :data:`PRODUCT_SUFFIXES`, an objects file; else, for a GeoTIFF, by aerialseg's provenance tag.
    A style file (``.qml``, GDAL's ``.aux.xml``) is one when the file it styles is one.
    """
    from .vector.writer import FORMATS

    if path.name.startswith(".") or (
        path.parent.name.startswith(".") and path.parent.name.endswith(BANDS_FOLDER_SUFFIX)
    ):
        return True
    if path.stem.endswith("_objects") and path.suffix.lower() in FORMATS:
        return True
    if path.suffix.lower() == QML_SUFFIX or path.name.lower().endswith(PAM_SUFFIX):
        return _styles_a_product(path)
    if path.suffix.lower() not in RASTER_SUFFIXES:
        return False
    if path.stem.endswith(PRODUCT_SUFFIXES):
        return True
    return path.suffix.lower() in (".tif", ".tiff") and _has_provenance(path)


def _styles_a_product(path: Path) -> bool:
    """Whether the style file ``path`` (``.qml``, ``.aux.xml``) is named as a product's or styles a file that is one."""
    from .vector.writer import FORMATS

    if path.suffix.lower() != QML_SUFFIX:
        return is_product(path.with_name(path.name[: -len(PAM_SUFFIX)]))
    if path.stem.endswith((*PRODUCT_SUFFIXES, "_objects")):
        return True
    return any(
        file.is_file() and is_product(file) for file in (path.with_suffix(s) for s in (*RASTER_SUFFIXES, *FORMATS))
    )


def _has_provenance(path: Path) -> bool:
    """Whether the GeoTIFF carries aerialseg's provenance tag (an unreadable file does not: it is reported later)."""
    from .raster import open_raster

    try:
        with open_raster(path, plain_pictures=True) as dataset:
            return Tag.VERSION in dataset.tags()
    except AerialsegError:
        return False


def _without_products(found: list[Path]) -> list[Path]:
    """``found`` without aerialseg's outputs, each one left out logged (``-v`` shows them)."""
    kept = []
    for path in found:
        if is_product(path):
            _log.info("%s: left out, an output of aerialseg", path)
        else:
            kept.append(path)
    return kept

"""STAC Items as inputs: the item's image asset is the raster, its id names the outputs.

Imagery catalogues (Planetary Computer, Earth Search, national orthophoto services) describe
each scene as a STAC Item: a GeoJSON Feature whose ``assets`` hold the files. Predicting an
item reads one asset through the same path as any input (a remote href is a
:class:`~aerialseg.locations.RasterRef`), names the outputs ``<item id>_classes.tif`` (asset
files are often all called ``visual.tif``) and records the id in the provenance tags. The
asset is ``--asset KEY``, else the one keyed ``visual``, else the one whose roles hold
``visual``, else the only ``data`` asset of a TIFF type; anything else is one line listing the
assets. An ItemCollection (a FeatureCollection of items) gives one input per item. The JSON is
small, so it is read here with the standard library (local file or http(s)); no STAC library.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from .atomic import special_kind
from .errors import InputRasterError
from .jsondata import parse_json
from .locations import InputRef, RasterRef, StacOrigin, as_input, remote_ref

__all__ = ["is_stac", "stac_inputs", "choose_asset", "input_of"]

_TIMEOUT_S = 30
_TIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


def is_stac(text: str) -> bool:
    """Whether ``text`` (a path or URL) names a JSON document, taken as a STAC Item or ItemCollection."""
    return text.split("?", 1)[0].split("#", 1)[0].lower().endswith(".json")


def _load(text: str) -> Any:  # noqa: ANN401 (parsed JSON)
    """The parsed JSON at ``text``: a local file or an http(s) URL; one line naming it on any failure."""
    hint = "name a STAC Item (.json) as a local file or an http(s) URL"
    try:
        if re.match(r"^https?://", text, re.IGNORECASE):
            with urllib.request.urlopen(text, timeout=_TIMEOUT_S) as response:  # noqa: S310 (http(s) only)
                raw = response.read()
        elif "://" in text or text.startswith("/vsi"):
            raise InputRasterError("STAC items are read from local files or http(s) URLs only", path=text, hint=hint)
        elif (kind := special_kind(text)) is not None:  # reading a named pipe would wait for a writer
            raise InputRasterError(f"is {kind}, not a STAC item file", path=text, hint=hint)
        else:
            raw = Path(text).read_bytes()
        return parse_json(raw)
    except InputRasterError:
        raise  # worded above (an OSError too: not to be wrapped again)
    except urllib.error.HTTPError as exc:
        raise InputRasterError(f"cannot read the STAC item (HTTP {exc.code} {exc.reason})", path=text) from exc
    except urllib.error.URLError as exc:
        raise InputRasterError(
            f"cannot read the STAC item ({exc.reason})", path=text, hint="check that the URL is reachable"
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise InputRasterError(f"cannot read the STAC item ({exc.strerror or exc})", path=text) from exc
    except ValueError as exc:
        raise InputRasterError(f"is not JSON ({exc})", path=text, hint=hint) from exc


def _describe(key: str, asset: dict[str, Any]) -> str:
    """``key (type, roles a/b)``: one asset as the error lists it."""
    roles = _roles(asset)
    return f"{key} ({asset.get('type') or 'no type'}{', roles ' + '/'.join(roles) if roles else ''})"


def _roles(asset: dict[str, Any]) -> list[str]:
    roles = asset.get("roles")
    return [str(role) for role in roles] if isinstance(roles, list) else []


def _is_tiff(asset: dict[str, Any]) -> bool:
    kind = str(asset.get("type") or "").lower()
    if kind:
        return kind.startswith(_TIFF_TYPES)
    return str(asset.get("href", "")).split("?", 1)[0].lower().endswith((".tif", ".tiff"))


def choose_asset(assets: dict[str, Any], asset: str | None, where: str) -> str:
    """The key of the asset to read (see the module docstring); one line listing the assets when none fits."""
    listing = "; ".join(_describe(key, value) for key, value in assets.items()) or "none"
    if asset is not None:
        if asset in assets:
            return asset
        raise InputRasterError(f"has no asset {asset!r}; its assets: {listing}", path=where, hint="pass --asset KEY")
    if "visual" in assets:
        return "visual"
    visual = [key for key, value in assets.items() if "visual" in _roles(value)]
    if visual:
        return visual[0]
    data = [key for key, value in assets.items() if "data" in _roles(value) and _is_tiff(value)]
    if len(data) == 1:
        return data[0]
    problem = f"has {len(data)} TIFF data assets" if data else "has no visual asset nor a TIFF data asset"
    raise InputRasterError(
        f"{problem}, so which image to read is unclear; its assets: {listing}",
        path=where,
        hint="choose one with --asset KEY",
    )


def _resolve(href: str, base: str) -> InputRef:
    """The asset ``href`` relative to the document at ``base`` (a URL, or a local file's path)."""
    if href.lower().startswith("file://"):
        return Path(href[len("file://") :])
    if remote_ref(href) is not None:
        return as_input(href)
    if remote_ref(base) is not None:  # a relative href of a remote item: relative to its URL
        return as_input(urljoin(base, href))
    return Path(base).parent / href if not Path(href).is_absolute() else Path(href)


def _item_input(item: Any, text: str, base: str, asset: str | None, many: bool) -> RasterRef:  # noqa: ANN401
    """The input of one STAC item (parsed JSON) read from ``text``."""
    where = text
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("id"), str):
        raise InputRasterError("is not a STAC Item (a GeoJSON Feature with an id)", path=where)
    if many:
        where = f"{text}#{item['id']}"
    assets = item.get("assets")
    if not isinstance(assets, dict) or not all(isinstance(value, dict) for value in assets.values()):
        raise InputRasterError("is not a STAC Item: it has no assets", path=where)
    key = choose_asset(assets, asset, where)
    href = assets[key].get("href")
    if not isinstance(href, str) or not href:
        raise InputRasterError(f"asset {key} has no href", path=where)
    links = item.get("links")
    links = links if isinstance(links, list) else []
    self_href = next((link.get("href") for link in links if isinstance(link, dict) and link.get("rel") == "self"), None)
    if isinstance(self_href, str) and remote_ref(self_href) is not None:
        base = self_href  # an item of a collection may live elsewhere than the collection
    target = _resolve(href, base)
    stem = re.sub(r"[^\w.-]+", "_", item["id"]).strip("._") or "item"
    local_item = remote_ref(base) is None
    folder = Path(base).parent if local_item else None
    if isinstance(target, Path):
        origin = StacOrigin(item["id"], key, str(target))
        return RasterRef(where, str(target), stem, local=target, folder=folder, stac=origin)
    origin = StacOrigin(item["id"], key, target.spelling)
    return RasterRef(where, target.gdal_path, stem, folder=folder, stac=origin)


def stac_inputs(text: str, asset: str | None = None) -> list[InputRef]:
    """One input per STAC Item at ``text`` (an Item, or every item of an ItemCollection), ``asset`` read."""
    document = _load(text)
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list) or not features:
            raise InputRasterError("is an ItemCollection without items", path=text)
        return [_item_input(item, text, text, asset, many=True) for item in features]
    return [_item_input(document, text, text, asset, many=False)]


def input_of(item: str | os.PathLike[str] | RasterRef, asset: str | None = None) -> InputRef:
    """The one raster ``item`` names: a STAC Item's asset, or the file or URL itself (``predict``, ``doctor``)."""
    if isinstance(item, RasterRef) or not is_stac(os.fspath(item)):
        return as_input(item)
    found = stac_inputs(os.fspath(item), asset)
    if len(found) != 1:
        raise InputRasterError(f"holds {len(found)} items; name one item", path=item)
    return found[0]

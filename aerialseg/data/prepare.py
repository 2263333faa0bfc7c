"""``prepare``: raw tiles in, patches, full-tile class-id rasters and a manifest out.

Which files are which tile, and in which split, is :mod:`aerialseg.data.archives`' job;
this module cuts and writes. Patches start at 0, stride, 2·stride … and the last one is
shifted inward to end on the raster's edge, so no pixel is missed and no patch is mostly
padding; an axis shorter than a patch is padded at the bottom/right (image 0, label 255).
Each label is converted to class ids once, strip by strip, into its scene raster, and the
label patches are cut from that, so memory holds one strip or one patch, never a tile.
Unlabelled tiles (UAVid test) become scenes with ``label=None`` and no patches, since a
patch without a label would break every reader of ``Manifest.patch_pairs``.
Everything is written into a hidden folder beside ``out`` and renamed at the end: a
failure leaves no half-prepared dataset behind. Since ``out`` is replaced whole, an ``out``
that is, holds or lies inside an input (a folder, the classes file, an image or label reached
through a link) is refused before anything is read or deleted, whatever ``overwrite`` says.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from .. import __version__
from ..atomic import InputFiles
from ..card import ClassInfo
from ..errors import AerialsegError, DatasetLayoutError, OutputExistsError, OutputWriteError
from ..raster import open_raster, read_bands
from .archives import IMAGE_KINDS, TileSource, find_tiles, pair_folder, split_by_fraction
from .classes import IGNORE_INDEX, dataset_info
from .labels import LabelTable, dataset_table, read_folder_classes
from .manifest import Manifest, Scene, SplitInfo

__all__ = ["prepare_dataset", "prepare_folder", "patch_starts", "Progress"]

Progress = Callable[[int, int], None]
"""Called as ``progress(tiles_done, tiles_total)`` before the first tile and after each one."""

_STRIP_ROWS = 256  # label rows converted at once: a 6000-pixel-wide strip is ~5 MB of RGB


def patch_starts(length: int, size: int, stride: int) -> list[int]:
    """Patch offsets along an axis: ``0, stride, …`` and a last one ending on the edge; ``[0]`` if shorter."""
    if length <= size:
        return [0]
    return [*range(0, length - size, stride), length - size]


@dataclass(frozen=True)
class _Cut:
    """How tiles are cut and labels converted (the settings every tile shares)."""

    patch_size: int
    stride: int
    bands: tuple[str, ...]
    table: LabelTable
    tolerance: int


def prepare_dataset(
    dataset: str,
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    patch_size: int = 1024,
    stride: int | None = None,
    image_kind: str | None = None,
    colour_tolerance: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Prepare an extracted official archive (``potsdam``, ``vaihingen`` or ``uavid``) under ``root`` into ``out``.

    ``image_kind`` (Potsdam only) picks the ``RGB`` (default), ``IRRG`` or ``RGBIR`` tiles;
    the manifest's bands follow it. ``stride`` defaults to ``patch_size`` (no overlap).
    ``colour_tolerance`` snaps label colours within that many levels per channel to the
    table's (lossily re-encoded labels). Returns the manifest, ``folder`` set to ``out``.
    """
    name = dataset.lower()
    if name not in ("potsdam", "vaihingen", "uavid"):
        raise AerialsegError(f"unknown dataset {dataset!r}", hint="choose potsdam, vaihingen or uavid")
    if image_kind is not None and name != "potsdam":
        raise AerialsegError("an image kind applies to Potsdam only", hint=f"{name} has one kind of image")
    kind = (image_kind or "RGB").upper()
    if kind not in IMAGE_KINDS:
        raise AerialsegError(f"unknown image kind {image_kind!r}", hint=f"choose one of {', '.join(IMAGE_KINDS)}")
    info = dataset_info(name)
    bands = IMAGE_KINDS[kind] if name == "potsdam" else info.bands
    cut = _settings(patch_size, stride, bands, dataset_table(name), colour_tolerance)
    root, out = Path(root), Path(out)
    _refuse_inputs(out, [("--root", root)])
    _check_output(out, overwrite)
    if not root.is_dir():
        raise DatasetLayoutError("is not a folder", path=root, hint="give the folder the archives were extracted into")
    tiles, sources = find_tiles(name, root, kind)
    return _prepare(name, info.classes, info.gsd_m, tiles, sources, cut, out, progress)


def prepare_folder(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    classes_toml: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    patch_size: int = 1024,
    stride: int | None = None,
    seed: int = 0,
    colour_tolerance: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Prepare a user's own images and labels (paired by file stem) with a classes TOML into ``out``.

    Files are split, not patches, so no tile leaks into two splits: ``val_fraction`` and
    ``test_fraction`` of the files (seeded shuffle) make the ``val`` and ``test`` splits,
    which exist only when asked for. Labels are RGB (matched by class colour) or one band of
    ids, remapped to ``0..K-1`` in the TOML's class order.
    """
    images, labels, out = Path(images), Path(labels), Path(out)
    _refuse_inputs(out, [("--images", images), ("--labels", labels), ("--classes", Path(classes_toml))])
    spec = read_folder_classes(classes_toml)
    cut = _settings(patch_size, stride, spec.bands, spec.table, colour_tolerance)
    _check_output(out, overwrite)
    pairs, unpaired = pair_folder(images, labels)
    by_stem = {stem: (image, label) for stem, image, label in pairs}
    splits = split_by_fraction(list(by_stem), val_fraction, test_fraction, seed)
    tiles = {split: [TileSource(s, split, *by_stem[s]) for s in stems] for split, stems in splits.items()}
    sources = {
        "images": str(images.resolve()),
        "labels": str(labels.resolve()),
        "classes_toml": str(Path(classes_toml).resolve()),
        "recognised_files": 2 * len(pairs),
        "unpaired_labels": unpaired,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    return _prepare("folder", spec.classes, spec.gsd_m, tiles, sources, cut, out, progress)


def _settings(patch_size: int, stride: int | None, bands: tuple[str, ...], table: LabelTable, tolerance: int) -> _Cut:
    """Check the cutting settings before any work, with the valid range in the message."""
    stride = patch_size if stride is None else stride
    if patch_size < 1 or stride < 1:
        raise AerialsegError(f"patch size {patch_size} and stride {stride} must be at least 1")
    if not 0 <= tolerance <= table.max_tolerance():
        raise AerialsegError(
            f"colour tolerance {tolerance} is outside 0-{table.max_tolerance()}",
            hint="larger tolerances would put some colours within reach of two classes",
        )
    return _Cut(patch_size, stride, bands, table, tolerance)


def _refuse_inputs(out: Path, inputs: Sequence[tuple[str, Path]]) -> None:
    """Refuse an ``out`` that is, holds or lies inside one of ``inputs`` (``(option, path)``), whatever ``overwrite``.

    ``out`` is replaced whole when the dataset is ready, so an input in it would be deleted
    with it; patches written inside an input folder would mix with its files. Paths are
    compared as :class:`~aerialseg.atomic.InputFiles` does (same file, or same resolved
    name), and through the folders above each path both as written and with links resolved.
    """
    output = InputFiles([out])
    for option, path in inputs:
        if output.find(path) is not None:
            relation, why = "is", "replacing it would destroy the input"
        elif any(output.find(parent) is not None for parent in _folders_above(path)):
            relation, why = "holds", "replacing it would destroy the input"
        elif any(InputFiles([path]).find(parent) is not None for parent in _folders_above(out)):
            relation, why = "lies inside", "the dataset would replace or mix with the input's files"
        else:
            continue
        raise OutputWriteError(
            f"this output folder {relation} the input {path} ({option}); {why}",
            path=out,
            hint="choose an --out folder outside the inputs",
        )


def _folders_above(path: Path) -> list[Path]:
    """The folders that hold ``path``, as written (made absolute) and with links resolved."""
    return [*Path(os.path.abspath(path)).parents, *Path(os.path.realpath(path)).parents]


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse before any work: a file, or a non-empty folder without ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError("output exists and is not a folder", path=out, hint="give a folder name")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            "output folder exists and is not empty", path=out, hint="pass --overwrite to replace it"
        )


@contextmanager
def _staged_folder(out: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``out``; on success it replaces ``out``, on any failure it is deleted."""
    tag = uuid.uuid4().hex[:8]
    staging = out.parent / f".{out.name}.{tag}.partial"
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create the output ({exc.strerror or exc})", path=out) from exc
    try:
        yield staging
        if out.exists():  # an empty folder, or replaced with overwrite: move it aside, swap, then delete
            old = out.parent / f".{out.name}.{tag}.old"
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _prepare(
    dataset: str,
    classes: tuple[ClassInfo, ...],
    gsd_m: float | None,
    tiles: dict[str, list[TileSource]],
    sources: dict[str, Any],
    cut: _Cut,
    out: Path,
    progress: Progress | None,
) -> Manifest:
    """Write every split's scenes and patches, then the manifest, into a staged folder that becomes ``out``."""
    read = [(f"tile {t.id}", path) for ts in tiles.values() for t in ts for path in (t.image, t.label, t.label_eroded)]
    _refuse_inputs(out, [(tile, path) for tile, path in read if path])  # a file behind a link may live in ``out``
    total, done = sum(len(t) for t in tiles.values()), 0
    if progress:
        progress(0, total)
    with _staged_folder(out) as folder:
        splits = {}
        for split, members in tiles.items():
            counts = np.zeros(256, np.int64)
            patches: list[str] = []
            scenes = []
            for tile in members:
                scene, names, tile_counts = _prepare_tile(tile, folder, cut)
                scenes.append(scene)
                patches += names
                counts += tile_counts
                done += 1
                if progress:
                    progress(done, total)
            has_eroded = bool(members) and all(t.label_eroded for t in members)
            class_pixels = tuple(int(n) for n in counts[: cut.table.num_classes])
            splits[split] = SplitInfo(
                split,
                tuple(t.id for t in members),
                tuple(patches),
                class_pixels,
                int(counts[IGNORE_INDEX]),
                tuple(scenes),
                has_eroded,
            )
        manifest = Manifest(
            dataset=dataset,
            classes=classes,
            bands=cut.bands,
            gsd_m=gsd_m,
            patch_size=cut.patch_size,
            stride=cut.stride,
            splits=splits,
            sources=sources,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            aerialseg_version=__version__,
        )
        manifest.save(folder)
    return replace(manifest, folder=out)


def _georef(src: DatasetReader, window: Window | None = None) -> dict[str, Any]:
    """CRS and transform of ``src`` (or of a window of it) when it has them; nothing for plain pictures."""
    if src.crs is None and src.transform.is_identity:
        return {}
    return {"crs": src.crs, "transform": src.window_transform(window) if window is not None else src.transform}


def _prepare_tile(tile: TileSource, folder: Path, cut: _Cut) -> tuple[Scene, list[str], np.ndarray]:
    """Scene rasters and patches of one tile: ``(scene, patch names, label value counts (256,))``."""
    counts = np.zeros(256, np.int64)
    with open_raster(tile.image, plain_pictures=True) as image:  # UAVid frames are PNGs without georeferencing
        if image.count < len(cut.bands) or image.dtypes[0] != "uint8":
            raise DatasetLayoutError(
                f"image is {image.count} band(s) of {image.dtypes[0]}; {len(cut.bands)} bands of uint8 expected "
                f"({','.join(cut.bands)})",
                path=tile.image,
                hint="convert it first, e.g. gdal_translate -ot Byte -scale",
            )
        if tile.label is None:
            return Scene(tile.id, str(tile.image.resolve()), None), [], counts
        scene_dir = folder / "scenes" / tile.split
        scene_dir.mkdir(parents=True, exist_ok=True)
        label = f"scenes/{tile.split}/{tile.id}_label.tif"
        _write_scene(image, tile.label, folder / label, cut)
        eroded = None
        if tile.label_eroded:
            eroded = f"scenes/{tile.split}/{tile.id}_label_eroded.tif"
            _write_scene(image, tile.label_eroded, folder / eroded, cut)
        eroded_path = folder / eroded if eroded else None
        names = _cut_patches(image, folder / label, eroded_path, folder / tile.split, tile.id, cut, counts)
    return Scene(tile.id, str(tile.image.resolve()), label, eroded), names, counts


def _write_scene(image: DatasetReader, label_path: Path, dest: Path, cut: _Cut) -> None:
    """Convert a whole label raster to class ids strip by strip, on the image's grid."""
    with open_raster(label_path, plain_pictures=True) as label:
        if (label.height, label.width) != (image.height, image.width):
            raise DatasetLayoutError(
                f"label is {label.width}x{label.height} pixels, its image {image.width}x{image.height}",
                path=label_path,
                hint=f"image: {image.name}",
            )
        profile = dict(
            driver="GTiff",
            width=image.width,
            height=image.height,
            count=1,
            dtype="uint8",
            nodata=IGNORE_INDEX,
            compress="deflate",
            tiled=True,
            blockxsize=256,
            blockysize=256,
        )
        geo = _georef(image)
        with open_raster(dest, "w", plain_pictures=not geo, **profile, **geo) as dst:
            for row in range(0, image.height, _STRIP_ROWS):
                window = Window(0, row, image.width, min(_STRIP_ROWS, image.height - row))
                rows = (row, row + int(window.height) - 1)
                colours = read_bands(label, range(1, label.count + 1), window=window)
                ids = cut.table.to_ids(colours, tolerance=cut.tolerance, path=label_path, rows=rows)
                dst.write(ids, 1, window=window)


def _cut_patches(
    image: DatasetReader, label: Path, eroded: Path | None, dest: Path, tile_id: str, cut: _Cut, counts: np.ndarray
) -> list[str]:
    """Write a tile's image and label patches (``<tile>_<row>_<col>``), adding the labels' value counts."""
    size = cut.patch_size
    folders = {"images": dest / "images", "labels": dest / "labels", "eroded": dest / "labels_eroded"}
    if eroded is None:
        del folders["eroded"]
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    names = []
    with ExitStack() as stack:
        sources = {"labels": stack.enter_context(open_raster(label, plain_pictures=True))}
        if eroded:
            sources["eroded"] = stack.enter_context(open_raster(eroded, plain_pictures=True))
        for row in patch_starts(image.height, size, cut.stride):
            for col in patch_starts(image.width, size, cut.stride):
                window = Window(col, row, min(size, image.width - col), min(size, image.height - row))
                name = f"{tile_id}_{row}_{col}"
                geo = _georef(image, window)
                pixels = read_bands(image, range(1, len(cut.bands) + 1), window=window)
                _write_patch(folders["images"] / f"{name}.tif", _padded(pixels, size, 0), geo, cut.bands)
                for key, src in sources.items():
                    ids = _padded(read_bands(src, [1], window=window), size, IGNORE_INDEX)
                    _write_patch(folders[key] / f"{name}.tif", ids, geo)
                    if key == "labels":
                        counts += np.bincount(ids.ravel(), minlength=256)
                names.append(name)
    return names


def _padded(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    """``(bands, h, w)`` -> ``(bands, size, size)``, filled at the bottom and right."""
    if array.shape[1:] == (size, size):
        return array
    out = np.full((array.shape[0], size, size), fill, array.dtype)
    out[:, : array.shape[1], : array.shape[2]] = array
    return out


def _write_patch(path: Path, array: np.ndarray, geo: dict[str, Any], bands: Sequence[str] = ()) -> None:
    """One patch GeoTIFF (deflate); image bands carry their codes as descriptions, labels nodata 255."""
    count, height, width = array.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=array.dtype, compress="deflate")
    if not bands:
        profile["nodata"] = IGNORE_INDEX
    with open_raster(path, "w", plain_pictures=not geo, **profile, **geo) as dst:
        dst.write(array)
        for i, code in enumerate(bands, start=1):
            dst.set_band_description(i, code)

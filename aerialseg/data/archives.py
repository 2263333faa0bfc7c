"""Recognise the raw data: which files are images and labels of which tile, in which split.

Recognition walks ``root`` recursively and goes by file names, so archives may be
extracted anywhere below it:

* Potsdam: ``top_potsdam_<a>_<b>_<RGB|IRRG|RGBIR>.tif`` (only the requested kind is used),
  ``top_potsdam_<a>_<b>_label.tif`` and ``top_potsdam_<a>_<b>_label_noBoundary.tif``.
* Vaihingen: images and full labels share one name, ``top_mosaic_09cm_area<N>.tif``. A file
  is a label when a folder between ``root`` and it has "ground_truth" or "groundtruth" in
  its name, or the word "gt", "gts", "label" or "labels" (words split at anything but a
  letter): ``gts_for_participants``, ``..._Vaihingen_ground_truth_COMPLETE``, ``labels``.
  Whole words only, because the official image folder itself is
  ``ISPRS_semantic_labeling_Vaihingen/top`` ("labeling" is no label) and a folder such as
  "strength" holds no "gt". Eroded labels are ``..._area<N>_noBoundary.tif``.
* UAVid: ``uavid_<train|val|test>/seq<N>/Images/<frame>.png`` and ``.../Labels/<frame>.png``;
  tile ids are ``seq<N>_<frame>``, the split is the folder's. Test frames have no labels.
* A user's folder: images and labels in two folders, paired by file stem (see
  :func:`pair_folder`), split by a seeded shuffle (see :func:`split_by_fraction`).

Splits follow architecture.md §2.3 (tile ids ``2_10`` for Potsdam, ``area30`` for
Vaihingen, 7_10 excluded); tiles in no split are listed in ``sources`` and skipped.
Producers of tile lists only: nothing here reads pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AerialsegError, DatasetLayoutError

__all__ = ["TileSource", "SPLITS", "EXCLUDED", "IMAGE_KINDS", "find_tiles", "pair_folder", "split_by_fraction"]

IMAGE_KINDS = {"RGB": ("R", "G", "B"), "IRRG": ("NIR", "R", "G"), "RGBIR": ("R", "G", "B", "NIR")}
_SPLIT_ORDER = ("train", "val", "test")
_VAIHINGEN = {
    "train": (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 32, 34, 37),
    "val": (30,),
    "test": (2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38),
}
_POTSDAM = {
    "train": "2_11 2_12 3_10 3_11 3_12 4_10 4_11 4_12 5_10 5_11 5_12 6_7 6_8 6_9 6_10 6_11 6_12 7_7 7_8 7_9 7_11 7_12",
    "val": "2_10",
    "test": "2_13 2_14 3_13 3_14 4_13 4_14 4_15 5_13 5_14 5_15 6_13 6_14 6_15 7_13",
}
SPLITS = {
    "vaihingen": {split: tuple(f"area{n}" for n in areas) for split, areas in _VAIHINGEN.items()},
    "potsdam": {split: tuple(ids.split()) for split, ids in _POTSDAM.items()},
}
EXCLUDED = {"potsdam": ("7_10",)}  # erroneous annotation (architecture.md §2.3)
_EXPECTED = {
    "potsdam": "top_potsdam_2_10_RGB.tif (or _IRRG/_RGBIR) with top_potsdam_2_10_label.tif",
    "vaihingen": "top_mosaic_09cm_area1.tif in an image folder and the same name in a ground-truth folder",
    "uavid": "uavid_train/seq1/Images/000000.png with uavid_train/seq1/Labels/000000.png",
}
_POTSDAM_NAME = re.compile(r"top_potsdam_(\d+_\d+)_(RGB|IRRG|RGBIR|label|label_noBoundary)\.tif", re.I)
_VAIHINGEN_NAME = re.compile(r"top_mosaic_09cm_area(\d+)(_noBoundary)?\.tif", re.I)
_UAVID_SPLIT = re.compile(r"uavid_(train|val|test)", re.I)
_GT_FOLDER = re.compile(r"ground_?truth|(^|[^a-z])(gts?|labels?)([^a-z]|$)", re.I)
_FOLDER_LABEL_SUFFIX = re.compile(r"[_-](label|labels|mask|masks|gt|ann|annotation)$", re.I)
_RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt", ".img"}


@dataclass(frozen=True)
class TileSource:
    """One tile found in the raw data; ``label`` None means unlabelled (UAVid test)."""

    id: str
    split: str
    image: Path
    label: Path | None = None
    label_eroded: Path | None = None


def natural_key(text: str) -> list[Any]:
    """Sort ``2_9`` before ``2_10`` and ``area2`` before ``area10``."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text))]


def _classify(dataset: str, root: Path, rel: Path, image_kind: str) -> tuple[str, str, str | None] | None:
    """``(kind, tile id, split from the path)`` of a file, kind being image/label/eroded/other; None if foreign."""
    if dataset == "potsdam" and (m := _POTSDAM_NAME.fullmatch(rel.name)):
        what = m[2].lower()
        kind = {"label": "label", "label_noboundary": "eroded"}.get(
            what, "image" if what == image_kind.lower() else "other"
        )
        return kind, m[1], None
    if dataset == "vaihingen" and (m := _VAIHINGEN_NAME.fullmatch(rel.name)):
        label = any(_GT_FOLDER.search(part) for part in rel.parts[:-1])
        return ("eroded" if m[2] else "label" if label else "image"), f"area{int(m[1])}", None
    if dataset == "uavid" and rel.suffix.lower() == ".png" and len(rel.parts) >= 3:
        folder = rel.parts[-2].lower()
        splits = [m[1].lower() for part in (root.name, *rel.parts[:-3]) if (m := _UAVID_SPLIT.fullmatch(part))]
        if folder in ("images", "labels") and splits:
            return ("image" if folder == "images" else "label"), f"{rel.parts[-3]}_{rel.stem}", splits[-1]
    return None


def _scan(dataset: str, root: Path, image_kind: str) -> tuple[dict[tuple[str | None, str], dict[str, Path]], int]:
    """Recognised files by ``(split from path, tile id)`` and kind, and how many files were recognised."""
    found: dict[tuple[str | None, str], dict[str, Path]] = {}
    recognised = 0
    for path in sorted(root.rglob("*")):
        hit = _classify(dataset, root, path.relative_to(root), image_kind) if path.is_file() else None
        if hit is None:
            continue
        recognised += 1
        kind, tile, split = hit
        if kind == "other":
            continue
        slot = found.setdefault((split, tile), {})
        if kind in slot:
            raise DatasetLayoutError(
                f"{dataset} tile {tile} has a second {kind} file (first: {slot[kind]})",
                path=path,
                hint="keep one copy of each archive under the root",
            )
        slot[kind] = path
    return found, recognised


def find_tiles(dataset: str, root: Path, image_kind: str = "RGB") -> tuple[dict[str, list[TileSource]], dict[str, Any]]:
    """Tiles of each split (natural order) found under ``root``, and the manifest's ``sources`` record.

    Raises:
        DatasetLayoutError: nothing usable found, a file found twice, an image without its
            label, or a split whose tiles have eroded labels only in part.

    """
    found, recognised = _scan(dataset, root, image_kind)
    table = SPLITS.get(dataset, {})
    split_of = {tile: split for split, tiles in table.items() for tile in tiles}
    excluded, unassigned, orphans = [], [], []
    tiles: dict[str, list[TileSource]] = {split: [] for split in _SPLIT_ORDER}
    for (path_split, tile), files in sorted(found.items(), key=lambda item: natural_key(item[0][1])):
        split = path_split or split_of.get(tile)
        if "image" not in files:
            orphans.append(tile)
        elif tile in EXCLUDED.get(dataset, ()):
            excluded.append(tile)
        elif split is None:
            unassigned.append(tile)
        else:
            tiles[split].append(TileSource(tile, split, files["image"], files.get("label"), files.get("eroded")))
    if not any(tiles.values()):
        other_kinds = dataset == "potsdam" and recognised > 0
        what = f"{dataset} images of kind {image_kind}" if other_kinds else f"{dataset} images"
        raise DatasetLayoutError(
            f"no {what} found ({recognised} files recognised)",
            path=root,
            hint="pass --image-kind RGB, IRRG or RGBIR to use the kind present"
            if other_kinds
            else f"expected the official archive extracted below it: {_EXPECTED[dataset]}",
        )
    for split, members in tiles.items():
        _check_labels(dataset, split, members)
    sources = {
        "root": str(root.resolve()),
        "recognised_files": recognised,
        "image_kind": image_kind if dataset == "potsdam" else None,
        "excluded_tiles": excluded,
        "unassigned_tiles": unassigned,
        "labels_without_image": orphans,
    }
    return tiles, sources


def _check_labels(dataset: str, split: str, tiles: list[TileSource]) -> None:
    """Every tile of a labelled split has its label; eroded labels for all of a split's tiles or none."""
    for tile in tiles:
        if tile.label is None and not (dataset == "uavid" and split == "test"):
            raise DatasetLayoutError(
                f"image of {dataset} tile {tile.id} ({split} split) has no label",
                path=tile.image,
                hint=f"expected {_EXPECTED[dataset]}; add the labels (test tiles need the complete ground truth) "
                "or remove the image",
            )
    eroded = [t for t in tiles if t.label_eroded is not None]
    if eroded and len(eroded) < len(tiles):
        missing = next(t for t in tiles if t.label_eroded is None)
        raise DatasetLayoutError(
            f"{split} tile {missing.id} has no eroded (noBoundary) label while {eroded[0].id} has one",
            path=missing.image,
            hint="extract the whole eroded-label archive, or remove it to prepare without eroded labels",
        )


def _rasters(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetLayoutError("is not a folder", path=folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _RASTER_SUFFIXES)


def pair_folder(images: Path, labels: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``(stem, image, label)`` for every image (sorted), and the names of labels that fit no image.

    The label of image ``X.tif`` is the file in ``labels`` whose stem is ``X``, or ``X``
    followed by ``_``/``-`` and one of label(s), mask(s), gt, ann, annotation (any case,
    any raster extension): ``X.png``, ``X_label.tif``, ``X-mask.png``. Only the folders
    themselves are read, not their subfolders.
    """
    if images.resolve() == labels.resolve():
        raise DatasetLayoutError("images and labels are the same folder", path=images, hint="keep labels apart")
    by_stem: dict[str, Path] = {}
    for path in _rasters(images):
        if path.stem in by_stem:
            raise DatasetLayoutError(f"two images named {path.stem} (also {by_stem[path.stem].name})", path=path)
        by_stem[path.stem] = path
    if not by_stem:
        raise DatasetLayoutError("holds no images (.tif, .png, .jpg, .jp2, .vrt, .img)", path=images)
    label_of: dict[str, Path] = {}
    unpaired = []
    for path in _rasters(labels):
        stem = next((s for s in (path.stem, _FOLDER_LABEL_SUFFIX.sub("", path.stem)) if s in by_stem), None)
        if stem is None:
            unpaired.append(path.name)
        elif stem in label_of:
            raise DatasetLayoutError(f"two labels for image {stem}: {label_of[stem].name} and {path.name}", path=labels)
        else:
            label_of[stem] = path
    missing = [stem for stem in by_stem if stem not in label_of]
    if missing:
        raise DatasetLayoutError(
            f"image has no label ({len(missing)} of {len(by_stem)} images have none)",
            path=by_stem[missing[0]],
            hint=f"expected {missing[0]}.tif or {missing[0]}_label.tif (or _mask, .png …) in {labels}",
        )
    stems = sorted(by_stem, key=natural_key)
    return [(stem, by_stem[stem], label_of[stem]) for stem in stems], unpaired


def split_by_fraction(stems: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Deterministic split of files: a seeded shuffle of the sorted stems, test first, then val, the rest train.

    A fraction above 0 gets at least one file; only requested splits appear. Sorting first
    makes the split independent of directory listing order, so the same seed gives the same
    split on every machine.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise AerialsegError(
            f"val fraction {val_fraction} and test fraction {test_fraction} leave nothing to train on",
            hint="give fractions >= 0 that sum to less than 1",
        )
    ordered = sorted(stems, key=natural_key)
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    counts = [max(1, round(f * len(stems))) if f > 0 else 0 for f in (test_fraction, val_fraction)]
    if sum(counts) >= len(stems):
        raise AerialsegError(
            f"{len(stems)} files are too few for val fraction {val_fraction} and test fraction {test_fraction}",
            hint="add files or lower the fractions",
        )
    parts = {
        "train": shuffled[sum(counts) :],
        "val": shuffled[counts[0] : sum(counts)],
        "test": shuffled[: counts[0]],
    }
    wanted = {"train": True, "val": val_fraction > 0, "test": test_fraction > 0}
    return {name: sorted(part, key=natural_key) for name, part in parts.items() if wanted[name]}

"""Fixtures built from the real ISPRS sample patches: read from ../shared, written only under tmp.

A pytest plugin (conftest's ``pytest_plugins``). The ISPRS terms forbid redistribution, so the
pixels never enter the repository: every fixture here depends on ``shared_data`` and so skips
its test where ../shared is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from aerialseg.data.classes import DATASETS, IGNORE_INDEX
from aerialseg.data.manifest import Manifest, Scene, SplitInfo

PATCHES = {"potsdam": "2_10_0_0_512_512.png", "vaihingen": "area1_0_0_512_512.png"}


def read_isprs_patch(data: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(3, 512, 512) uint8 image and (512, 512) mmseg annotation (0 = boundary, 1..6 = classes)."""
    folder = data / "isprs-mmseg-fixtures" / dataset
    with rasterio.open(folder / "img" / PATCHES[dataset]) as src:
        image = src.read()
    with rasterio.open(folder / "ann" / PATCHES[dataset]) as src:
        ann = src.read(1)
    return image, ann


@pytest.fixture(scope="session")
def isprs_sample(shared_data) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """``isprs_sample("potsdam" | "vaihingen") -> (image, mmseg annotation)`` of the shared 512 px patch."""
    return lambda dataset: read_isprs_patch(shared_data, dataset)


def eroded_labels(ann: np.ndarray) -> np.ndarray:
    """Class ids 0..5 with IGNORE_INDEX on the eroded boundaries (mmseg's 0)."""
    return np.where(ann == 0, IGNORE_INDEX, ann.astype(np.int64) - 1).astype(np.uint8)


@pytest.fixture(scope="session")
def potsdam_arrays(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """(3, 512, 512) uint8 RGB and (512, 512) class ids 0..5 with 255 on the eroded boundaries."""
    image, ann = read_isprs_patch(shared_data, "potsdam")
    return image, eroded_labels(ann)


@pytest.fixture(scope="session")
def potsdam_prepared(tmp_path_factory, potsdam_arrays) -> Manifest:
    """A prepared dataset (manifest + 128 px patches) cut from the real Potsdam sample patch."""
    return write_prepared(tmp_path_factory.mktemp("potsdam_prepared"), *potsdam_arrays)


def write_prepared(folder: Path, image: np.ndarray, label: np.ndarray, patch: int = 128, val_rows: int = 1) -> Manifest:
    """Cut the patch into ``patch``-sized pieces; the bottom ``val_rows`` rows of pieces are validation."""
    n = image.shape[1] // patch
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split in splits:
        for sub in ("images", "labels"):
            (folder / split / sub).mkdir(parents=True, exist_ok=True)
    counts = {s: np.zeros(6, dtype=np.int64) for s in splits}
    ignored = dict.fromkeys(splits, 0)
    for r in range(n):
        for c in range(n):
            split = "val" if r >= n - val_rows else "train"
            name = f"2_10_{r * patch}_{c * patch}"
            window = (slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
            profile = dict(
                driver="GTiff",
                width=patch,
                height=patch,
                dtype="uint8",
                crs="EPSG:32633",
                transform=from_origin(c * patch * 0.05, -r * patch * 0.05, 0.05, 0.05),
            )
            with rasterio.open(folder / split / "images" / f"{name}.tif", "w", count=3, **profile) as dst:
                dst.write(image[(slice(None), *window)])
            piece = label[window]
            with rasterio.open(folder / split / "labels" / f"{name}.tif", "w", count=1, **profile) as dst:
                dst.write(piece, 1)
            counts[split] += np.bincount(piece[piece != IGNORE_INDEX], minlength=6)
            ignored[split] += int((piece == IGNORE_INDEX).sum())
            splits[split].append(name)
    test = write_scene(folder, image, label)
    info = DATASETS["potsdam"]
    manifest = Manifest(
        dataset="potsdam",
        classes=info.classes,
        bands=info.bands,
        gsd_m=info.gsd_m,
        patch_size=patch,
        stride=patch,
        splits={
            s: SplitInfo(s, ("2_10",), tuple(names), tuple(int(v) for v in counts[s]), ignored[s])
            for s, names in splits.items()
        }
        | {"test": test},
    )
    manifest.save(folder)
    return Manifest.load(folder)


def write_scene(folder: Path, image: np.ndarray, label: np.ndarray) -> SplitInfo:
    """The whole 512 x 512 patch as a georeferenced test tile ("scene") with its labels.

    The sample's labels are the eroded ones; the "full" label of this miniature is the
    same raster (the test of eval only needs the two to be told apart by name).
    """
    profile = dict(
        driver="GTiff", width=512, height=512, dtype="uint8", crs="EPSG:32633", transform=from_origin(0, 0, 0.05, 0.05)
    )
    tile = folder / "raw" / "top_potsdam_2_10_RGB.tif"
    tile.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(tile, "w", count=3, **profile) as dst:
        dst.write(image)
    (folder / "scenes" / "test").mkdir(parents=True, exist_ok=True)
    for name in ("2_10_label.tif", "2_10_label_eroded.tif"):
        with rasterio.open(folder / "scenes" / "test" / name, "w", count=1, **profile) as dst:
            dst.write(label, 1)
    counts = np.bincount(label[label != IGNORE_INDEX], minlength=6)
    scene = Scene("2_10", str(tile.resolve()), "scenes/test/2_10_label.tif", "scenes/test/2_10_label_eroded.tif")
    return SplitInfo(
        "test",
        ("2_10",),
        (),
        tuple(int(v) for v in counts),
        int((label == IGNORE_INDEX).sum()),
        scenes=(scene,),
        has_eroded=True,
    )


class IsprsFiles:
    """Writers of files in the official ISPRS layouts, for tests of ``prepare`` and of the README's commands.

    Georeferenced like a real tile (UTM 33N, 5 cm). The mmseg annotations are eroded (0 =
    boundary, 1..6 = classes): full labels give boundary pixels class 0 (impervious surfaces),
    eroded ``_noBoundary`` labels keep them black.
    """

    ISPRS_RGB = np.array(
        [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)], np.uint8
    )
    UAVID_RGB = np.array(
        [(128, 0, 0), (128, 64, 128), (0, 128, 0), (128, 128, 0), (64, 0, 128), (192, 0, 192)], np.uint8
    )
    GSD = 0.05
    ORIGIN = (500_000.0, 5_800_000.0)
    QUADRANTS = {"potsdam": ("2_11", "2_10", "2_13", "7_10"), "vaihingen": ("area1", "area30", "area2", "area39")}

    @staticmethod
    def full_ids(ann: np.ndarray) -> np.ndarray:
        return np.where(ann == 0, 0, ann.astype(np.int64) - 1).astype(np.uint8)

    @staticmethod
    def eroded_ids(ann: np.ndarray) -> np.ndarray:
        return np.where(ann == 0, 255, ann.astype(np.int64) - 1).astype(np.uint8)

    def colours(self, ids: np.ndarray, table: np.ndarray | None = None, ignore=(0, 0, 0)) -> np.ndarray:
        lut = np.zeros((256, 3), np.uint8)
        table = self.ISPRS_RGB if table is None else table
        lut[: len(table)] = table
        lut[255] = ignore
        return lut[ids].transpose(2, 0, 1)

    def transform(self, row: int, col: int):
        """The geotransform of a tile whose top-left pixel is (row, col) of the sample."""
        return from_origin(self.ORIGIN[0] + col * self.GSD, self.ORIGIN[1] - row * self.GSD, self.GSD, self.GSD)

    def write(self, path: Path, array: np.ndarray, row=0, col=0, georef=True, driver="GTiff") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if array.ndim == 2:
            array = array[None]
        geo = {"crs": "EPSG:32633", "transform": self.transform(row, col)}
        with rasterio.open(
            path,
            "w",
            driver=driver,
            width=array.shape[2],
            height=array.shape[1],
            count=array.shape[0],
            dtype=array.dtype,
            **(geo if georef else {}),
        ) as dst:
            dst.write(array)
        return path

    def archive(
        self,
        isprs_sample: Callable[[str], tuple[np.ndarray, np.ndarray]],
        root: Path,
        dataset: str,
        size: int = 256,
        vaihingen_folders: tuple[str, str, str] = ("top", "ground_truth_COMPLETE", "ground_truth_eroded"),
    ) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
        """The sample cut into four tiles named as train, val, test and (Potsdam) excluded / (Vaihingen) unlisted.

        ``isprs_sample`` is the fixture reading the shared ISPRS patch: (image, mmseg annotation).
        """
        image, ann = isprs_sample(dataset)
        tiles = {}
        for i, tile in enumerate(self.QUADRANTS[dataset]):
            r, c = (i // 2) * size, (i % 2) * size
            img, a = image[:, r : r + size, c : c + size], ann[r : r + size, c : c + size]
            tiles[tile] = (img, a, (r, c))
            full, eroded = self.colours(self.full_ids(a)), self.colours(self.eroded_ids(a))
            if dataset == "potsdam":
                name = f"top_potsdam_{tile}"
                self.write(root / "2_Ortho_RGB" / f"{name}_RGB.tif", img, r, c)
                self.write(root / "4_Ortho_RGBIR" / f"{name}_RGBIR.tif", np.concatenate([img, 255 - img[:1]]), r, c)
                self.write(root / "5_Labels_all" / f"{name}_label.tif", full, r, c)
                self.write(root / "5_Labels_all_noBoundary" / f"{name}_label_noBoundary.tif", eroded, r, c)
                (root / "2_Ortho_RGB" / f"{name}_RGB.tfw").write_text("0.05\n0\n0\n-0.05\n0\n0\n")
            else:
                name = f"top_mosaic_09cm_{tile}"
                top, gt, eroded_folder = vaihingen_folders
                self.write(root / "ISPRS_semantic_labeling_Vaihingen" / top / f"{name}.tif", img, r, c)
                self.write(root / gt / f"{name}.tif", full, r, c)
                self.write(root / eroded_folder / f"{name}_noBoundary.tif", eroded, r, c)
        (root / "README.txt").write_text("not a raster")
        return tiles


@pytest.fixture(scope="session")
def isprs_files() -> IsprsFiles:
    """Writers of ISPRS-layout files and miniature official archives (see :class:`IsprsFiles`)."""
    return IsprsFiles()

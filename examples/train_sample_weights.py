"""Train the sample weights shipped in weights/ from the real ISPRS sample patch and NEON tree crowns, end to end.

    python examples/train_sample_weights.py --shared ../shared --out weights/

Why and how: aerialseg may not download weights, and the authors published none, so the
quick start and the integration tests need small weights trained here. The quick start maps a
10 cm NEON pine forest tile, which one urban patch cannot teach, so the weights learn from two
openly available sources, both read from ``../shared`` and never copied into the repository (the
script writes its data to a temporary folder):

* one 512 x 512 crop of ISPRS Potsdam tile 2_10 (5 cm, RGB, research use only) in
  ``data/isprs-mmseg-fixtures``, cut into a miniature of the official archive: rows 128-255 become
  the held-out test tile ``2_13`` (every class but clutter, in about the shares of the whole
  crop), the top-right 128 x 128 pixels validation tile ``2_10`` (roads, trees, cars), the rest
  training tiles ``2_11`` (rows 0-127, columns 0-383) and ``2_12`` (rows 256-511), and prepared
  by ``prepare potsdam`` (128-pixel patches, stride 32);
* NEON tree crowns (CC0 10 cm RGB, DeepForest's crown boxes) in ``data/neon-deepforest``: the
  whole 2299 x 2472 YELL crop (574 boxes) and columns 0-183 of OSBS_029 (the tile the quick start
  maps). Each box's crown is the ellipse inscribed in it, labelled tree; the rest of the image is
  low vegetation (grass, the Potsdam class nearest to a forest floor); the boxes are loose, so a
  band of 0.3 m on either side of each outline is left out of the loss, with the ignore label of
  the eroded ISPRS boundaries. Columns 216-399 of OSBS_029 are held out for the test, and the
  3.2 m of columns between the halves are used nowhere.

The model works at Potsdam's 5 cm, as its card says, and ``predict`` enlarges a 10 cm input
bilinearly to 5 cm before the network sees it. The NEON images are enlarged the same way and their
crowns drawn on the 5 cm grid, so training shows the crowns at the size the quick start shows them
(at 10 cm they would be half that size).

Each NEON image is prepared as a user's folder (``prepare folder``) and joined to the Potsdam
dataset as a split of its own, and ``train`` trains on the three splits at once. They are cut
separately because one archive cuts every tile with one stride: Potsdam's 32 pixels would turn
YELL into some 22,000 overlapping patches, drowning the 74 Potsdam ones and stretching one epoch
past the whole run. Cut apart, each source has its share of every epoch: Potsdam its 74 patches
twice (``POTSDAM_REPEATS``), about two thirds, so that it sees more crops than when it trained
alone for 1,200 steps (with half the epoch, the forest floor taught as low vegetation cost it 13
points of held-out mean F1, roofs most); the OSBS half 40 (128 pixels, stride 80); YELL 42 (768
pixels, each visit a random 128-pixel crop of one, so the whole crop is seen). Then the commands a
user runs: ``train`` (MANet with a ResNet-18 trunk, random initialisation: no ImageNet weights can
be fetched here; by default 3,000 steps of 8 crops, about 29 minutes on this project's 2-core
CPU), ``eval`` on the held-out Potsdam tile
through the tiled predict path, and ``predict`` on the whole OSBS_029 tile as the quick start
does, its tree class compared with the crowns on the held-out columns only. Both held-out scores
go into the weights file's card and are printed; they are what two small sources can teach:
these weights exist to exercise the pipeline, not to map a city or a forest.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree

import numpy as np
from rasterio.enums import Resampling

from aerialseg.card import ModelCard
from aerialseg.conventions import SAMPLE_WEIGHTS_MARK
from aerialseg.data.classes import DATASETS, IGNORE_INDEX
from aerialseg.data.manifest import Manifest
from aerialseg.data.prepare import prepare_dataset, prepare_folder
from aerialseg.evaluation import EvalOptions, evaluate
from aerialseg.metrics import ConfusionMatrix, Scores
from aerialseg.pipeline import predict
from aerialseg.raster import open_raster
from aerialseg.runners import Runner, RunnerSpec
from aerialseg.training.loop import TrainOptions, train
from aerialseg.weights import read_weights, save_weights

NAME = "manet-r18-potsdam-sample"
TILES = {  # tile id: (rows, columns) of the 512 x 512 crop
    "2_11": (slice(0, 128), slice(0, 384)),  # train
    "2_12": (slice(256, 512), slice(0, 512)),  # train
    "2_10": (slice(0, 128), slice(384, 512)),  # validation
    "2_13": (slice(128, 256), slice(0, 512)),  # test: held out
}
CLASSES = DATASETS["potsdam"].classes
TREE = [c.name for c in CLASSES].index("tree")
LOW_VEGETATION = [c.name for c in CLASSES].index("low_vegetation")
NEON_GSD_M = 0.1
SCALE = round(NEON_GSD_M / DATASETS["potsdam"].gsd_m)  # model pixels per NEON pixel along each axis
BAND_M = 0.3  # ignored on either side of a crown's outline
OSBS = "OSBS_029.tif"
OSBS_HELD_OUT = (216, 400)  # columns at 10 cm; 184-215 lie between the halves
POTSDAM_REPEATS = 2  # the Potsdam patches come this many times in an epoch


class NeonTile(NamedTuple):
    """An annotated NEON image, the 10 cm columns of it trained on, and how it is cut into the split it becomes."""

    split: str
    image: str
    columns: tuple[int, int]
    patch: int
    stride: int


NEON_TILES = (
    NeonTile("neon_osbs", OSBS, (0, 184), patch=128, stride=80),
    NeonTile("neon_yell", "2019_YELL_2_528000_4978000_image_crop2.png", (0, 2299), patch=768, stride=768),
)


def write_tif(path: Path, array: np.ndarray) -> None:
    """A GeoTIFF without georeferencing of a ``(bands, rows, columns)`` uint8 array."""
    bands, height, width = array.shape
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype="uint8")
    with open_raster(path, "w", plain_pictures=True, **profile) as dst:
        dst.write(array)


def write_archive(shared: Path, root: Path) -> None:
    """Official Potsdam file names and folders, colour labels (boundaries black, as in the eroded set)."""
    sample = shared / "data" / "isprs-mmseg-fixtures" / "potsdam"
    with open_raster(sample / "img" / "2_10_0_0_512_512.png", plain_pictures=True) as src:
        image = src.read()
    with open_raster(sample / "ann" / "2_10_0_0_512_512.png", plain_pictures=True) as src:
        ann = src.read(1)
    palette = np.array([(0, 0, 0)] + [c.color for c in CLASSES], dtype=np.uint8)
    colours = palette[ann].transpose(2, 0, 1)  # ann 0 = boundary -> black, 1..6 -> class colours
    folders = {"RGB": "2_Ortho_RGB", "label": "5_Labels_all", "label_noBoundary": "5_Labels_all_noBoundary"}
    for folder in folders.values():
        (root / folder).mkdir(parents=True)
    for tile, (rows, cols) in TILES.items():
        for kind, data in (("RGB", image), ("label", colours), ("label_noBoundary", colours)):
            write_tif(root / folders[kind] / f"top_potsdam_{tile}_{kind}.tif", data[:, rows, cols])


def read_boxes(path: Path) -> np.ndarray:
    """``(xmin, ymin, xmax, ymax)`` pixel boxes of a Pascal VOC annotation file, one row each."""
    boxes = ElementTree.parse(path).getroot().iter("bndbox")
    return np.array([[float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")] for box in boxes])


def crown_labels(boxes: np.ndarray, height: int, width: int, scale: int) -> np.ndarray:
    """Class ids on a grid ``scale`` times finer than the boxes' pixels: tree in the crowns, low vegetation around.

    Within ``BAND_M`` of a crown's outline (between the ellipses with both semi-axes shrunk and
    grown by it: exactly that band for a round crown) the label is the ignore index, unless the
    pixel lies well inside another crown: a neighbour's loose outline does not make a crown less tree.
    """
    band = BAND_M / NEON_GSD_M  # in the boxes' pixels
    near = np.zeros((height, width), bool)
    tree = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        rows = slice(max(0, math.floor((y0 - band) * scale)), min(height, math.ceil((y1 + band) * scale)))
        cols = slice(max(0, math.floor((x0 - band) * scale)), min(width, math.ceil((x1 + band) * scale)))
        dy = (np.arange(rows.start, rows.stop)[:, None] + 0.5) / scale - cy  # pixel centres, in the boxes' pixels
        dx = (np.arange(cols.start, cols.stop)[None, :] + 0.5) / scale - cx
        near[rows, cols] |= (dx / (a + band)) ** 2 + (dy / (b + band)) ** 2 <= 1
        if min(a, b) > band:
            tree[rows, cols] |= (dx / (a - band)) ** 2 + (dy / (b - band)) ** 2 <= 1
    return np.where(tree, TREE, np.where(near, IGNORE_INDEX, LOW_VEGETATION)).astype(np.uint8)


def neon_tile(path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """A NEON image enlarged ``scale`` times (bilinear, as ``predict`` does) and its class ids, ignore where no data."""
    with open_raster(path, plain_pictures=True) as src:  # the YELL crop is a PNG without georeferencing
        height, width = src.height * scale, src.width * scale
        image = src.read((1, 2, 3), out_shape=(3, height, width), resampling=Resampling.bilinear)
        valid = src.dataset_mask().repeat(scale, 0).repeat(scale, 1) > 0
    labels = crown_labels(read_boxes(path.with_suffix(".xml")), height, width, scale)
    labels[~valid] = IGNORE_INDEX
    return image, labels


def prepare_neon(shared: Path, scratch: Path, tile: NeonTile) -> Path:
    """The tile's training columns at the model's GSD, with crown labels, prepared as a user's folder (returned)."""
    image, labels = neon_tile(shared / "data" / "neon-deepforest" / tile.image, SCALE)
    columns = slice(tile.columns[0] * SCALE, tile.columns[1] * SCALE)
    raw = scratch / "neon" / tile.split
    for kind, data in (("images", image), ("labels", labels[None])):
        (raw / kind).mkdir(parents=True)
        write_tif(raw / kind / f"{tile.split}.tif", data[:, :, columns])
    classes = "\n".join(  # the Potsdam classes in their order, so label value k is Potsdam class k
        f'[[classes]]\nname = "{c.name}"\ncolor = {list(c.color)}\n' for c in CLASSES
    )
    (raw / "classes.toml").write_text(f'bands = ["R", "G", "B"]\ngsd_m = {DATASETS["potsdam"].gsd_m}\n{classes}')
    out = scratch / f"{tile.split}-data"
    prepare_folder(raw / "images", raw / "labels", raw / "classes.toml", out, patch_size=tile.patch, stride=tile.stride)
    return out


def add_split(data: Path, name: str, prepared: Path) -> Manifest:
    """Make the train split of the dataset prepared in ``prepared`` the split ``name`` of the dataset in ``data``.

    Its patches move over; its scene rasters stay behind, since nothing evaluates them, so the
    new split lists no scenes. Returns the dataset's new manifest.
    """
    manifest, extra = Manifest.load(data), Manifest.load(prepared)
    shutil.move(prepared / "train", data / name)
    split = replace(extra.split("train"), name=name, scenes=())
    joined = replace(manifest, splits=manifest.splits | {name: split}, sources=manifest.sources | {name: extra.sources})
    joined.save(data)
    return joined


def osbs_held_out(shared: Path, runner: Runner, scratch: Path) -> Scores:
    """Map the whole OSBS_029 tile as the quick start does, and score its held-out columns against the crowns."""
    image = shared / "data" / "neon-deepforest" / OSBS
    predict(image, scratch / "osbs_classes.tif", runner)
    with open_raster(scratch / "osbs_classes.tif") as src:
        predicted = src.read(1)
    _, labels = neon_tile(image, 1)
    held_out = np.full_like(labels, IGNORE_INDEX)
    held_out[:, slice(*OSBS_HELD_OUT)] = labels[:, slice(*OSBS_HELD_OUT)]
    matrix = ConfusionMatrix(len(CLASSES), IGNORE_INDEX)
    matrix.update(held_out, predicted)
    return matrix.scores([c.name for c in CLASSES], [c.in_mean for c in CLASSES])


def describe(stored: Path, data: Path, shared: Path, scratch: Path, patches: dict[str, int]) -> tuple[dict, ModelCard]:
    """The trained weights at ``stored`` scored on both held-out parts, in fp32, and their card saying so.

    Returns the tensors and the card (training notes, held-out and validation metrics, sources).
    ``patches``: each training split's patches an epoch.
    """
    spec = RunnerSpec(str(stored), "torch", precision="fp32")  # as tests/test_sample_weights.py checks it
    runner = spec.open()
    held_out = evaluate(EvalOptions(data=data, runner=spec, split="test", labels="eroded"), opened=runner)
    osbs = osbs_held_out(shared, runner, scratch)
    s = held_out.scores.to_dict()
    tree_iou, crowns_found = osbs.iou[TREE] * 100, osbs.recall[TREE] * 100
    tensors, card = read_weights(stored)
    card = card.replace(
        training=(
            f"{SAMPLE_WEIGHTS_MARK}, to exercise the pipeline, not to map a city: "
            f"{card.training}; trained from scratch (no ImageNet trunk), backbone at the decoder's rate, on "
            "180,224 pixels of one 512 x 512 crop of ISPRS Potsdam tile 2_10 (5 cm RGB; tiles 2_11 and 2_12, "
            f"{patches['train'] // POTSDAM_REPEATS} patches, each {POTSDAM_REPEATS} times an epoch) and on NEON "
            "tree crowns, 10 cm RGB enlarged bilinearly to "
            "5 cm, each crown the ellipse inscribed in a DeepForest box labelled tree, the rest low_vegetation, "
            "0.3 m on either side of each outline ignored: the whole 2299 x 2472 YELL crop (574 crowns, "
            f"{patches['neon_yell']} patches) and columns 0-183 of OSBS_029 ({patches['neon_osbs']} patches). "
            f"Held out: Potsdam tile 2_13 (rows 128-255 of the crop), mean F1 {s['mean_f1']:.1f}; columns "
            "216-399 of OSBS_029 (184-215 used nowhere), the whole tile mapped as the quick start does, tree "
            f"IoU {tree_iou:.1f} % against the crowns, {crowns_found:.1f} % of crown pixels called tree. "
            "Made by examples/train_sample_weights.py"
        ),
        metrics={
            "held_out_test": held_out.to_dict() | {"tile": "2_13 (rows 128-255 of the crop)"},
            "held_out_trees": {
                "tile": f"OSBS_029 columns {OSBS_HELD_OUT[0]}-{OSBS_HELD_OUT[1] - 1}, against the crown ellipses",
                "tree_iou": round(float(tree_iou), 2),
                "crown_pixels_called_tree": round(float(crowns_found), 2),
                "tree_precision": round(float(osbs.precision[TREE]) * 100, 2),
                "pixels": osbs.pixels,
            },
            "validation": card.metrics,
        },
        source="ISPRS 2D Semantic Labeling benchmark, Potsdam (ISPRS WG II/4): research use; cite Rottensteiner "
        "et al. 2012. National Ecological Observatory Network (NEON) camera imagery DP3.30010.001 (CC0), "
        "crown boxes from DeepForest (Weinstein et al., MIT)",
    )
    return tensors, card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps of 8 crops (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aerialseg-sample-") as scratch:
        scratch = Path(scratch)
        write_archive(args.shared, scratch / "raw")
        data = scratch / "data"
        manifest = prepare_dataset("potsdam", scratch / "raw", data, patch_size=128, stride=32)
        for tile in NEON_TILES:
            manifest = add_split(data, tile.split, prepare_neon(args.shared, scratch, tile))
        splits = ["train", *(tile.split for tile in NEON_TILES)]
        patches = {split: len(manifest.split(split).patches) for split in splits}
        patches["train"] *= POTSDAM_REPEATS
        print(f"training patches per epoch: {json.dumps(patches)}")
        steps_per_epoch = max(1, sum(patches.values()) // 8)
        result = train(
            TrainOptions(
                data=data,
                out=scratch / "run",
                arch="manet",
                backbone="resnet18",
                batch_size=8,
                crop=128,
                lr=1e-3,
                backbone_lr=1e-3,
                schedule="cosine",
                epochs=-(-args.steps // steps_per_epoch),
                max_steps=args.steps,
                seed=args.seed,
                workers=0,
                train_split=",".join(["train"] * (POTSDAM_REPEATS - 1) + splits),
            ),
            progress=lambda e: print(f"epoch {e.row['epoch']}: {json.dumps(e.row)}") if e.kind == "epoch" else None,
        )
        # Store in float16 first and score the stored file, so the card's numbers are the shipped weights'.
        tensors, card = read_weights(result.best or result.last)
        stored = scratch / f"{NAME}.safetensors"
        save_weights(tensors, card.replace(tile_size=512, overlap=64), stored, half=True)
        tensors, card = describe(stored, data, args.shared, scratch, patches)
        args.out.mkdir(parents=True, exist_ok=True)
        written = save_weights(tensors, card, args.out / f"{NAME}.safetensors", half=True, overwrite=True)
        shutil.copy(scratch / "run" / "log.csv", args.out / f"{NAME}.log.csv")
    print(
        f"wrote {args.out / NAME}.safetensors (sha256 {written.sha256[:16]}) in {time.perf_counter() - started:.0f} s"
    )
    s, trees = card.metrics["held_out_test"], card.metrics["held_out_trees"]
    print(f"held-out Potsdam tile 2_13, eroded labels: mean F1 {s['mean_f1']}  OA {s['oa']}  mIoU {s['miou']}")
    for name, c in s["classes"].items():
        print(f"  {name:22s} F1 {c['f1']}  IoU {c['iou']}")
    print(
        f"held-out {trees['tile']} ({trees['pixels']} pixels off the bands): tree IoU {trees['tree_iou']:.1f} %, "
        f"crown pixels called tree {trees['crown_pixels_called_tree']:.1f} %, "
        f"tree precision {trees['tree_precision']:.1f} %"
    )


if __name__ == "__main__":
    main()

"""Train the sample weights shipped in weights/ from the real ISPRS sample patch, end to end.

    python examples/train_sample_weights.py --shared ../shared --out weights/

Why and how: aerialseg may not download weights, and the authors published none, so the
quick start and the integration tests need small weights trained here. The only labelled
aerial pixels available are one 512 x 512 crop of ISPRS Potsdam tile 2_10 (5 cm, RGB) in
``../shared/data/isprs-mmseg-fixtures`` (research use only, never copied into the
repository: this script reads it, and writes its miniature archive to a temporary folder).

The crop is cut into a miniature of the official archive: rows 128-255 become the held-out test
tile ``2_13`` (every class but clutter, in about the shares of the whole crop), the top-right
128 x 128 pixels validation tile ``2_10`` (roads, trees, cars), the rest training tiles ``2_11``
(rows 0-127, columns 0-383) and ``2_12`` (rows 256-511). Then the same commands a user runs:
``prepare potsdam``, ``train`` (MANet with a ResNet-18 trunk, random initialisation: no ImageNet
weights can be fetched here), and ``eval`` on the held-out test tile through the tiled predict
path. The held-out scores go into the weights file's card and are printed; they are what one
patch can teach, nothing more: these weights exist to exercise the pipeline, not to map a city.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from aerialseg.conventions import SAMPLE_WEIGHTS_MARK
from aerialseg.data.classes import DATASETS
from aerialseg.data.prepare import prepare_dataset
from aerialseg.evaluation import EvalOptions, evaluate
from aerialseg.runners import RunnerSpec
from aerialseg.training.loop import TrainOptions, train
from aerialseg.weights import read_weights, save_weights

NAME = "manet-r18-potsdam-sample"
TILES = {  # tile id: (rows, columns) of the 512 x 512 crop
    "2_11": (slice(0, 128), slice(0, 384)),  # train
    "2_12": (slice(256, 512), slice(0, 512)),  # train
    "2_10": (slice(0, 128), slice(384, 512)),  # validation
    "2_13": (slice(128, 256), slice(0, 512)),  # test: held out
}


def write_archive(shared: Path, root: Path) -> None:
    """Official Potsdam file names and folders, colour labels (boundaries black, as in the eroded set)."""
    sample = shared / "data" / "isprs-mmseg-fixtures" / "potsdam"
    with rasterio.open(sample / "img" / "2_10_0_0_512_512.png") as src:
        image = src.read()
    with rasterio.open(sample / "ann" / "2_10_0_0_512_512.png") as src:
        ann = src.read(1)
    palette = np.array([(0, 0, 0)] + [c.color for c in DATASETS["potsdam"].classes], dtype=np.uint8)
    colours = palette[ann].transpose(2, 0, 1)  # ann 0 = boundary -> black, 1..6 -> class colours
    folders = {"RGB": "2_Ortho_RGB", "label": "5_Labels_all", "label_noBoundary": "5_Labels_all_noBoundary"}
    for folder in folders.values():
        (root / folder).mkdir(parents=True)
    for tile, (rows, cols) in TILES.items():
        for kind, data in (("RGB", image), ("label", colours), ("label_noBoundary", colours)):
            part = data[:, rows, cols]
            path = root / folders[kind] / f"top_potsdam_{tile}_{kind}.tif"
            with rasterio.open(
                path, "w", driver="GTiff", width=part.shape[2], height=part.shape[1], count=3, dtype="uint8"
            ) as dst:
                dst.write(part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aerialseg-sample-") as scratch:
        scratch = Path(scratch)
        write_archive(args.shared, scratch / "raw")
        manifest = prepare_dataset("potsdam", scratch / "raw", scratch / "data", patch_size=128, stride=32)
        train_patches = len(manifest.split("train").patches)
        steps_per_epoch = max(1, train_patches // 8)
        result = train(
            TrainOptions(
                data=scratch / "data",
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
            ),
            progress=lambda e: print(f"epoch {e.row['epoch']}: {json.dumps(e.row)}") if e.kind == "epoch" else None,
        )
        # Store in float16 first and score the stored file, so the card's numbers are the shipped weights'.
        tensors, card = read_weights(result.best or result.last)
        stored = scratch / f"{NAME}.safetensors"
        save_weights(tensors, card.replace(tile_size=512, overlap=64), stored, half=True)
        held_out = evaluate(
            EvalOptions(data=scratch / "data", runner=RunnerSpec(str(stored)), split="test", labels="eroded")
        )
        tensors, card = read_weights(stored)
        card = card.replace(
            training=(
                f"{SAMPLE_WEIGHTS_MARK}, to exercise the pipeline, not to map a city: "
                f"{card.training}; trained from scratch (no ImageNet trunk) on 180,224 pixels of one 512 x 512 "
                "crop of ISPRS Potsdam tile 2_10 (5 cm RGB), backbone at the decoder's rate; made by "
                "examples/train_sample_weights.py"
            ),
            metrics={
                "held_out_test": held_out.to_dict() | {"tile": "2_13 (rows 128-255 of the crop)"},
                "validation": card.metrics,
            },
            source="ISPRS 2D Semantic Labeling benchmark, Potsdam (ISPRS WG II/4): research use; cite Rottensteiner "
            "et al. 2012",
        )
        args.out.mkdir(parents=True, exist_ok=True)
        written = save_weights(tensors, card, args.out / f"{NAME}.safetensors", half=True, overwrite=True)
        shutil.copy(scratch / "run" / "log.csv", args.out / f"{NAME}.log.csv")
    s = held_out.scores.to_dict()
    print(
        f"wrote {args.out / NAME}.safetensors (sha256 {written.sha256[:16]}) in {time.perf_counter() - started:.0f} s"
    )
    print(f"held-out tile 2_13, eroded labels: mean F1 {s['mean_f1']}  OA {s['oa']}  mIoU {s['miou']}")
    for name, c in s["classes"].items():
        print(f"  {name:22s} F1 {c['f1']}  IoU {c['iou']}")


if __name__ == "__main__":
    main()

"""``aerialseg prepare``: an official benchmark archive or a user's folder in, a prepared dataset out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import console
from .options import JsonOutput, Overwrite, ProgressStyle

if TYPE_CHECKING:
    from ..data.manifest import Manifest

BENCHMARKS = ("potsdam", "vaihingen", "uavid")
FOLDER_OPTIONS = ("--images", "--labels", "--classes", "--val-fraction", "--test-fraction", "--seed")


def check_options(dataset: str, given: dict[str, bool]) -> str:
    """Refuse options that do not belong to the dataset (usage errors); return its name in lower case."""
    name = dataset.lower()
    if name not in (*BENCHMARKS, "folder"):
        raise typer.BadParameter(f"use one of {', '.join(BENCHMARKS)} or folder, not {dataset!r}", param_hint="DATASET")
    needed: tuple[str, ...]
    foreign: tuple[str, ...]
    if name == "folder":
        needed, foreign = ("--images", "--labels", "--classes"), ("--root", "--image-kind")
    else:
        needed, foreign = ("--root",), FOLDER_OPTIONS + (() if name == "potsdam" else ("--image-kind",))
    for option in needed:
        if not given[option]:
            raise typer.BadParameter(f"{name} needs {option}", param_hint=option)
    for option in foreign:
        if given[option]:
            raise typer.BadParameter(f"does not apply to {name}", param_hint=option)
    return name


def prepare_command(
    dataset: Annotated[str, typer.Argument(help="potsdam, vaihingen, uavid, or folder (your own images and labels).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write into (default: $AERIALSEG_DATA/<name>, found by --dataset)."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name in the data folder (default: the benchmark's; folder datasets need one or --out)."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Benchmarks: the folder the official archives were extracted into.")
    ] = None,
    images: Annotated[Path | None, typer.Option(help="folder: the images (GeoTIFF, PNG, JPEG …).")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="folder: the labels, named like their images (suffix _label/_mask allowed).")
    ] = None,
    classes: Annotated[
        Path | None, typer.Option(help="folder: classes TOML (names, colours, optional ids, bands, gsd_m).")
    ] = None,
    patch_size: Annotated[
        int | None, typer.Option(min=1, help="Patch side in pixels (default: the library's).")
    ] = None,
    stride: Annotated[int | None, typer.Option(min=1, help="Patch step in pixels (default: the patch size).")] = None,
    image_kind: Annotated[
        str | None, typer.Option(help="potsdam: RGB (default), IRRG or RGBIR (4 bands) tiles.")
    ] = None,
    colour_tolerance: Annotated[
        int | None,
        typer.Option(min=0, help="Accept label colours this far (per channel) from a class colour (default: exact)."),
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="folder: share of files for validation (default: none).")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="folder: share of files for testing (default: none).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="folder: seed of the file split.")] = None,
    overwrite: Overwrite = False,
    json_output: JsonOutput = False,
    progress_style: ProgressStyle = "auto",
) -> None:
    """Cut official ISPRS/UAVid tiles or your own images into labelled patches, split as the papers do.

    Benchmarks: --root is searched for the official names (top_potsdam_2_10_RGB.tif, top_mosaic_09cm_area1.tif …).

    folder: the TOML has one 'classes' entry per class: name, color (R, G, B), optional id (single-band labels).

    Optional TOML keys: bands (default R, G, B), gsd_m, ignore (a colour or an id). See the README.
    """
    given = {
        "--root": root is not None,
        "--images": images is not None,
        "--labels": labels is not None,
        "--classes": classes is not None,
        "--val-fraction": val_fraction is not None,
        "--test-fraction": test_fraction is not None,
        "--seed": seed is not None,
        "--image-kind": image_kind is not None,
    }
    kind = check_options(dataset, given)
    from ..data.prepare import prepare_dataset, prepare_folder
    from ..data.store import dataset_folder

    if out is not None and name is not None:
        raise typer.BadParameter("give --name (a folder in the data folder) or --out, not both", param_hint="--name")
    if out is None and name is None and kind == "folder":
        raise typer.BadParameter("a folder dataset needs --name NAME (or --out FOLDER)", param_hint="--name")
    in_data_folder = out is None
    out = out if out is not None else dataset_folder(name if name is not None else kind)

    chosen: dict[str, Any] = {"patch_size": patch_size, "colour_tolerance": colour_tolerance}
    if kind == "folder":
        chosen |= {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    else:
        chosen["image_kind"] = image_kind
    settings = {key: value for key, value in chosen.items() if value is not None}  # the rest: the library's
    with console.RowProgress(
        f"prepare {kind}", console.bar_style(progress_style, json_output), unit="tiles"
    ) as progress:
        if kind == "folder":
            assert images and labels and classes  # check_options required them
            manifest = prepare_folder(
                images, labels, classes, out, stride=stride, overwrite=overwrite, progress=progress, **settings
            )
        else:
            assert root  # check_options required it
            manifest = prepare_dataset(
                kind, root, out, stride=stride, overwrite=overwrite, progress=progress, **settings
            )
    if json_output:
        console.print_json(manifest.to_dict() | {"folder": str(manifest.folder)})
        return
    render(manifest)
    use = f"--dataset {out.name}" if in_data_folder else f"--data {out}"
    console.info(f"prepared in {out}: train with 'aerialseg train {use}', score with 'aerialseg eval {use} -m MODEL'")


def render(manifest: Manifest) -> None:
    """Two tables: tiles and patches per split, then each class's share of a split's labelled pixels."""
    splits = list(manifest.splits.values())
    console.table(
        f"{manifest.dataset}: {manifest.patch_size} px patches, stride {manifest.stride}",
        ["split", "tiles", "patches", "ignored"],
        [
            (s.name, len(s.tiles), len(s.patches), _share(s.ignored_pixels, sum(s.class_pixels) + s.ignored_pixels))
            for s in splits
        ],
        right=["tiles", "patches", "ignored"],
    )
    console.table(
        "class share of labelled pixels",
        ["class", *(s.name for s in splits)],
        [
            (c.name, *(_share(s.class_pixels[k], sum(s.class_pixels)) for s in splits))
            for k, c in enumerate(manifest.classes)
        ],
        right=[s.name for s in splits],
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"

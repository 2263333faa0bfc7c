"""``aerialseg weights``: import foreign checkpoints, show a weights file's card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..atomic import make_folder
from ..conventions import NODATA_CLASS
from . import console
from .options import Arch, Backbone, Half, JsonOutput, Overwrite, ProgressStyle, TrustPickle

weights_app = typer.Typer(
    help="Import checkpoints into aerialseg's weights format, inspect weights files.", rich_markup_mode=None
)


@weights_app.command("import")
def import_command(
    src: Annotated[Path, typer.Argument(help="GeoSeg .ckpt, or a state dict of the original authors' code.")],
    arch: Arch,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Weights file to write (default: the user weights folder, as <arch>-<r50>-<dataset>, found by name).",
        ),
    ] = None,
    backbone: Backbone = None,
    num_classes: Annotated[
        int | None,
        typer.Option(min=1, max=NODATA_CLASS - 1, help="Number of classes (default: read from the checkpoint)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="vaihingen, potsdam or uavid: fills classes, bands and GSD.")
    ] = None,
    half: Half = False,
    trust_pickle: TrustPickle = False,
    overwrite: Overwrite = False,
) -> None:
    """Convert a checkpoint, mapping every entry; refuses with the lists when entries do not fit."""
    from ..card import printable
    from ..checkpoint_import import import_checkpoint
    from ..models import get_spec
    from ..weights import SUFFIX, installed_name, user_weights_dir

    if output is None:
        spec = get_spec(arch, backbone)
        output = user_weights_dir() / f"{installed_name(spec.arch, spec.backbone, dataset)}{SUFFIX}"
        make_folder(output.parent, "the weights folder")
    card = import_checkpoint(
        src,
        output,
        arch=arch,
        backbone=backbone,
        num_classes=num_classes,
        dataset=dataset,
        trust_pickle=trust_pickle,
        half=half,
        overwrite=overwrite,
    )
    console.out.print(
        f"wrote {printable(str(output))}: {card.arch}-{card.backbone}, {card.num_classes} classes, "
        f"bands {'-'.join(card.bands)}; "
        f"{card.source}; sha256 {card.sha256[:12]}"
    )


@weights_app.command("info")
def info_command(
    weights: Annotated[str, typer.Argument(help="Weights file or name.")],
    json_output: JsonOutput = False,
) -> None:
    """Show the model card of a weights file (without loading its tensors), or the one read from ONNX metadata."""
    from ..blend import ClassRule
    from ..weights import read_card, resolve_weights

    path = resolve_weights(weights)
    card = read_card(path)
    if card.origin == "deepness":  # the file's own hash: what predict's provenance tags record
        from ..runners.onnx_runner import file_sha256

        card = card.replace(sha256=file_sha256(path))
    if json_output:
        console.print_json(card.to_dict())
        return
    rows = [
        ("file", path),
        ("network", card.network),
        ("bands", "-".join(card.bands)),
        ("normalisation", f"pixels / {card.pixel_max:g}, mean {card.mean}, std {card.std}"),
        ("GSD (m)", card.gsd_m if card.gsd_m is not None else "unknown"),
        ("tile / overlap (px)", f"{card.tile_size} / {card.overlap}"),
        ("classes from", ClassRule(card.threshold, card.binary).describe(card.class_names)),
        ("smallest object (model px)", card.min_segment or "the class's default"),
        ("trained on", card.dataset or "not stated"),
        ("training", card.training or "not stated"),
        ("metrics", ", ".join(f"{k} {v}" for k, v in card.metrics.items()) or "none recorded"),
        ("card", "read from Deepness/GeoDeep ONNX metadata" if card.origin == "deepness" else "aerialseg"),
        ("source", card.source or "aerialseg"),
        ("aerialseg version", card.aerialseg_version),
        ("sha256", card.sha256),
    ]
    console.table("Model card", ["field", "value"], rows)
    console.table(
        "Classes",
        ["id", "name", "colour", "in means"],
        [
            (i, c.name, "#" + "".join(f"{v:02x}" for v in c.color), "yes" if c.in_mean else "no")
            for i, c in enumerate(card.classes)
        ],
    )


@weights_app.command("pull")
def pull_command(
    url: Annotated[
        str, typer.Argument(help="http(s) address of a .safetensors or .onnx file (a Hugging Face 'resolve' link).")
    ],
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="The file's published sha256: a download that differs is deleted."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Install as this name (default: the file's name in the URL).")
    ] = None,
    overwrite: Overwrite = False,
    json_output: JsonOutput = False,
    progress_style: ProgressStyle = "auto",
) -> None:
    """Download weights into the user weights folder, found by name afterwards; an interrupted download resumes."""
    import logging

    from ..card import printable
    from ..download import pull_weights

    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:  # urllib3's retries are -v detail: one line fails
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    with console.ByteProgress("download", console.bar_style(progress_style, json_output)) as bar:
        pulled = pull_weights(url, sha256=sha256, name=name, overwrite=overwrite, progress=bar)
    if json_output:
        console.print_json(
            {"name": pulled.name, "path": str(pulled.path), "sha256": pulled.sha256, "card": pulled.card.to_dict()}
        )
        return
    console.out.print(  # one line whatever the terminal's width: scripts read the hash from it
        f"installed {printable(pulled.name)} ({printable(str(pulled.path))}); sha256 {pulled.sha256}", soft_wrap=True
    )

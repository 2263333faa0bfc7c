"""Where a batch's outputs go and what is checked before any work: names, places, claims.

Each input gives a set of files (:class:`OutputSet`): the class raster ``<input>_classes.tif``
(``-o`` for a single input, ``--out-dir`` or beside the input otherwise: :func:`place_outputs`),
and the optional probabilities, uncertainty, objects and style files named after it. Before
any work, :class:`OutputClaims` refuses an output that is a file the batch reads (an input
under whatever spelling or link, a file a VRT input reads, the weights), or another input's
output; then :meth:`OutputSet.check` refuses one that exists (without ``overwrite``), that is
no regular file, that is not a GeoTIFF's name, or whose folder cannot take it; and
:func:`check_settings` refuses, once per batch, objects the model's classes cannot give.

Nothing is written beside a remote input, so its outputs need ``-o`` or ``--out-dir``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic import InputFiles, check_output, make_folder, name_key, refuse_special
from .card import ModelCard
from .errors import AerialsegError, InputRasterError, OutputWriteError
from .journal import scratch_paths
from .locations import InputRef, RasterRef, local_file, local_files, looks_remote
from .options import OutputOptions
from .sink import SinkLayout, class_raster, probability_raster, uncertainty_raster
from .styles import qml_path, raster_sidecars

__all__ = [
    "RASTER_OUTPUT_SUFFIXES",
    "BANDS_FOLDER_SUFFIX",
    "OutputSet",
    "OutputClaims",
    "check_settings",
    "files_read",
    "output_for",
    "place_outputs",
]

RASTER_OUTPUT_SUFFIXES = (".tif", ".tiff")
"""The names a class raster may take: aerialseg writes GeoTIFFs (a ``.png`` name would hide one)."""

BANDS_FOLDER_SUFFIX = ".bands"
"""Ending of the hidden folder of a split raster's bands (see :attr:`OutputSet.bands_folder`)."""

_NESTED_SOURCES = 8
"""How deep :func:`files_read` follows VRTs that read VRTs."""


@dataclass(frozen=True)
class OutputSet:
    """Every file one input gives: the class raster, and the optional products named after it.

    ``<target>_probabilities.tif`` and ``<target>_uncertainty.tif`` sit beside the class raster;
    the objects file drops a ``_classes`` suffix: ``<input>_objects<objects_suffix>`` (or is
    the options' ``objects_path``). ``styles``
    are the style files QGIS and GDAL read beside them (:mod:`aerialseg.styles`): the class
    raster's ``.qml`` and ``.aux.xml`` when the rasters are delivered (``cog``), and the objects
    file's ``.qml`` unless it is a GeoPackage, which keeps its styles inside.
    """

    classes: Path
    probabilities: Path | None = None
    uncertainty: Path | None = None
    objects: Path | None = None
    styles: tuple[Path, ...] = ()

    @classmethod
    def for_target(cls, target: str | os.PathLike[str], output: OutputOptions) -> OutputSet:
        """The outputs ``output`` asks for, with the class raster at ``target``."""
        from .vector.writer import FORMATS

        path = Path(target)
        objects = output.objects_path or path.with_name(
            f"{path.stem.removesuffix('_classes')}_objects{output.objects_suffix}"
        )
        vectorized = output.vectorize is not None
        styles = [
            *(raster_sidecars(path) if output.cog else []),
            *([qml_path(objects)] if vectorized and FORMATS.get(objects.suffix.lower(), "GPKG") != "GPKG" else []),
        ]
        return cls(
            path,
            path.with_name(f"{path.stem}_probabilities.tif") if output.probabilities else None,
            path.with_name(f"{path.stem}_uncertainty.tif") if output.uncertainty else None,
            objects if vectorized else None,
            tuple(styles),
        )

    @property
    def rasters(self) -> list[Path]:
        """The raster paths, the class map first (the order of :meth:`layouts`)."""
        return [path for path in (self.classes, self.probabilities, self.uncertainty) if path is not None]

    def layouts(self, card: ModelCard) -> list[tuple[Path, SinkLayout]]:
        """``(path, layout)`` of every raster, the class map first."""
        kinds = (
            (self.classes, class_raster),
            (self.probabilities, probability_raster),
            (self.uncertainty, uncertainty_raster),
        )
        return [(path, layout(card)) for path, layout in kinds if path is not None]

    @property
    def confidence(self) -> Path | None:
        """The raster the objects take their confidence from: probabilities, else uncertainty."""
        return self.probabilities or self.uncertainty

    @property
    def products(self) -> list[Path]:
        """The rasters, the objects file when there is one, then the style files."""
        return [*self.rasters, *([self.objects] if self.objects is not None else []), *self.styles]

    @property
    def bands_folder(self) -> Path:
        """The hidden folder beside the class raster where a cluster puts its bands of rows (emptied first)."""
        return self.classes.with_name(f".{self.classes.name}{BANDS_FOLDER_SUFFIX}")

    @property
    def written(self) -> list[Path]:
        """Every file a run of this set writes or deletes: the products, and each raster's scratch files."""
        return [*self.products, *(path for raster in self.rasters for path in scratch_paths(raster))]

    def refuse_inputs(self, inputs: InputFiles) -> None:
        """Refuse, whatever ``overwrite`` says, an output or scratch file that is one of ``inputs``.

        So is a :attr:`bands_folder` that holds an input: a cluster run empties it.
        """
        for path in self.written:
            role = "output" if path in self.products else "scratch file of the output"
            inputs.refuse(path, role, hint="choose another -o or --out-dir")
        inside = inputs.inside(self.bands_folder)
        if inside is not None:
            raise OutputWriteError(
                f"the cluster's folder for the bands of this output holds the input {inside}",
                path=self.bands_folder,
                hint="move the input elsewhere, or choose another -o or --out-dir",
            )

    def check(self, overwrite: bool) -> None:
        """Refuse before any work: a class raster not named as a GeoTIFF, an output that may not be written.

        That is one that exists (without ``overwrite``), is no regular file or lies in a folder
        that cannot take it (see :func:`~aerialseg.atomic.check_output`), and an objects file of
        an unknown format. Call :meth:`refuse_inputs` first: this refusal suggests
        ``--overwrite``, which must never be suggested for an input.
        """
        refuse_special(self.classes)
        if self.classes.suffix.lower() not in RASTER_OUTPUT_SUFFIXES:
            raise OutputWriteError(
                f"aerialseg writes GeoTIFFs, which a {self.classes.suffix or 'suffix-less'} name would hide",
                path=self.classes,
                hint=f"name the output {self.classes.stem}.tif",
            )
        for path in (*self.rasters, *self.styles):
            check_output(path, overwrite)
        if self.objects is not None:
            from .vector.writer import format_for

            format_for(check_output(self.objects, overwrite))

    def write_objects(self, output: OutputOptions, card: ModelCard) -> None:
        """The finished class raster into the objects file, when ``output.vectorize`` asks for one.

        The objects take mean/max confidence attributes from the probability raster, else the
        uncertainty raster, when the run writes one. A model whose card names a smallest
        segment (a Deepness file's ``seg_small_segment``, in model pixels) drops smaller objects
        unless a minimum area was given.
        """
        if output.vectorize is None or self.objects is None:
            return
        from .vector import vectorize

        confidence = self.probabilities or self.uncertainty
        settings = replace(output.vectorize, confidence=confidence, overwrite=output.overwrite)
        if card.min_segment and settings.min_area_m2 is None:
            settings = replace(settings, min_area_m2=card.min_segment * self._model_pixel_m2(card))
        vectorize(self.classes, self.objects, settings)

    def _model_pixel_m2(self, card: ModelCard) -> float:
        """The area of one model pixel: the card's GSD squared, else the class raster's pixel."""
        if card.gsd_m:
            return card.gsd_m**2
        from .raster import open_raster

        with open_raster(self.classes) as dataset:
            return abs(dataset.transform.a * dataset.transform.e)


def files_read(inputs: Iterable[InputRef]) -> list[Path]:
    """The local files reading ``inputs`` touches: each input and the files GDAL reads for it.

    A VRT reads its sources (and a VRT among them, its own), so ``predict view.vrt -o data.tif``
    must not replace the ``data.tif`` the VRT shows. An input that does not open is left to
    fail on its own turn, with its own message.
    """
    from .raster import open_raster

    found: list[Path] = []
    pending = [(path, 0) for path in local_files(inputs)]
    while pending:
        path, depth = pending.pop(0)
        if path in found:
            continue
        found.append(path)
        if path.suffix.lower() != ".vrt" or depth >= _NESTED_SOURCES:
            continue
        try:
            with open_raster(path, plain_pictures=True) as dataset:
                pending += [(Path(name), depth + 1) for name in dataset.files if not name.startswith("/vsi")]
        except AerialsegError:
            continue
    return found


class OutputClaims:
    """The checks that span a batch: no output may be a file it reads, nor another input's output.

    Outputs are checked against every input (and the files each reads), not only their own,
    and against the outputs claimed before them: one file's map must neither replace another
    input before it is read nor replace another file's map. ``reads`` are the other files the
    run reads (the weights, a calibration raster): no output may be one of them either.
    """

    def __init__(self, inputs: Iterable[InputRef], output: OutputOptions, reads: Iterable[Path] = ()):
        self.output = output
        self.inputs = InputFiles([*files_read(inputs), *reads])
        self._claimed: dict[str, InputRef] = {}

    def claim(self, path: InputRef, target: Path) -> OutputSet | None:
        """The checks before one input's work: its outputs, or None when ``skip_finished`` finds its class raster.

        Raises :class:`~aerialseg.errors.AerialsegError` for a missing input, an output that is
        a file the batch reads or another input's output, or one that may not be written (see
        :meth:`OutputSet.check`).
        """
        local = local_file(path)
        if local is not None and not local.exists():
            raise InputRasterError("no such file" if local == path else f"no such file {local}", path=path)
        outputs = OutputSet.for_target(target, self.output)
        outputs.refuse_inputs(self.inputs)
        for product in outputs.products:
            owner = self._claimed.setdefault(name_key(product), path)
            if owner != path:
                raise OutputWriteError(
                    f"is also the output of {owner} in this batch",
                    path=product,
                    hint="inputs with the same name need separate runs with different --out-dir",
                )
        if self.output.skip_finished and outputs.classes.exists():
            return None
        outputs.check(self.output.overwrite)
        return outputs


def output_for(input_path: InputRef, out_dir: Path) -> Path:
    """Predictable output name: ``<out_dir>/<input stem>_classes.tif`` (a URL's file name, a STAC item's id)."""
    return out_dir / f"{input_path.stem}_classes.tif"


def place_outputs(
    paths: list[InputRef],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    mosaic: bool = False,
) -> list[tuple[InputRef, Path]]:
    """``(input, class raster)`` of every input, refused before any work where outputs cannot be placed.

    The class raster is ``output`` for a single input, else :func:`output_for` in ``out_dir``
    (created here) or beside the input; a ``mosaic`` with ``output`` gives the one pair
    (first input, ``output``): the mosaic's one raster, checked as that input's. Refused: ``output``
    and ``out_dir`` together (one would be ignored), ``output`` for several inputs (unless it is
    the mosaic's), a URL as either (outputs are local files), a remote input with neither
    (nothing is written beside a URL), and an input of a ``mosaic`` that is not a local file
    (its VRT names local files, see :mod:`aerialseg.mosaic`).
    """
    _check_places(paths, out_dir=out_dir, output=output, mosaic=mosaic)
    if output is not None:  # one input, or one mosaic: its output is claimed as the first input's
        return [(paths[0], Path(output))] if paths else []
    if out_dir is not None:
        make_folder(out_dir, "the output folder")
    return [(path, output_for(path, Path(out_dir) if out_dir is not None else _beside(path))) for path in paths]


def _check_places(
    paths: list[InputRef],
    *,
    out_dir: str | os.PathLike[str] | None,
    output: str | os.PathLike[str] | None,
    mosaic: bool,
) -> None:
    """The refusals of :func:`place_outputs`."""
    if output is not None and out_dir is not None:
        raise AerialsegError(
            "-o names the output file and --out-dir an output folder; give one of them",
            hint="-o FILE for one input (or one mosaic), --out-dir FOLDER for <input>_classes.tif files",
        )
    if mosaic:
        for path in paths:
            if not isinstance(path, Path):
                raise AerialsegError(
                    "--mosaic takes local files only",
                    path=path,
                    hint="download the files first, or predict without --mosaic",
                )
    for place, flag in ((output, "-o"), (out_dir, "--out-dir")):
        if place is not None and looks_remote(place):
            raise AerialsegError(
                f"{flag} is not a local path: outputs are written to local files",
                path=place,
                hint="write to a local folder, then copy the results up (aws s3 cp, gsutil cp, azcopy)",
            )
    if output is not None and len(paths) != 1 and not mosaic:
        raise AerialsegError(f"-o names one output but {len(paths)} inputs were given", hint="use --out-dir")
    if output is None and out_dir is None:
        for path in paths:
            if isinstance(path, RasterRef) and path.folder is None:
                raise AerialsegError(
                    "nothing can be written beside a remote input",
                    path=path,
                    hint="pass --out-dir FOLDER (outputs are named <name>_classes.tif), or -o FILE for one input",
                )


def _beside(path: InputRef) -> Path:
    """The folder outputs go to without ``--out-dir``; a remote input has none (refused before)."""
    folder = path.parent if isinstance(path, Path) else path.folder
    assert folder is not None, "remote inputs are refused without -o or --out-dir"
    return folder


def check_settings(output: OutputOptions, card: ModelCard) -> None:
    """Refuse before any file is predicted what the model's class map cannot give: ``--vectorize``'s classes.

    The classes are resolved against the card's names as :func:`aerialseg.vector.vectorize` will
    resolve them against the class raster's, and the car geometry and clean-up sizes are
    checked, so a typo fails the batch at once instead of every file after its class map is written.
    """
    if output.vectorize is None:
        return
    from .vector import resolve_classes
    from .vector.settings import check_car_geometry, check_sizes

    check_car_geometry(output.vectorize)
    check_sizes(output.vectorize)
    try:
        resolve_classes(output.vectorize.classes, card.class_names, Path(card.network))
    except AerialsegError as exc:
        raise AerialsegError(f"--vectorize, for this model: {exc.message}", hint=exc.hint) from exc

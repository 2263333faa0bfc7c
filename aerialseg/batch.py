"""The batch layer shared by the local path (``predict_many``) and the Dask path (``predict_on_cluster``).

A batch is many inputs, each predicted into a set of outputs; both paths must agree on which
files a folder or pattern names (:func:`expand_inputs`: never the tool's own earlier outputs,
so a rerun sees the same inputs), which files an input gives (:class:`OutputSet`), what is
checked before any work (:meth:`Batch.start_file`: no output may be an input of the batch,
through whatever spelling or link, nor another input's output; then the target and every
output of the set), whether the settings suit the model (:func:`check_settings`, once per
batch), when an input needs no work (``skip_finished`` and a class raster already there),
what follows the rasters (the objects file: :func:`vectorize_outputs`) and how each input is
reported (one :class:`PredictResult` row; any error of one file, expected or not, is that
file's failed row while the others go on: :func:`failure`). Keeping this in one module lets
the two paths differ only in how the rasters get computed.

An input is a local :class:`~pathlib.Path` or a :class:`~aerialseg.locations.RasterRef` (a
URL, ``/vsi`` path or STAC item's asset): nothing is written beside a remote input, so its
outputs need ``-o`` or ``--out-dir`` (refused before any work without), and only local inputs
need protecting from outputs.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic import InputFiles, check_output, make_folder, name_key
from .card import ModelCard
from .conventions import PAM_SUFFIX, QML_SUFFIX
from .errors import AerialsegError, InputRasterError, OutputWriteError
from .journal import scratch_paths
from .locations import RASTER_SUFFIXES, InputRef, RasterRef, local_file, local_files, looks_remote, remote_ref
from .options import OutputOptions
from .raster import first_line, open_raster
from .sink import SinkLayout, class_raster, probability_raster, uncertainty_raster
from .styles import qml_path, raster_sidecars

__all__ = [
    "RASTER_SUFFIXES",
    "PRODUCT_SUFFIXES",
    "Batch",
    "InputFiles",
    "OutputSet",
    "PredictResult",
    "expand_inputs",
    "is_product",
    "output_for",
    "batch_targets",
    "check_settings",
    "check_places",
    "vectorize_outputs",
    "failed",
    "failure",
    "skipped",
]

_log = logging.getLogger(__name__)

PRODUCT_SUFFIXES = ("_classes", "_probabilities", "_uncertainty")
"""Name endings (before the extension) of the rasters aerialseg writes; ``_classes_probabilities`` ends so too."""

_PROVENANCE_TAG = "AERIALSEG_VERSION"
"""The tag every raster aerialseg writes carries (see :mod:`aerialseg.provenance`)."""


@dataclass(frozen=True)
class PredictResult:
    """One input's outcome; ``error`` holds the one-line message when ``status`` is 'failed'.

    ``status`` is ``ok``, ``skipped`` (``skip_finished`` found its class raster: a success) or ``failed``.
    """

    input: InputRef
    output: Path | None
    status: str
    seconds: float = 0.0
    megapixels: float = 0.0
    tiles_run: int = 0
    tiles_skipped: int = 0
    error: str | None = None

    @property
    def megapixels_per_second(self) -> float:
        """Throughput over the whole file."""
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class OutputSet:
    """Every file one input gives: the class raster, and the optional products named after it.

    ``<target>_probabilities.tif`` and ``<target>_uncertainty.tif`` sit beside the class raster;
    the objects file drops a ``_classes`` suffix: ``<input>_objects<objects_suffix>``. ``styles``
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
        objects = path.with_name(f"{path.stem.removesuffix('_classes')}_objects{output.objects_suffix}")
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
    def written(self) -> list[Path]:
        """Every file a run of this set writes or deletes: the products, and each raster's scratch files."""
        return [*self.products, *(path for raster in self.rasters for path in scratch_paths(raster))]

    def refuse_inputs(self, inputs: InputFiles) -> None:
        """Refuse, whatever ``overwrite`` says, an output or scratch file that is one of ``inputs``."""
        for path in self.written:
            role = "output" if path in self.products else "scratch file of the output"
            inputs.refuse(path, role, hint="choose another -o or --out-dir")

    def check(self, overwrite: bool) -> None:
        """Refuse before any work: an existing output (without ``overwrite``), one that cannot be written.

        An objects file of an unknown format is refused too. Call :meth:`refuse_inputs` first:
        this refusal suggests ``--overwrite``, which must never be suggested for an input.
        """
        for path in (*self.rasters, *self.styles):
            check_output(path, overwrite)
        if self.objects is not None:
            from .vector.writer import format_for

            format_for(check_output(self.objects, overwrite))


class Batch:
    """The inputs of one batch with their class rasters, and the checks that span the whole batch.

    Outputs are checked against every input, not only their own, and against the outputs of
    the inputs started before them: one file's map must neither replace another input before
    it is read nor replace another file's map. ``reads`` are the other files the run reads (the
    weights, a calibration raster): no output may be one of them either.
    """

    def __init__(self, files: list[tuple[InputRef, Path]], output: OutputOptions, reads: Iterable[Path] = ()):
        self.files = files
        self.output = output
        self.inputs = InputFiles([*local_files(path for path, _ in files), *reads])
        self._claimed: dict[str, InputRef] = {}

    def start_file(self, path: InputRef, target: Path) -> OutputSet | None:
        """The checks before one input's work: its outputs, or None when ``skip_finished`` finds its class raster.

        Raises :class:`~aerialseg.errors.AerialsegError` for a missing input, an output that is
        an input of the batch or another input's output, or one that may not be written (see
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
        resolve_classes(output.vectorize.classes, card.class_names, Path(f"{card.arch}-{card.backbone}"))
    except AerialsegError as exc:
        raise AerialsegError(f"--vectorize, for this model: {exc.message}", hint=exc.hint) from exc


def is_product(path: Path) -> bool:
    """Whether ``path`` is a file aerialseg wrote (a folder or pattern then leaves it out).

    Known by its name: hidden (scratch files, a cluster's band folders), a raster ending in
    :data:`PRODUCT_SUFFIXES`, an objects file; else, for a GeoTIFF, by aerialseg's provenance tag.
    A style file (``.qml``, GDAL's ``.aux.xml``) is one when the file it styles is one.
    """
    from .vector.writer import FORMATS

    if path.name.startswith(".") or (path.parent.name.startswith(".") and path.parent.name.endswith(".bands")):
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
    try:
        with open_raster(path, plain_pictures=True) as dataset:
            return _PROVENANCE_TAG in dataset.tags()
    except AerialsegError:
        return False


def expand_inputs(items: Iterable[str | os.PathLike[str] | RasterRef], asset: str | None = None) -> list[InputRef]:
    """Files, folders (their rasters, sorted), glob patterns, URLs and STAC items, in the order given, without repeats.

    Folders and patterns leave out aerialseg's own outputs (:func:`is_product`), so a rerun
    beside earlier results sees the same inputs; a file named explicitly is taken as given.
    A URL or ``/vsi`` path is one remote input; a ``.json`` file or URL is a STAC Item (or
    ItemCollection), read now, whose ``asset`` (default: its visual image) is the input (see
    :mod:`aerialseg.stac`). An ``asset`` with no STAC item among the inputs is refused: it would
    silently choose nothing.
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
            found = [
                *_without_products(
                    sorted(p for p in Path(text).iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
                )
            ]
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


def _without_products(found: list[Path]) -> list[Path]:
    """``found`` without aerialseg's outputs, each one left out logged (``-v`` shows them)."""
    kept = []
    for path in found:
        if is_product(path):
            _log.info("%s: left out, an output of aerialseg", path)
        else:
            kept.append(path)
    return kept


def output_for(input_path: InputRef, out_dir: Path) -> Path:
    """Predictable output name: ``<out_dir>/<input stem>_classes.tif`` (a URL's file name, a STAC item's id)."""
    return out_dir / f"{input_path.stem}_classes.tif"


def _beside(path: InputRef) -> Path:
    """The folder outputs go to without ``--out-dir``; a remote input has none (checked before)."""
    folder = path.parent if isinstance(path, Path) else path.folder
    assert folder is not None, "remote inputs are refused without -o or --out-dir"
    return folder


def batch_targets(
    inputs: Iterable[str | os.PathLike[str] | RasterRef],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    asset: str | None = None,
) -> list[tuple[InputRef, Path]]:
    """``(input, class raster)`` of every input: ``output`` for a single input, else :func:`output_for`.

    The class rasters go to ``out_dir`` (created here) or beside each input, as
    :func:`check_places` allows. ``asset`` chooses a STAC item's asset (see :func:`expand_inputs`).
    """
    paths = expand_inputs(inputs, asset)
    check_places(paths, out_dir=out_dir, output=output)
    if out_dir is not None:
        make_folder(out_dir, "the output folder")
    return [
        (path, Path(output) if output is not None else output_for(path, Path(out_dir or _beside(path))))
        for path in paths
    ]


def check_places(
    paths: list[InputRef],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    mosaic: bool = False,
) -> None:
    """Refuse, before any work, outputs that cannot be placed.

    That is ``output`` for several inputs (unless it is the ``mosaic``'s), a URL as ``output``
    or ``out_dir`` (outputs are local files), a remote input with neither (nothing is written
    beside a URL), and any input that is not a local file in a ``mosaic`` (its VRT names local
    files, see :mod:`aerialseg.mosaic`).
    """
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


def vectorize_outputs(outputs: OutputSet, output: OutputOptions) -> None:
    """The finished class raster into the objects file, when ``output.vectorize`` asks for one.

    The objects take mean/max confidence attributes from the probability raster, else the
    uncertainty raster, when the run writes one.
    """
    if output.vectorize is None or outputs.objects is None:
        return
    from .vector import vectorize

    settings = replace(output.vectorize, confidence=outputs.confidence, overwrite=output.overwrite)
    vectorize(outputs.classes, outputs.objects, settings)


def failed(path: InputRef, message: str) -> PredictResult:
    """The row of an input that failed with ``message`` (one line naming the file)."""
    return PredictResult(path, None, "failed", error=message)


def failure(path: InputRef, exc: Exception) -> PredictResult:
    """The row of an input whose work raised ``exc``: aerialseg's one line, or an unexpected error.

    An unexpected error (a bug, or a library's error aerialseg does not word) keeps its
    traceback in the log, which ``-v`` shows; the row says so in one line.
    """
    if isinstance(exc, AerialsegError):
        return failed(path, str(exc))
    _log.info("the unexpected error on %s", path, exc_info=exc)
    detail = f"{type(exc).__name__}: {first_line(exc)}" if str(exc) else type(exc).__name__
    return failed(path, f"{path}: unexpected error ({detail}); rerun with -v for the traceback")


def skipped(path: InputRef, target: Path) -> PredictResult:
    """The row of an input left alone because its class raster exists (``skip_finished``)."""
    return PredictResult(path, target, "skipped")

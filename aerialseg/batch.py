"""The batch layer shared by the local path (``predict_many``) and the Dask path (``predict_on_cluster``).

A batch is many inputs, each predicted into a set of outputs; both paths must agree on which
files an input gives (:class:`OutputSet`), what is checked before any work (the target and
every output of the set: :func:`start_file`), when an input needs no work (``skip_finished``
and a class raster already there), what follows the rasters (the objects file:
:func:`vectorize_outputs`) and how each input is reported (one :class:`PredictResult` row,
a failed file being a failed row while the others go on). Keeping this in one module lets
the two paths differ only in how the rasters get computed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic import check_output
from .card import ModelCard
from .errors import AerialsegError, InputRasterError, OutputWriteError
from .options import OutputOptions
from .sink import SinkLayout, class_raster, probability_raster, uncertainty_raster

__all__ = [
    "RASTER_SUFFIXES",
    "OutputSet",
    "PredictResult",
    "expand_inputs",
    "output_for",
    "batch_targets",
    "start_file",
    "vectorize_outputs",
    "failed",
    "skipped",
]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png")
"""The files a folder given as input contributes."""


@dataclass(frozen=True)
class PredictResult:
    """One input's outcome; ``error`` holds the one-line message when ``status`` is 'failed'.

    ``status`` is ``ok``, ``skipped`` (``skip_finished`` found its class raster: a success) or ``failed``.
    """

    input: Path
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
    the objects file drops a ``_classes`` suffix: ``<input>_objects<objects_suffix>``.
    """

    classes: Path
    probabilities: Path | None = None
    uncertainty: Path | None = None
    objects: Path | None = None

    @classmethod
    def for_target(cls, target: str | os.PathLike[str], output: OutputOptions) -> OutputSet:
        """The outputs ``output`` asks for, with the class raster at ``target``."""
        path = Path(target)
        objects = path.with_name(f"{path.stem.removesuffix('_classes')}_objects{output.objects_suffix}")
        return cls(
            path,
            path.with_name(f"{path.stem}_probabilities.tif") if output.probabilities else None,
            path.with_name(f"{path.stem}_uncertainty.tif") if output.uncertainty else None,
            objects if output.vectorize is not None else None,
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

    def check(self, overwrite: bool) -> None:
        """Refuse before any work: an existing output (without ``overwrite``), one that cannot be written.

        An objects file of an unknown format is refused too.
        """
        for path in self.rasters:
            check_output(path, overwrite)
        if self.objects is not None:
            from .vector.writer import format_for

            format_for(check_output(self.objects, overwrite))


def expand_inputs(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, folders (their rasters, sorted) and glob patterns, in the order given, without repeats."""
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True))
        else:
            found = [Path(text)]
        paths += [p for p in found if p not in paths]
    return paths


def output_for(input_path: Path, out_dir: Path) -> Path:
    """Predictable output name: ``<out_dir>/<input stem>_classes.tif``."""
    return out_dir / f"{input_path.stem}_classes.tif"


def batch_targets(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> list[tuple[Path, Path]]:
    """``(input, class raster)`` of every input: ``output`` for a single input, else :func:`output_for`.

    The class rasters go to ``out_dir`` (created here) or beside each input.
    """
    paths = expand_inputs(inputs)
    if output is not None and len(paths) != 1:
        raise AerialsegError(f"-o names one output but {len(paths)} inputs were given", hint="use --out-dir")
    if out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"cannot create the output folder ({exc.strerror})", path=out_dir) from exc
    return [
        (path, Path(output) if output is not None else output_for(path, Path(out_dir or path.parent))) for path in paths
    ]


def start_file(path: Path, target: Path, output: OutputOptions) -> OutputSet | None:
    """The checks before one input's work: its outputs, or None when ``skip_finished`` finds its class raster.

    Raises :class:`~aerialseg.errors.AerialsegError` for a missing input or an output that may
    not be written (see :meth:`OutputSet.check`).
    """
    if not path.exists():
        raise InputRasterError("no such file", path=path)
    outputs = OutputSet.for_target(target, output)
    if output.skip_finished and outputs.classes.exists():
        return None
    outputs.check(output.overwrite)
    return outputs


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


def failed(path: Path, message: str) -> PredictResult:
    """The row of an input that failed with ``message`` (one line naming the file)."""
    return PredictResult(path, None, "failed", error=message)


def skipped(path: Path, target: Path) -> PredictResult:
    """The row of an input left alone because its class raster exists (``skip_finished``)."""
    return PredictResult(path, target, "skipped")

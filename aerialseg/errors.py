"""The one exception tree of aerialseg, and its warnings.

Every error carries the ``path`` it concerns and a ``hint`` saying how to fix it; its
``str()`` is the one line the command line prints. Leaves also inherit the builtin that
fits (``OSError``, ``ValueError``, ``LookupError``) so callers' existing ``except``
clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "AerialsegError",
    "InputRasterError",
    "BandMismatchError",
    "GSDMismatchError",
    "OutputExistsError",
    "OutputWriteError",
    "UnknownModelError",
    "UnknownDatasetError",
    "WeightsError",
    "DownloadError",
    "ExportParityError",
    "MissingDependencyError",
    "DatasetLayoutError",
    "LabelColourError",
    "TrainingError",
    "AerialsegWarning",
    "first_line",
]


class AerialsegError(Exception):
    """Root of aerialseg's errors: ``path: problem; hint``.

    ``path`` is anything whose ``str()`` names the file as the user wrote it: a path, or a
    remote input (:class:`~aerialseg.locations.RasterRef`, whose spelling a Path would mangle).
    """

    def __init__(self, message: str, *, path: object = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        """One line: the file, the problem, the fix."""
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text}; {self.hint}" if self.hint else text


class InputRasterError(AerialsegError, OSError):
    """An input raster cannot be opened or read (not a raster, truncated, unreadable)."""


class BandMismatchError(AerialsegError, ValueError):
    """The input's bands cannot be mapped to the bands the model expects."""


class GSDMismatchError(AerialsegError, ValueError):
    """The input's ground sampling distance is too far from the model's to resample."""


class OutputExistsError(AerialsegError, FileExistsError):
    """The output exists and ``--overwrite`` was not given."""


class OutputWriteError(AerialsegError, OSError):
    """The output cannot be written (folder missing or read-only, disk full)."""


class UnknownModelError(AerialsegError, LookupError):
    """A model, architecture or backbone name that aerialseg does not know."""


class UnknownDatasetError(AerialsegError, ValueError):
    """A dataset name that aerialseg has no protocol for."""


class WeightsError(AerialsegError, ValueError):
    """A weights file that is unreadable, lacks its card, was altered, or needs unpickling."""


class DownloadError(AerialsegError, OSError):
    """A download failed: the host cannot be reached, the server answered an error, the connection dropped."""


class ExportParityError(AerialsegError, ValueError):
    """ONNX Runtime disagrees with PyTorch beyond the thresholds; nothing was written."""


class MissingDependencyError(AerialsegError, ImportError):
    """An optional dependency (an extra) is not installed."""


class DatasetLayoutError(AerialsegError, ValueError):
    """A dataset folder or archive that does not look as expected (missing tiles, images without labels)."""


class LabelColourError(AerialsegError, ValueError):
    """A label image holds a colour or value that is not in the class table."""


class TrainingError(AerialsegError, ValueError):
    """Training cannot start or continue (incompatible checkpoint, bad settings, a diverged loss)."""


class AerialsegWarning(UserWarning):
    """Base of aerialseg's warnings."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (GDAL's can run to several), or its type.

    rasterio's "Read failed. See previous exception for details." says nothing itself: the
    exception it was raised from (a VRT's missing source, a block that does not decode) does.
    """
    while "see previous exception" in str(exc).lower() and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__

"""A second process that polygonises strips, so that vectorizing keeps two cores busy.

GDAL's polygoniser, as rasterio calls it, runs under Python's lock: a thread cannot run it
beside the merging, measuring and writing of the previous strip. This module is both sides
of a worker process (``python -m aerialseg.vector.polygonizer``) that reads strips on its
stdin and answers with their polygons as flat arrays on its stdout, in order. It is a plain
subprocess rather than :mod:`multiprocessing`, whose start methods re-import the caller's
main script (a user's script without a ``__main__`` guard would run again) and which a
daemon process, such as a Dask worker, may not use. A reader thread empties the worker's
stdout as answers come, so neither side ever waits on a full pipe.

A message is one JSON line, then the raw arrays it describes.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
from typing import IO, Any

import numpy as np

__all__ = ["Polygonizer", "polygonize"]

Rings = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""One strip's polygons: vertices ``(n, 2)`` float64, ring ends, polygon ends (offsets, int64), class ids."""

_ARRAYS = (("points", np.float64), ("ring_ends", np.int64), ("polygon_ends", np.int64), ("values", np.int64))


def polygonize(classes: np.ndarray, wanted: np.ndarray, row_off: int) -> Rings:
    """GDAL's 4-connected polygons of the ``wanted`` classes in ``classes``, shifted down by ``row_off`` rows."""
    import rasterio.features
    from affine import Affine

    if classes.dtype.kind == "u" and classes.dtype.itemsize <= 2:  # a table lookup: one pass, no sorting
        lookup = np.zeros(np.iinfo(classes.dtype).max + 1, bool)
        lookup[wanted[(wanted >= 0) & (wanted < len(lookup))]] = True
        mask = lookup[classes]
    else:
        mask = np.isin(classes, wanted)
    points: list[tuple[float, float]] = []
    ring_ends, polygon_ends, values = [0], [0], []
    if mask.any():
        shapes = rasterio.features.shapes(classes, mask=mask, connectivity=4, transform=Affine.translation(0, row_off))
        for geojson, value in shapes:
            for ring in geojson["coordinates"]:
                points.extend(ring)
                ring_ends.append(len(points))
            polygon_ends.append(len(ring_ends) - 1)
            values.append(int(value))
    return (
        np.asarray(points, np.float64).reshape(-1, 2),
        np.asarray(ring_ends, np.int64),
        np.asarray(polygon_ends, np.int64),
        np.asarray(values, np.int64),
    )


class Polygonizer:
    """The worker process: :meth:`submit` strips, :meth:`receive` their polygons in the same order."""

    @staticmethod
    def available() -> bool:
        """Whether this process runs on a Python that can start the worker (not one embedded in QGIS, say)."""
        from pathlib import Path

        return bool(sys.executable) and Path(sys.executable).name.lower().startswith("python")

    def __init__(self) -> None:
        self._log = tempfile.TemporaryFile()  # its stderr: a file, which never fills up as a pipe would
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        self._answers: queue.Queue[Rings | BaseException] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True, name="aerialseg-polygonizer")
        self._reader.start()

    def submit(self, classes: np.ndarray, wanted: np.ndarray, row_off: int) -> None:
        """Send one strip."""
        stdin = self.process.stdin
        assert stdin is not None
        classes = np.ascontiguousarray(classes)
        header = {"shape": classes.shape, "dtype": classes.dtype.str, "row_off": row_off, "wanted": wanted.tolist()}
        try:
            stdin.write(json.dumps(header).encode() + b"\n")
            stdin.write(classes.data)
            stdin.flush()
        except OSError as exc:  # the worker died: its reason is the answer's
            raise RuntimeError(f"the polygonising process ended: {self._stderr()}") from exc

    def receive(self) -> Rings:
        """The polygons of the oldest strip not yet received."""
        answer = self._answers.get()
        if isinstance(answer, BaseException):
            raise RuntimeError(f"the polygonising process failed: {answer}") from answer
        return answer

    def close(self) -> None:
        """End the worker (at once when the caller stopped early)."""
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while (line := stdout.readline()) != b"":
                header = json.loads(line)
                if "error" in header:
                    raise RuntimeError(header["error"])
                points, ring_ends, polygon_ends, values = (_read_array(stdout, header[n], t) for n, t in _ARRAYS)
                self._answers.put((points, ring_ends, polygon_ends, values))
            raise RuntimeError(self._stderr() or "it exited")
        except BaseException as exc:  # noqa: BLE001 (handed to the caller, who raises it)
            self._answers.put(exc)

    def _stderr(self) -> str:
        """The last line the worker wrote on its stderr (once it has ended), for the failure's message."""
        if self.process.poll() is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else ""


def _read_array(stream: IO[bytes], shape: list[int], dtype: Any) -> np.ndarray:  # noqa: ANN401
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    data = stream.read(size)
    if len(data) != size:
        raise RuntimeError("its answer was cut short")
    return np.frombuffer(data, dtype).reshape(shape)


def _serve() -> None:
    """The worker's loop: a strip in, its polygons out, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (line := stdin.readline()) != b"":
        header = json.loads(line)
        dtype = np.dtype(header["dtype"])
        size = int(np.prod(header["shape"])) * dtype.itemsize
        classes = np.frombuffer(stdin.read(size), dtype).reshape(header["shape"])
        try:
            rings = polygonize(classes, np.asarray(header["wanted"], np.int64), header["row_off"])
        except Exception as exc:  # noqa: BLE001 (sent to the caller, which raises it)
            stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
            stdout.flush()
            return
        answer = {name: list(array.shape) for (name, _), array in zip(_ARRAYS, rings, strict=True)}
        stdout.write(json.dumps(answer).encode() + b"\n")
        for array in rings:
            stdout.write(np.ascontiguousarray(array).data)
        stdout.flush()


if __name__ == "__main__":
    try:
        _serve()
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C to the group, or the caller gone: end quietly
        sys.exit(1)

"""The accuracy gate: a reduced-precision network proves itself on real tiles before a run.

Before the first raster of a run, a few of its tiles with data (nodata pixels left out)
go through the float32 network and the reduced-precision one; the share of valid pixels
whose class (argmax) agrees is the gate's figure. At or above ``min_agreement`` (99 % by
default) the run goes on in reduced precision and the float32 network is released; below
it, an explicit ``--precision`` stops the run with one line (nothing written), while
``auto`` falls back to float32 and says so. The figure goes into every output's
provenance tags. The gate runs once per runner (the first raster of a batch with data),
since it measures the weights and the arithmetic, not the scene.

The gate costs about one float32 forward per gate tile, so it takes two tiles (half a
million pixels of 512-pixel tiles, enough to tell 99 % from 98 %) and one more per 200 tiles
of a larger raster, up to four: a few per cent of a 4096² run, less beyond. int8 also needs
calibration tiles: 16 more from the same raster (or from ``--calibration``), disjoint from
the gate's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import AerialsegError
from .choice import DEFAULT_MIN_AGREEMENT

if TYPE_CHECKING:
    from . import Runner as _Runner

__all__ = [
    "CALIBRATION_TILES",
    "GateResult",
    "GatedRunner",
    "PrecisionGateError",
    "TileSample",
    "gate_tile_count",
]

CALIBRATION_TILES = 16
_log = logging.getLogger(__name__)


class PrecisionGateError(AerialsegError, ValueError):
    """Reduced precision changed too many pixels' classes on the gate's tiles; nothing was written."""


class TileSample(Protocol):
    """Real tiles of a raster for the gate and for int8 calibration."""

    name: str
    tile_count: int  # tiles in the raster's plan (the gate takes more of a larger raster)

    def tiles(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Up to ``count`` ``(pixels (bands, h, w) in [0, 1], valid (h, w))`` spread over the raster."""
        ...


def gate_tile_count(tile_count: int) -> int:
    """Gate tiles for a raster of ``tile_count`` tiles (see the module docstring)."""
    return int(np.clip(tile_count // 200, 2, 4))


@dataclass(frozen=True)
class GateResult:
    """One gate: reduced ``precision`` against fp32 on ``pixels`` valid pixels of ``tiles`` tiles."""

    precision: str
    agreement: float
    pixels: int
    tiles: int
    threshold: float
    source: str
    seconds: float
    fell_back: bool = False

    @property
    def passed(self) -> bool:
        """Agreement at or above the threshold."""
        return self.agreement >= self.threshold

    def describe(self) -> str:
        """One line for logs and provenance tags."""
        text = (
            f"{self.agreement:.3%} of {self.pixels:,} valid pixels on {self.tiles} tile"
            f"{'s' if self.tiles != 1 else ''} of {self.source} agree with fp32 (threshold {self.threshold:.2%})"
        )
        return text + (", so fp32 ran instead" if self.fell_back else "")


class GatedRunner:
    """A reduced-precision runner that runs only after passing the gate (see the module docstring).

    ``reference`` is the float32 runner; ``build(sample)`` makes the reduced-precision one
    (``sample`` gives int8 its calibration tiles). ``strict``: an explicitly asked precision,
    which fails instead of falling back.
    """

    def __init__(
        self,
        reference: _Runner,
        build: Callable[[TileSample], _Runner],
        precision: str,
        *,
        strict: bool,
        min_agreement: float = DEFAULT_MIN_AGREEMENT,
        calibration: TileSample | None = None,
    ) -> None:
        if not 0.0 <= min_agreement <= 1.0:
            raise AerialsegError(f"--min-agreement {min_agreement} is not within 0..1", hint="e.g. 0.99")
        self.card = reference.card
        self.gate = self
        self.result: GateResult | None = None
        self._reference: _Runner | None = reference
        self._build: Callable[[TileSample], _Runner] | None = build
        self._wanted = precision
        self._strict = strict
        self._min_agreement = min_agreement
        self._calibration = calibration
        self._active: _Runner | None = None
        self._failure: PrecisionGateError | None = None  # a strict gate that failed fails every later call too

    @property
    def precision(self) -> str:
        """The precision that runs (the wanted one until the gate has spoken)."""
        return self._active.precision if self._active is not None else self._wanted

    @property
    def description(self) -> str:
        """The active runner's, or what will run once the gate has passed."""
        if self._active is not None:
            return self._active.description
        if self._reference is None:  # released by a strict gate that failed
            return f"{self._wanted}, failed its accuracy gate"
        return f"{self._wanted}, pending its accuracy gate ({self._reference.description} as reference)"

    def settle(self, sample: TileSample) -> GateResult | None:
        """Run the gate on ``sample``'s tiles, once; None when it has no tile with data (try the next raster).

        Later calls return the result at once, or raise the same error after a strict failure.
        """
        if self._failure is not None:
            raise self._failure
        if self.result is not None:
            return self.result
        count = gate_tile_count(sample.tile_count)
        needs_calibration = self._wanted == "int8" and self._calibration is None
        tiles = sample.tiles(count + (CALIBRATION_TILES if needs_calibration else 0))
        if not tiles:
            return None
        start = time.perf_counter()
        if needs_calibration:
            # alternate tiles between gate and calibration so both cover the whole raster
            gate_tiles = tiles[:: max(1, len(tiles) // count)][:count] if len(tiles) > count else tiles
            chosen = {id(t) for t in gate_tiles}
            calibration: TileSample = _Fixed(sample.name, [t for t in tiles if id(t) not in chosen] or tiles)
        else:
            gate_tiles, calibration = tiles, self._calibration or sample
        reference, build = self._reference, self._build
        assert reference is not None and build is not None  # released only once a result exists
        candidate = build(calibration)
        agree = pixels = 0
        for data, valid in gate_tiles:
            expected = reference(data[None])[0].argmax(0)
            got = candidate(data[None])[0].argmax(0)
            agree += int((expected == got)[valid].sum())
            pixels += int(valid.sum())
        agreement = agree / pixels if pixels else 1.0
        result = GateResult(
            self._wanted,
            agreement,
            pixels,
            len(gate_tiles),
            self._min_agreement,
            sample.name,
            time.perf_counter() - start,
        )
        self._build = None  # it may hold the reference, which is released below when the gate passes
        if result.passed:
            self._active, self._reference = candidate, None
            _log.info("%s accuracy gate passed: %s", self._wanted, result.describe())
        elif self._strict:
            self.result, self._reference = result, None
            self._failure = PrecisionGateError(
                f"--precision {self._wanted} failed its accuracy gate: {agreement:.3%} of {pixels:,} valid pixels on "
                f"{len(gate_tiles)} tiles agree with fp32, below the threshold {self._min_agreement:.2%}; "
                "nothing written",
                path=sample.name,
                hint="use --precision fp32 (or auto), or lower --min-agreement",
            )
            raise self._failure
        else:
            result = replace(result, fell_back=True)
            self._active = self._reference
            _log.warning("%s accuracy gate failed: %s", self._wanted, result.describe())
        self.result = result
        return result

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities from the active runner; an unsettled gate first runs on this batch."""
        if self._active is None:
            valid = np.ones(batch.shape[2:], dtype=bool)
            self.settle(_Fixed("the first batch", [(tile, valid) for tile in batch]))  # raises if it fails
        assert self._active is not None
        return self._active(batch)


class _Fixed:
    """A :class:`TileSample` over tiles already in memory."""

    def __init__(self, name: str, tiles: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.name = name
        self._tiles = tiles
        self.tile_count = len(tiles)

    def tiles(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._tiles[:count]

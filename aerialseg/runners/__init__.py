"""Runners: one contract for every inference engine and precision.

A runner maps a batch of model-ready tiles ``(N, bands, H, W)`` float32 in [0, 1] (pixels
already scaled as the card says, not yet standardised) to class probabilities
``(N, K, H, W)`` float32. PyTorch and ONNX Runtime runners both standardise with the
card's mean/std (the ONNX graph does it inside), so the pipeline never knows which engine
runs; test-time augmentation wraps any runner. Each runner says its ``precision``; a
reduced-precision runner also has a ``gate`` (:mod:`.gate`) that the pipeline settles on
the first raster's tiles before the run. Which engine and precision run when the caller
says ``auto`` is decided by :mod:`.choice`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import AerialsegError, WeightsError
from .choice import BACKENDS, DEFAULT_MIN_AGREEMENT, PRECISIONS, EngineChoice, choose_engine

if TYPE_CHECKING:
    import numpy as np

    from ..card import ModelCard
    from ..catalog import WeightsChoice
    from ..hardware import Hardware
    from .gate import GatedRunner, GateResult

__all__ = [
    "Runner",
    "RunnerSpec",
    "open_runner",
    "gate_result",
    "describe_precision",
    "BACKENDS",
    "PRECISIONS",
    "DEFAULT_MIN_AGREEMENT",
]


class Runner(Protocol):
    """Tiles in, probabilities out (see the module docstring).

    The attributes are read-only to callers: a runner may compute them (TTA reports its
    wrapped runner's) or fix them as plain attributes.
    """

    @property
    def card(self) -> ModelCard:
        """The network's model card."""
        ...

    @property
    def description(self) -> str:
        """The engine, device and precision, for the summary and the output's tags."""
        ...

    @property
    def precision(self) -> str:
        """The precision that runs: fp32, bf16, fp16 or int8."""
        ...

    @property
    def gate(self) -> GatedRunner | None:
        """The accuracy gate of a reduced-precision runner; None for one that needs none."""
        ...

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` probabilities."""
        ...


@dataclass(frozen=True)
class RunnerSpec:
    """How to open a network: the model and the engine settings, in one value.

    The command line builds it from its options, and ``predict``'s runner, ``doctor``'s
    engine report, ``evaluate`` and each cluster worker are opened from it, so they agree.
    ``model``: a weights name or file, or an exported ``.onnx`` file. ``backend``: auto,
    torch or onnx. ``device``: cpu, cuda, cuda:1 ... (None: CUDA when present). ``tta``:
    flip or d4 (None: none). ``precision``: auto, fp32, bf16, fp16 or int8.
    ``min_agreement``: the accuracy gate's threshold for reduced precision. ``calibration``:
    a raster whose tiles calibrate int8 (default: the first input's own tiles).
    """

    model: str
    backend: str = "auto"
    device: str | None = None
    tta: str | None = None
    precision: str = "auto"
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    calibration: str | None = None

    @property
    def _onnx_path_given(self) -> bool:
        """The model argument is an ``.onnx`` path itself (nothing to look up)."""
        return Path(self.model).suffix.lower() == ".onnx"

    @property
    def onnx_file(self) -> bool:
        """The model is an ``.onnx`` file (an aerialseg export or a Deepness file; a path or an installed name)."""
        return self.model_file.suffix.lower() == ".onnx"

    def pinned(self) -> tuple[RunnerSpec, WeightsChoice | None]:
        """The spec with a model name (``manet-potsdam``) replaced by the weights file it chooses, and the choice.

        A run pins the choice once, so every later step and every cluster worker uses that one
        file, and records it (:attr:`~aerialseg.conventions.Tag.MODEL_CHOICE`). A file path,
        an ``.onnx`` file or a weights file's own name choose nothing: ``(self, None)``; an
        installed ``.onnx`` file's name is replaced by its path, since the engine goes by the suffix.
        """
        if self._onnx_path_given:
            return self, None
        from ..weights import choose_weights

        choice = choose_weights(self.model)
        if choice is None:
            return self, None
        if choice.by_name:  # a weights file's own name; an installed .onnx file runs from its path
            return (replace(self, model=str(choice.entry.path)) if self.onnx_file else self), None
        return replace(self, model=str(choice.entry.path)), choice

    def resolve(self, use_torch: bool = True) -> EngineChoice:
        """The engine and precision that will run, with the reason (errors for impossible choices).

        The machine is first read without torch (importing it costs a second and ~200 MB that
        an ONNX Runtime run never needs); when the choice involves PyTorch or CUDA and
        ``use_torch`` allows, torch confirms the GPUs and the rules run again if it disagrees.
        """
        from ..hardware import detect_hardware

        exported = _onnx_precision(self.model_file) if self.onnx_file else "fp32"

        def choose(hardware: Hardware) -> EngineChoice:
            return choose_engine(
                self.backend, self.precision, self.device, hardware, onnx_file=self.onnx_file, onnx_precision=exported
            )

        probed = detect_hardware()
        choice = choose(probed)
        if use_torch and not self.onnx_file and (choice.backend == "torch" or probed.cuda):
            confirmed = detect_hardware(use_torch=True)
            if confirmed.cuda_devices != probed.cuda_devices:
                choice = choose(confirmed)
        return choice

    def open(self, choice: EngineChoice | None = None) -> Runner:
        """The runner ``choice`` (default: :meth:`resolve`) describes, gated when reduced, with TTA."""
        choice = choice or self.resolve()
        runner = self._gated(choice) if choice.gated and not self._as_exported(choice) else self._plain(choice)
        if self.tta:
            from .tta import TTARunner

            runner = TTARunner(runner, self.tta)
        return runner

    def _as_exported(self, choice: EngineChoice) -> bool:
        """An ``.onnx`` file run at its own (already parity-checked) precision."""
        return self.onnx_file and choice.precision != "int8"

    def _plain(self, choice: EngineChoice, precision: str | None = None) -> Runner:
        precision = precision or choice.precision
        if choice.backend == "torch":
            from .torch_runner import TorchRunner

            return TorchRunner.from_weights(self.model, choice.device, precision)
        from .onnx_runner import OnnxRunner

        return OnnxRunner(self._onnx_path(precision == "fp16"), self.device)

    @cached_property
    def model_file(self) -> Path:
        """The weights or ``.onnx`` file the model names (a name is looked up on the search path once)."""
        if self._onnx_path_given:
            return Path(self.model)
        from ..weights import resolve_weights

        return resolve_weights(self.model)

    @property
    def files(self) -> list[Path]:
        """The files a run reads besides its inputs (the model, a calibration raster): never to be written."""
        return [self.model_file, *([Path(self.calibration)] if self.calibration else [])]

    def card(self) -> ModelCard:
        """The model's card, read without loading the network (nor torch)."""
        from ..card import read_card

        return read_card(self.model_file)

    def _onnx_path(self, fp16: bool = False) -> Path:
        from .onnx_runner import cached_export

        return self.model_file if self.onnx_file else cached_export(self.model, fp16=fp16)

    def _gated(self, choice: EngineChoice) -> Runner:
        """The reduced-precision runner behind its accuracy gate, with its float32 reference."""
        from .gate import CALIBRATION_TILES, GatedRunner

        build: Callable[[Any], Runner]
        calibration = None
        if choice.backend == "torch":
            from .torch_runner import TorchRunner

            torch_reference = TorchRunner.from_weights(self.model, choice.device, "fp32")
            reference: Runner = torch_reference

            def build(sample: Any) -> Runner:  # noqa: ANN401 (the sample matters to int8 only)
                return torch_reference.converted(choice.precision)  # a copy: no second read of the weights file

        elif choice.precision == "int8":
            from .onnx_runner import OnnxRunner
            from .quantize import cached_int8

            if self.calibration is not None:  # read first: a bad raster fails before the export and any input
                from ..sampling import CalibrationRaster

                calibration = CalibrationRaster(self.calibration, self.card())
                if not calibration.tiles(CALIBRATION_TILES):
                    raise AerialsegError("no tile with data to calibrate int8 on", path=self.calibration)
            fp32_path = self._onnx_path()
            reference = OnnxRunner(fp32_path, self.device)

            def build(sample: Any) -> Runner:  # noqa: ANN401 (a TileSample: its tiles calibrate)
                tiles = [data for data, _ in sample.tiles(CALIBRATION_TILES)]
                return OnnxRunner(cached_int8(fp32_path, tiles), self.device)

        else:  # ONNX Runtime fp16 on CUDA
            reference = self._plain(choice, "fp32")

            def build(sample: Any) -> Runner:  # noqa: ANN401
                return self._plain(choice)

        return GatedRunner(
            reference,
            build,
            choice.precision,
            strict=choice.requested_precision != "auto",
            min_agreement=self.min_agreement,
            calibration=calibration,
        )


def gate_result(runner: Runner) -> GateResult | None:
    """The accuracy gate's outcome for a reduced-precision runner, once it has run."""
    gate = getattr(runner, "gate", None)  # runners written outside aerialseg may lack both attributes
    return gate.result if gate is not None else None


def describe_precision(runner: Runner) -> str:
    """``fp32``; ``bf16 (accuracy gate: <its figure>)`` once a gate has run (naming the precision it tested)."""
    precision = getattr(runner, "precision", "fp32")
    result = gate_result(runner)
    if result is None:
        return precision
    tested = "" if result.precision == precision else f"{result.precision} "
    return f"{precision} ({tested}accuracy gate: {result.describe()})"


def _onnx_precision(path: Path) -> str:
    """The precision an aerialseg ONNX file was exported at (fp32 when unreadable: the runner then says why)."""
    try:
        from ..card import exported_precision, onnx_metadata

        return exported_precision(onnx_metadata(path))
    except WeightsError:
        return "fp32"


def open_runner(
    model: str | os.PathLike[str],
    backend: str = "auto",
    device: str | None = None,
    tta: str | None = None,
    precision: str = "auto",
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    calibration: str | os.PathLike[str] | None = None,
) -> Runner:
    """A runner for a weights name/path or an exported ``.onnx`` file (see :class:`RunnerSpec`).

    ``backend="onnx"`` with a weights file exports it once into the cache folder
    (``$XDG_CACHE_HOME/aerialseg/onnx``, keyed by the tensors, the card, the export settings and
    the package versions, and verified before each use; see :mod:`.onnx_runner`) through the
    parity-gated export. A ``.onnx`` model always runs on ONNX Runtime.
    """
    spec = RunnerSpec(
        str(model), backend, device, tta, precision, min_agreement, None if calibration is None else str(calibration)
    )
    return spec.open()

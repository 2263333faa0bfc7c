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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..card import ModelCard
from ..errors import AerialsegError, WeightsError
from .choice import BACKENDS, PRECISIONS, EngineChoice, choose_engine
from .gate import DEFAULT_MIN_AGREEMENT

if TYPE_CHECKING:
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
    """Tiles in, probabilities out (see the module docstring)."""

    card: ModelCard
    description: str
    precision: str
    gate: GatedRunner | None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` probabilities."""
        ...


@dataclass(frozen=True)
class RunnerSpec:
    """How to open a network: the model and the engine settings (the CLI, eval and cluster workers share it).

    ``backend``: auto, torch or onnx. ``precision``: auto, fp32, bf16, fp16 or int8.
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
    def onnx_file(self) -> bool:
        """The model is an exported ``.onnx`` file."""
        return Path(self.model).suffix.lower() == ".onnx"

    def resolve(self, use_torch: bool = True) -> EngineChoice:
        """The engine and precision that will run, with the reason (errors for impossible choices).

        The machine is first read without torch (importing it costs a second and ~200 MB that
        an ONNX Runtime run never needs); when the choice involves PyTorch or CUDA and
        ``use_torch`` allows, torch confirms the GPUs and the rules run again if it disagrees.
        """
        from ..hardware import detect_hardware

        exported = _onnx_precision(Path(self.model)) if self.onnx_file else "fp32"

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

    def _card(self) -> ModelCard:
        """The model's card, read without loading the network."""
        if self.onnx_file:
            card = _onnx_metadata(Path(self.model)).get("aerialseg.card")
            if card is None:
                raise WeightsError(
                    "not an ONNX file with an aerialseg model card",
                    path=self.model,
                    hint="export it with 'aerialseg export'",
                )
            return ModelCard.from_json(card)
        from ..weights import read_card, resolve_weights

        return read_card(resolve_weights(self.model))

    def _onnx_path(self, fp16: bool = False) -> Path:
        from .onnx_runner import cached_export

        return Path(self.model) if self.onnx_file else cached_export(self.model, fp16=fp16)

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

                calibration = CalibrationRaster(self.calibration, self._card())
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


def _onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file (empty when it cannot be read: the runner then says why)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 (onnx raises several types)
        return {}
    return {prop.key: prop.value for prop in graph.metadata_props}


def _onnx_precision(path: Path) -> str:
    """The precision an aerialseg ONNX file was exported at (fp32 when it does not say)."""
    return _onnx_metadata(path).get("aerialseg.precision", "fp32")


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
    (``$XDG_CACHE_HOME/aerialseg/onnx``, keyed by the tensors' sha256) through the parity-gated
    export. A ``.onnx`` model always runs on ONNX Runtime.
    """
    spec = RunnerSpec(
        str(model), backend, device, tta, precision, min_agreement, None if calibration is None else str(calibration)
    )
    return spec.open()

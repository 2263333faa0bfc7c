"""PyTorch runner: fp32, a bf16 inference form on CPUs with native bf16, autocast on CUDA.

Every network runs with its BatchNorms folded into the convolutions (exact to float32
rounding, checked when folded; a tenth faster on the CPU). On the CPU it runs channels-last
(eager NCHW pays heavily in page faults) and the process keeps freed memory
(:mod:`aerialseg.allocator`), so successive tiles reuse the same pages instead of faulting
them in again. ``precision="bf16"`` on the CPU casts the folded weights to bf16, which is
faster than autocast (no per-call weight casts) and than ONNX Runtime fp32 on CPUs with
native bf16; channel attention keeps its energies in float32. On CUDA, ``fp16``/``bf16``
run under autocast with float32 weights.
"""

from __future__ import annotations

import os

import numpy as np

from ..allocator import keep_freed_memory
from ..card import ModelCard
from .choice import PrecisionUnavailableError

__all__ = ["TorchRunner", "pick_device"]


def pick_device(device: str | None) -> str:
    """``device`` as given, else ``cuda`` when available, else ``cpu``."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchRunner:
    """Standardise, forward, softmax, at ``precision`` (fp32, bf16, fp16; see the module docstring).

    The runner owns ``model``: it folds its BatchNorms (exact, a tenth faster) and moves and
    casts it. ``folded`` says how many a model handed over already had folded (a copy of a
    runner's, see :meth:`converted`), for the description.
    """

    gate = None  # plain runners need no accuracy gate

    def __init__(
        self,
        model,  # noqa: ANN001 (a torch module; torch is imported lazily)
        card: ModelCard,
        device: str | None = None,
        precision: str = "fp32",
        *,
        folded: int = 0,
    ) -> None:
        import torch

        from ..models.fold import fold_batchnorm
        from ..models.standardize import Standardize

        self.card = card
        self.device = torch.device(pick_device(device))
        self.precision = precision
        cpu = self.device.type == "cpu"
        if precision not in ("fp32", "bf16", "fp16") or (cpu and precision == "fp16"):
            raise PrecisionUnavailableError(f"PyTorch runs fp32, bf16 (CPU, CUDA) or fp16 (CUDA), not {precision}")
        if not cpu and precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise PrecisionUnavailableError(
                f"{torch.cuda.get_device_name(self.device)} has no bf16", hint="use --precision fp16"
            )
        model = model.eval()
        self.folded = folded + fold_batchnorm(model.to("cpu"), len(card.bands))
        model = model.to(self.device)
        self.input_dtype = torch.float32
        self.autocast = None
        if cpu:
            keep_freed_memory()
            if precision == "bf16":
                model = model.to(torch.bfloat16)
                self.input_dtype = torch.bfloat16
            model = model.to(memory_format=torch.channels_last)
        elif precision != "fp32":
            self.autocast = torch.float16 if precision == "fp16" else torch.bfloat16
        self.model = model
        self.standardize = Standardize(card.mean, card.std).to(self.device)  # float32 whatever the precision
        form = " autocast" if self.autocast is not None else " weights" if precision == "bf16" else ""
        self.description = (
            f"PyTorch {torch.__version__} on {self.device}, {precision}{form}, {self.folded} BatchNorms folded"
        )

    @classmethod
    def from_weights(
        cls, weights: str | os.PathLike[str], device: str | None = None, precision: str = "fp32"
    ) -> TorchRunner:
        """Load a weights file (name or path)."""
        from ..weights import load_model

        model, card = load_model(weights)
        return cls(model, card, device, precision)

    def converted(self, precision: str) -> TorchRunner:
        """The same network at another precision, made from a copy of this runner's (float32) weights."""
        import copy

        model = copy.deepcopy(self.model).float()
        return TorchRunner(model, self.card, str(self.device), precision, folded=self.folded)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` float32 probabilities."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        x = self.standardize(x).to(self.input_dtype)
        with torch.inference_mode():
            if self.autocast is not None:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    logits = self.model(x)
            elif self.device.type == "cpu":
                logits = self.model(x.contiguous(memory_format=torch.channels_last))
            else:
                logits = self.model(x)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

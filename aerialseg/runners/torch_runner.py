"""PyTorch runner: CUDA when present (mixed precision), else CPU with channels_last."""

from __future__ import annotations

import os

import numpy as np

from ..card import ModelCard

__all__ = ["TorchRunner", "pick_device"]


def pick_device(device: str | None) -> str:
    """``device`` as given, else ``cuda`` when available, else ``cpu``."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchRunner:
    """Standardise, forward, softmax. channels_last on the CPU avoids eager NCHW's page-fault cost."""

    def __init__(self, model, card: ModelCard, device: str | None = None):  # noqa: ANN001 (torch module)
        import torch

        self.card = card
        self.device = torch.device(pick_device(device))
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(card.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(card.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.description = f"PyTorch {torch.__version__} on {self.device}"

    @classmethod
    def from_weights(cls, weights: str | os.PathLike[str], device: str | None = None) -> TorchRunner:
        """Load a weights file (name or path)."""
        from ..weights import load_model

        model, card = load_model(weights)
        return cls(model, card, device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` float32 probabilities."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        x = (x - self.mean) / self.std
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = self.model(x)
            else:
                logits = self.model(x.contiguous(memory_format=torch.channels_last))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

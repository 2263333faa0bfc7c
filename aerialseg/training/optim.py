"""AdamW with a lower backbone learning rate, Lookahead, and the per-epoch schedules (§3.1).

GeoSeg selects the backbone by the regex ``backbone.*``, which misses ABCNet's ResNet
(``cp.resnet``); here the backbone is whatever the network reports as its encoder, so every
architecture's pretrained trunk gets the lower rate. Biases (and, as in the reference's
``no_bias_weight_decay``, every 1-D parameter: batch-norm scales, attention gammas) get no
weight decay. The schedule is a pure function of the epoch, so resuming needs no scheduler
state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

__all__ = ["parameter_groups", "Lookahead", "lr_factor", "set_epoch_lr"]


def parameter_groups(
    model: torch.nn.Module, encoder_prefix: str, lr: float, backbone_lr: float, weight_decay: float
) -> list[dict]:
    """Four groups: (backbone | rest) x (decayed | not), each with its ``base_lr``; empty groups dropped."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = name.startswith(encoder_prefix + ".")
        decayed = param.ndim > 1
        groups.setdefault((in_backbone, decayed), []).append(param)
    result = []
    for (in_backbone, decayed), params in sorted(groups.items()):
        rate = backbone_lr if in_backbone else lr
        result.append(
            {
                "params": params,
                "lr": rate,
                "base_lr": rate,
                "weight_decay": weight_decay if decayed else 0.0,
                "name": f"{'backbone' if in_backbone else 'head'}{'' if decayed else '-no-decay'}",
            }
        )
    return result


class Lookahead:
    """Lookahead (Zhang et al. 2019): every ``k`` steps the slow weights move ``alpha`` of the way to the fast ones.

    Wraps an optimizer; ``param_groups`` is the inner one's, so learning-rate changes apply
    to it. The slow weights and the step count are part of :meth:`state_dict`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5):
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError("Lookahead needs k >= 1 and 0 < alpha <= 1")
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.steps = 0
        self.slow = [p.detach().clone() for p in self._params()]

    @property
    def param_groups(self) -> list[dict]:
        """The inner optimizer's groups."""
        return self.optimizer.param_groups

    def _params(self) -> Iterable[torch.nn.Parameter]:
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As the inner optimizer's."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, inner_step: Callable[[], object] | None = None) -> None:
        """One inner step, then every k-th time the slow update and the reset of the fast weights.

        ``inner_step`` replaces the optimizer's own step (a GradScaler's, which may skip it).
        """
        if inner_step is None:
            self.optimizer.step()
        else:
            inner_step()
        self.steps += 1
        if self.steps % self.k == 0:
            for slow, fast in zip(self.slow, self._params(), strict=True):
                slow.add_(fast.detach() - slow, alpha=self.alpha)
                fast.copy_(slow)

    def state_dict(self) -> dict:
        """Inner state plus the slow weights and the step count."""
        return {"inner": self.optimizer.state_dict(), "slow": [s.clone() for s in self.slow], "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["inner"])
        if len(state["slow"]) != len(self.slow):
            raise ValueError("Lookahead state has another number of parameters")
        for mine, saved in zip(self.slow, state["slow"], strict=True):
            mine.copy_(saved)
        self.steps = int(state["steps"])


def lr_factor(epoch: int, schedule: str, epochs: int, restart_period: int = 15, period_mult: int = 2) -> float:
    """Learning-rate multiplier at the start of ``epoch`` (0-based), stepped once per epoch.

    ``cosine-restarts``: CosineAnnealingWarmRestarts(T_0=restart_period, T_mult=period_mult)
    to zero (restarts at 15 and 45 for the defaults); ``cosine``: CosineAnnealingLR(T_max=epochs);
    ``constant``: 1.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / max(epochs, 1)))
    if schedule == "cosine-restarts":
        period, start = restart_period, 0
        while epoch >= start + period:
            start += period
            period *= period_mult
        return 0.5 * (1 + math.cos(math.pi * (epoch - start) / period))
    raise ValueError(f"unknown schedule {schedule!r}; choose cosine-restarts, cosine or constant")


def set_epoch_lr(optimizer: torch.optim.Optimizer | Lookahead, factor: float) -> None:
    """Set every group's rate to its ``base_lr`` times ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor

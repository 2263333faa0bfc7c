"""The resume checkpoint of a training run: tensors in safetensors, everything else in JSON.

Never a pickle: model weights, optimizer moments, Lookahead's slow weights and the torch
random state are tensors (``checkpoint.safetensors``); the position (epoch, next batch,
optimizer step), the best score, the settings and the optimizer's hyper-parameters are
JSON (``checkpoint.json``), which also records the tensors' sha256 so a pair from two
different moments is refused. Both are written to temporary files and renamed, the JSON
last, so a crash while saving leaves the previous checkpoint usable. Loading treats both files
as untrusted: a missing, truncated, edited or mismatched one is one :class:`TrainingError` line
naming it, never a traceback, and never a half-restored run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_output
from ..card import printable
from ..errors import TrainingError
from ..jsondata import JsonProblem, parse_json
from ..models import state_mismatch
from ..weights import tensors_sha256

__all__ = ["TrainState", "save_checkpoint", "load_checkpoint", "CHECKPOINT_TENSORS", "CHECKPOINT_JSON"]

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"


@dataclass
class TrainState:
    """Where a run stands: next epoch/batch to run, optimizer steps taken, best monitored score."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int | None = None


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: Any,  # noqa: ANN401 (Lookahead or torch optimizer)
    state: TrainState,
    settings: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write the checkpoint pair into ``folder`` (see the module docstring)."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    inner = opt["inner"] if "inner" in opt else opt
    for index, values in inner["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{key}"] = value.detach().cpu().contiguous()
    for index, slow in enumerate(opt.get("slow", [])):
        tensors[f"slow.{index}"] = slow.cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {
        "state": state.__dict__,
        "settings": settings,
        "param_groups": inner["param_groups"],
        "lookahead_steps": opt.get("steps"),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "sha256": tensors_sha256(tensors),
    }
    with atomic_output(folder / CHECKPOINT_TENSORS, overwrite=True) as tmp:
        save_file(tensors, str(tmp))
    with atomic_output(folder / CHECKPOINT_JSON, overwrite=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: Any,  # noqa: ANN401
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Restore model, optimizer, scaler and random state in place; return the position and the saved settings."""
    meta_path = folder / CHECKPOINT_JSON
    if not meta_path.is_file():
        raise TrainingError("has no checkpoint to resume from", path=folder, hint="start without --resume")
    meta = _read_meta(meta_path)
    tensors = _read_tensors(folder / CHECKPOINT_TENSORS)
    if tensors_sha256(tensors) != meta["sha256"]:
        raise TrainingError("checkpoint tensors do not match its JSON (saved at different times)", path=folder)
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    mismatch = state_mismatch(model_state, model.state_dict())
    if mismatch:
        raise TrainingError(f"checkpoint does not fit this network ({'; '.join(mismatch)})", path=folder)
    model.load_state_dict(model_state, strict=True)
    try:
        _restore_rest(meta, tensors, optimizer, scaler)
        return _train_state(meta["state"]), meta["settings"]
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        reason = printable(str(exc).splitlines()[0][:200]) if str(exc) else "malformed entry"
        raise TrainingError(
            f"checkpoint cannot be restored ({type(exc).__name__}: {reason})", path=folder, hint=_HINT
        ) from exc


def _train_state(data: dict[str, Any]) -> TrainState:
    """The saved position; a TypeError unless its counters are whole numbers and its best score a number."""
    state = TrainState(**data)
    counters = [state.epoch, state.batch, state.step] + ([] if state.best_epoch is None else [state.best_epoch])
    if not all(type(v) is int and v >= 0 for v in counters) or type(state.best) not in (int, float, type(None)):
        raise TypeError("the saved position is not whole-number counters and a score")
    return state


_HINT = "restore the run folder from a backup, or start the run again with --overwrite"

# The JSON's entries and the types they must have (lookahead_steps and scaler may be null).
_META_TYPES: dict[str, tuple[type, ...]] = {
    "state": (dict,),
    "settings": (dict,),
    "param_groups": (list,),
    "lookahead_steps": (int, type(None)),
    "scaler": (dict, type(None)),
    "sha256": (str,),
}


def _read_meta(path: Path) -> dict[str, Any]:
    """The checkpoint's JSON, its entries of the types :func:`save_checkpoint` writes."""
    try:
        meta = parse_json(path.read_bytes())
    except OSError as exc:
        raise TrainingError(f"cannot read the checkpoint ({exc.strerror or exc})", path=path) from exc
    except JsonProblem as exc:
        raise TrainingError(f"checkpoint is not valid JSON ({exc}; damaged or edited)", path=path, hint=_HINT) from exc
    if not isinstance(meta, dict):
        raise TrainingError("checkpoint is not a JSON object (damaged or edited)", path=path, hint=_HINT)
    wrong = [key for key, types in _META_TYPES.items() if not isinstance(meta.get(key, ...), types)]
    if wrong:
        raise TrainingError(f"checkpoint lacks or mistypes {wrong} (damaged or edited)", path=path, hint=_HINT)
    return meta


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors; a missing or damaged file is a :class:`TrainingError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise TrainingError("checkpoint tensors are missing", path=path, hint=_HINT)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TrainingError(
            f"checkpoint tensors cannot be read ({printable(str(exc))})", path=path, hint=_HINT
        ) from exc


def _restore_rest(
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    optimizer: Any,  # noqa: ANN401
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Optimizer, scaler and random state from a checked checkpoint (malformed entries raise builtins)."""
    inner_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            inner_state.setdefault(int(index), {})[name] = value
    inner = {"state": inner_state, "param_groups": meta["param_groups"]}
    if meta["lookahead_steps"] is not None:
        slow = [tensors[f"slow.{i}"] for i in range(sum(k.startswith("slow.") for k in tensors))]
        optimizer.load_state_dict({"inner": inner, "slow": slow, "steps": meta["lookahead_steps"]})
    else:
        optimizer.load_state_dict(inner)
    if scaler is not None and meta["scaler"]:
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])

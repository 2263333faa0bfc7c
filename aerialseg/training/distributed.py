"""DistributedDataParallel set-up from torchrun's environment, and the few collectives the loop needs.

``torchrun --nproc_per_node N -m aerialseg train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``; without them training runs in one process.
NCCL on CUDA, gloo on the CPU (which is how this is tested on a machine without GPUs).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..errors import TrainingError

__all__ = ["World", "init_world", "sum_array", "sync_buffers", "check_replicas"]


@dataclass(frozen=True)
class World:
    """A process's place: rank, number of processes, and its device."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1


def init_world(device: str | None) -> World:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    chosen = torch.device(f"cuda:{local}" if cuda and size > 1 else (device or ("cuda" if cuda else "cpu")))
    if size > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(chosen)
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(rank, size, chosen)


def sum_array(world: World, values: np.ndarray) -> np.ndarray:
    """Element-wise sum of an integer or float array over every process."""
    if not world.distributed:
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values)).to(world.device if world.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def sync_buffers(world: World, model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics).

    DDP keeps parameters identical but each replica's running statistics follow its own
    batches after the last broadcast; validation and the saved weights use rank 0's.
    """
    if world.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, 0)


def check_replicas(world: World, model: torch.nn.Module) -> None:
    """Raise when the processes' weights differ (DDP should keep them bit-identical)."""
    if not world.distributed:
        return
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests: list[str | None] = [None] * world.size
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) != 1:
        raise TrainingError(f"the {world.size} processes' weights diverged; this is a bug, please report it")

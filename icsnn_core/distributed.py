"""Several processes through ``torch.distributed``: one per GPU (or CPU process) under ``torchrun``.

``torchrun --nproc_per_node=N icsnn reproduce ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init` joins them into one
process group (NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``; gloo on CPU). Without those variables, or
before :func:`init`, every helper answers as a single process does (rank 0 of 1) and does nothing, so
the single-process path is unchanged.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Iterable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError

T = TypeVar("T")

# ranks wait for each other at collectives while one of them still evaluates methods the others finished
# (hours on the full profile), so the default timeout (10-30 minutes) would kill a healthy run; a crashed
# rank does not leave the others hanging that long, since torchrun stops every rank when one fails
TIMEOUT = timedelta(hours=24)

_device: torch.device = torch.device("cpu")  # this rank's device, where NCCL's collectives need their tensors


def requested() -> bool:
    """Whether this process was started as one of several (torchrun's ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str | torch.device = "cpu") -> str:
    """Join torchrun's process group (once) and return the device this rank uses; ``device`` as is when alone.

    On CUDA each rank takes ``cuda:LOCAL_RANK``: one GPU per process, since NCCL cannot share a GPU between
    ranks of one group. Calling it again returns the same device and joins nothing."""
    global _device
    if not requested():
        return str(device)
    d = torch.device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if d.type == "cuda":
        if d.index is not None and d.index != local:
            raise ConfigError(f"device {device} asked for, but under torchrun each process uses cuda:LOCAL_RANK "
                              f"(this one cuda:{local}). Fix: pass --device cuda (or auto)")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"process with LOCAL_RANK {local} has no GPU of its own ({torch.cuda.device_count()} "
                              "visible). Fix: run torchrun with --nproc_per_node at most the number of GPUs")
        d = torch.device("cuda", local)
        torch.cuda.set_device(d)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if d.type == "cuda" else "gloo", timeout=TIMEOUT,
                                device_id=d if d.type == "cuda" else None)
        atexit.register(shutdown)  # every exit path, an error included, leaves the group cleanly
    _device = d
    return str(d)


def shutdown() -> None:
    """Leave the process group (``destroy_process_group``); nothing to do when there is none."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank in the group: 0 when alone."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the group: 1 when alone."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the one that writes shared files (checkpoints, figures' measurements)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here; nothing to do when alone."""
    if world_size() > 1:
        dist.barrier()


def shard(items: Iterable[T]) -> list[T]:
    """This rank's share of ``items``, round-robin: rank r of n takes items r, r + n, r + 2n, ..."""
    return list(items)[rank()::world_size()]


def assign(costs: Sequence[float], world: int) -> list[int]:
    """The rank that does each job: in order, each goes to the rank with the least cost so far (ties: the lowest
    rank). Ranks finish at about the same time, each keeps the jobs' order, and every rank computes the same
    answer from the same costs without talking to the others."""
    load = [0.0] * world
    owners = []
    for cost in costs:
        r = min(range(world), key=load.__getitem__)
        load[r] += cost
        owners.append(r)
    return owners


def batch_slice(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (sizes differ by at most one); the whole batch when alone."""
    if world_size() == 1:
        return batch
    return batch.tensor_split(world_size())[rank()]


def all_sum(*values: float) -> tuple[float, ...]:
    """Each value summed over the ranks (a float stays a float, an int an int); the values as they are when alone."""
    if world_size() == 1:
        return values
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_device)
    dist.all_reduce(t)
    return tuple(type(v)(s) for v, s in zip(values, t.tolist()))


@torch.no_grad()
def broadcast_(tensors: Sequence[torch.Tensor]) -> None:
    """Overwrite every tensor, in place, with rank 0's copy of it; nothing to do when alone."""
    if world_size() == 1:
        return
    for t in tensors:
        buf = t.detach().to(_device, copy=True)  # NCCL sends from this rank's GPU; t may be elsewhere
        dist.broadcast(buf, src=0)
        t.copy_(buf)


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (which averages gradients over the ranks); as is when alone.

    Batch norm normalises by each rank's own slice (no SyncBatchNorm); DDP hands rank 0's running statistics
    to every rank before each forward pass."""
    if world_size() == 1:
        return model
    ids = [_device.index] if _device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)

"""Distributed data parallel (DDP) helpers for ``torchrun``, generic for every trainer.

Launch with ``torchrun --nproc_per_node=N -m mrigan.app.cli train-gan ...`` (or any trainer):
torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` and
:func:`setup` joins the process group (``nccl`` on CUDA, ``gloo`` on CPU). Without those
variables everything here degrades to a single process: ``rank() == 0``, ``world_size() == 1``,
collectives are no-ops, so trainers contain no ``if distributed`` branches of their own.

Conventions: only the main process (rank 0) logs and writes files; every rank computes the same
sequence of global batches and takes its own shard (:func:`shard_indices`), so results do not
depend on how many processes share the work (see the trainers' ``batch_size`` docs).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    backend: str | None  # None when not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def default_backend(device: torch.device | str | None = None) -> str:
    """``nccl`` when the processes drive CUDA devices, ``gloo`` otherwise."""
    dev_type = torch.device(device).type if device is not None else (
        "cuda" if torch.cuda.is_available() else "cpu")
    return "nccl" if dev_type == "cuda" and dist.is_nccl_available() else "gloo"


def setup(backend: str | None = None, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group described by torchrun's environment (idempotent).

    Returns single-process info when ``WORLD_SIZE`` is unset or 1. On CUDA the local rank's GPU
    becomes the current device.
    """
    if dist.is_available() and dist.is_initialized():
        return info()
    world = env_world_size()
    if world <= 1:
        return DistInfo(0, 0, 1, None)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set: launch with torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend,
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    return info()


def teardown() -> None:
    """Leave the process group (safe to call when none was joined).

    Garbage is collected first: a DDP reducer left in a reference cycle keeps gloo's worker
    threads alive into interpreter finalisation, where a rare rank aborted with "terminate
    called without an active exception" after training had finished (seen once in CI)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


@contextlib.contextmanager
def session(backend: str | None = None) -> Iterator[DistInfo]:
    """``with distributed.session() as d:`` -- set up, and always tear down. When the block
    ends normally the ranks first meet at a barrier, so no rank closes its connections while
    another still finishes (PyTorch's advice before ``destroy_process_group``); a block left by
    an exception tears down at once (torchrun stops the other ranks)."""
    joined_here = not (dist.is_available() and dist.is_initialized())
    try:
        yield setup(backend)
        if joined_here:
            barrier()
    finally:
        if joined_here:
            teardown()


#: inside :func:`alone`: this process acts as a one-process job (no sharding, no collective)
_alone = False


def _joined() -> bool:
    return not _alone and dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Run the block as a one-process job on this rank: every helper here answers as without
    torchrun (rank 0 of 1, no sharding, collectives are no-ops). For work one rank does while
    the others wait at a :func:`barrier` after the block (e.g. rank 0 evaluating a model);
    they wait within the process group's timeout (30 minutes, :func:`setup`)."""
    global _alone
    saved, _alone = _alone, True
    try:
        yield
    finally:
        _alone = saved


def is_distributed() -> bool:
    return _joined() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if _joined() else 0


def world_size() -> int:
    return dist.get_world_size() if _joined() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def info() -> DistInfo:
    backend = dist.get_backend() if is_distributed() else None
    return DistInfo(rank(), local_rank(), world_size(), backend)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled; keep it small)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input is left alone)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache), the others after it is done."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def shard_indices(indices: Sequence[int], rank_: int | None = None,
                  world: int | None = None) -> list[int]:
    """This rank's share of one global batch (or epoch): every ``world``-th item.

    The list is padded by wrapping around (as ``DistributedSampler`` does) so every rank gets
    the same count and collectives stay in step.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    items = list(indices)
    if world <= 1 or not items:
        return items
    total = -(-len(items) // world) * world
    padded = items + [items[i % len(items)] for i in range(total - len(items))]
    return padded[rank_:total:world]


def wrap_ddp(module: nn.Module, device: torch.device, **kwargs) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else the module itself."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, **kwargs)


def rewrap_ddp(module: nn.Module, device: torch.device, **kwargs) -> nn.Module:
    """A new DDP wrapper of ``module`` after its trainable parameters changed (DDP registers
    them once, at construction). The caller drops its old wrapper first
    (``ddp = None; ddp = rewrap_ddp(model, device)``): the old wrapper's gradient hooks and
    buckets must be gone on every rank before the next backward, so it is garbage-collected
    here (a reference cycle would otherwise keep it, and its hooks, alive for a while) and the
    ranks meet at a barrier before wrapping again."""
    gc.collect()
    barrier()
    return wrap_ddp(module, device, **kwargs)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or ``torch.compile``) wrapper."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner

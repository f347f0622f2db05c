"""torch.distributed plumbing: which process this is, joining the group, waiting, gathering rows.

A run with several processes (``torchrun --nproc-per-node=N mixvae train ...``) splits every
global batch over the processes; process 0 evaluates and writes the run folder.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["barrier", "env_rank", "env_world_size", "gather_rows", "init_distributed", "leave_distributed",
           "mean_over_processes", "rank_world", "set_threads"]


def env_rank() -> int:
    """This process's rank as torchrun sets it (0 when not started by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    """The number of processes torchrun started (1 when not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the process group torchrun describes (NCCL on CUDA, else gloo); return this process's device."""

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        device = f"cuda:{local_rank}"
    else:
        dist.init_process_group("gloo")
    dist.barrier()  # every process has checked the run folder before process 0 writes to it
    return device


def barrier(world: int) -> None:
    """Wait for every process (nothing to wait for with one)."""
    if world > 1:
        torch.distributed.barrier()


class _GatherRows(torch.autograd.Function):
    """Every process's rows of t (B, ...) -> (world * B, ...), differentiably (all processes' B equal).

    Every process computes the same batch-level term on the gathered rows. In backward each one
    receives the sum over processes of the gradient with respect to its own rows, that is world
    times its one-process share; DistributedDataParallel then averages over the processes, so the
    term gets exactly its one-process gradient.
    """

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        ctx.rank, ctx.rows = dist.get_rank(), t.shape[0]
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, 0)  # (world * B, ...)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad)  # sum over processes
        return grad.narrow(0, ctx.rank * ctx.rows, ctx.rows)  # (B, ...)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every process's rows of t (B, ...) -> (world * B, ...), with gradients (see _GatherRows)."""
    out: torch.Tensor = _GatherRows.apply(t)
    return out


def mean_over_processes(values: dict[str, float], world: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """Per-process means of equal-sized batches -> means over the global batches (reduced on
    ``device``: NCCL reduces CUDA tensors only)."""
    if world == 1:
        return values
    keys = sorted(values)
    total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return dict(zip(keys, (total / world).tolist()))


def leave_distributed(wait: bool = True) -> None:
    """Leave the process group, when this process joined one. ``wait``: first wait for every
    process to get here, so that none tears down its connections while another still uses them
    (gloo then aborts the one that left first: "terminate called without an active exception");
    a process leaving on an error does not wait for the others, which may never come."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def set_threads(n: int | None) -> None:
    """Use n CPU threads for torch's operations (None: torch's default)."""
    if n:
        torch.set_num_threads(n)

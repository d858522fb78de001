"""Distributed helpers on PyTorch's own stack (torch.distributed, torchrun)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int, int]:
    """(rank, world size, local rank); (0, 1, 0) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank, in rank order, keeping the autograd graph: the
    backward pass sums each rank's share of the gradient (torch.distributed.nn)."""
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x.contiguous()), 0)


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the process group when launched by torchrun (RANK/WORLD_SIZE set)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if dist.is_initialized():
        return True
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True

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


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands every rank the SUM over ranks of the gradient for its
    own rows.  Every rank computes the same global loss from the gathered tensor, DDP then
    averages parameter gradients, so the result equals one process on the global batch.
    (torch.distributed.nn.functional.all_gather does the same but is deprecated in torch
    2.13; this uses only public collectives that gloo and NCCL both support.)"""

    @staticmethod
    def forward(ctx, x):
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks in rank order, keeping the
    autograd graph."""
    return _GatherWithGrad.apply(x)


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

"""Distributed helpers on PyTorch's own stack (torch.distributed, torchrun)."""
from __future__ import annotations

import contextlib
import os
import signal
import sys

import torch
import torch.distributed as dist

from ..data import shared


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


def finish() -> None:
    """The end of a job's work on every rank: wait until all ranks are here, then tear the
    process group down (gloo aborts a process that exits while a peer still talks to it: a
    rank that returned while rank 0 was still writing the model died of SIGABRT)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def resolve_world(cfg) -> int:
    """Processes to train with: ``devices``, where 0 means every visible GPU (1 on CPU)."""
    import torch
    n = cfg.devices
    cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    if n == 0:
        return max(1, torch.cuda.device_count()) if cuda else 1
    if cuda and n > torch.cuda.device_count():
        raise ValueError(f"devices={n} but PyTorch sees {torch.cuda.device_count()} GPU(s); "
                         "lower devices (0 = all visible GPUs).")
    return n


_scope = {"depth": 0, "dir": None}     # this process's node share directory (torchrun)


@contextlib.contextmanager
def node_scope():
    """Under torchrun, the span of one run on this node: local rank 0 keeps the node's share
    directory (node_shared) until the outermost scope ends, and removes it then, also on error
    or when torchrun stops the job (SIGTERM is turned into SystemExit meanwhile; only a
    SIGKILL can leave an aam-share-* directory behind).  Nested scopes are one scope; without a
    process group it does nothing."""
    outer = _scope["depth"] == 0
    old = None
    if outer and world_info()[2] == 0 and world_info()[1] > 1:
        try:
            old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        except ValueError:          # not the main thread: leave signals alone
            pass
    _scope["depth"] += 1
    try:
        yield
    finally:
        _scope["depth"] -= 1
        if outer:
            shared.remove(_scope["dir"])
            _scope["dir"] = None
            if old is not None:
                signal.signal(signal.SIGTERM, old)


def node_shared(fn):
    """``fn()`` computed once per node and shared by the node's processes.

    Under torchrun (inside node_scope), local rank 0 computes it and writes it to the node's
    share directory (data.shared); every local rank, 0 included, then loads that copy, its big
    arrays memory-mapped read-only, so the node holds them once instead of once per process,
    and the other ranks never build them.  An error on any node's local rank 0 is raised on
    every rank (nobody waits forever).  Assumes torchrun's numbering: a node's ranks are
    consecutive, rank - local_rank is its local rank 0.  Otherwise: ``fn()``."""
    rank, world, local = world_info()
    if world == 1 or _scope["depth"] == 0:
        return fn()
    msg = None
    if local == 0:
        try:
            obj = fn()
            if _scope["dir"] is None:
                _scope["dir"] = shared.make_dir(3 * shared.array_bytes(obj))
            msg = ("ok", shared.dump(obj, _scope["dir"]))
            del obj
        except Exception as e:                        # noqa: BLE001 - re-raised on every rank
            msg = ("error", e)
    msgs = [None] * world
    dist.all_gather_object(msgs, msg)
    for m in msgs:
        if m is not None and m[0] == "error":
            raise m[1]
    return shared.load(msgs[rank - local][1])


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_worker(rank, world, port, backend, fn, payload, out_path):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    args, kwargs = shared.load(payload)        # big arrays mapped, not copied
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        dist.barrier()              # every worker has mapped the data: its files can go now
        if rank == 0:
            shared.remove(os.path.dirname(payload))
        model, history, extra = fn(*args, **kwargs)
        if rank == 0:   # tensors and plain data only, loaded back with weights_only
            torch.save({"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "history": history, "extra": extra}, out_path)
        dist.barrier()     # nobody tears down while a peer is still talking (gloo aborts)
    finally:
        dist.destroy_process_group()


def run_on_node(fn, world: int, device: str, args, kwargs):
    """Run ``fn(*args, **kwargs)`` in ``world`` processes on this node (PyTorch's own
    torch.multiprocessing.spawn; NCCL on GPUs, gloo on CPU) and return rank 0's
    (model, history, extra).  The arguments' big arrays (table, distances, targets) are
    written once to node-local files that every worker maps (data.shared), not pickled into
    each.  Clusters with several nodes use torchrun with the CLI instead."""
    import tempfile

    import torch.multiprocessing as mp
    from ..models import AAM
    backend = "nccl" if (device != "cpu" and torch.cuda.is_available()) else "gloo"
    with tempfile.TemporaryDirectory() as tmp, shared.shared_copy((args, kwargs)) as payload:
        out = os.path.join(tmp, "rank0.pt")
        mp.spawn(_node_worker, args=(world, _free_port(), backend, fn, payload, out),
                 nprocs=world, join=True)
        res = torch.load(out, weights_only=True)
    model = AAM(args[1])
    model.load_state_dict(res["state"])
    return model, res["history"], res["extra"]

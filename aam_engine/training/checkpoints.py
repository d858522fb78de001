"""What a training run keeps and restores: the model and optimizer state (full, also under
FSDP), the atomic last checkpoint with every RNG for exact resume, and the best weights (per
cross-fitted head) that the run returns.  A Trainer holds one ``Checkpoints``; it is told
what to save, and hands back what it restored."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def atomic_torch_save(obj, path: Path):
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Checkpoints:
    """The state keeping of one model being trained: ``directory`` None keeps nothing on
    disk (the best weights are still kept in memory)."""

    def __init__(self, model, device, fsdp: bool, rank: int, directory=None):
        self.model, self.device, self.fsdp, self.rank = model, device, fsdp, rank
        self.directory = Path(directory) if directory else None

    def model_state(self) -> dict:
        """The full (unsharded) model state; a collective call under FSDP."""
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_model_state_dict)
            return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True))
        return self.model.state_dict()

    def load_model_state(self, state: dict):
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 set_model_state_dict)
            set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(state)

    def _optim_state(self, opt):
        if self.fsdp:   # keyed by parameter name, full: loads on any world size
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_optimizer_state_dict)
            return get_optimizer_state_dict(self.model, opt,
                                            options=StateDictOptions(full_state_dict=True))
        return opt.state_dict()

    def _load_optim_state(self, opt, state):
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 set_optimizer_state_dict)
            set_optimizer_state_dict(self.model, opt, state,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            opt.load_state_dict(state)

    def export_model(self):
        """A plain (unwrapped, unsharded) model with the trained weights; collective."""
        if not self.fsdp:
            return self.model
        from ..models import AAM
        state = {k: v.detach().cpu() for k, v in self.model_state().items()}
        plain = AAM(self.model.cfg)
        plain.load_state_dict(state)
        return plain.to(self.device)

    def save(self, opt, sched, scaler, state: dict, best_state):
        """The last checkpoint (every rank calls it: gathering FSDP shards is collective)."""
        if self.directory is None:
            return
        ck = {"model": self.model_state(), "optimizer": self._optim_state(opt),
              "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
              "state": state, "best_state": best_state, "torch_rng": torch.get_rng_state(),
              "cuda_rng": (torch.cuda.get_rng_state(self.device)
                           if self.device.type == "cuda" else torch.empty(0))}
        if self.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(ck, self.directory / "last.pt")

    def resume(self, opt, sched, scaler):
        """(run state, best weights) restored from the last checkpoint (model, optimizer,
        scheduler, scaler and RNGs too), or None without one."""
        path = self.directory / "last.pt" if self.directory else None
        if path is None or not path.exists():
            return None
        # weights_only: a checkpoint is tensors and plain containers, never arbitrary objects
        ck = torch.load(path, map_location=self.device, weights_only=True)
        self.load_model_state(ck["model"])
        self._load_optim_state(opt, ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["torch_rng"].cpu())
        if self.device.type == "cuda" and ck["cuda_rng"].numel():
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), self.device)
        return ck["state"], ck["best_state"]

    def keep_best(self, state: dict, best_state, monitors):
        """Count epochs without improvement per monitor (in ``state``) and keep the best
        weights: the whole model for one monitor; with one monitor per cross-fitted head, each
        head's own weights from its own best epoch.  Returns (best weights, how many monitors
        improved)."""
        snap, improved = None, 0
        for k, m in enumerate(monitors):
            if np.isfinite(m) and m < state["best"][k] or best_state is None:
                if np.isfinite(m):
                    state["best"][k] = float(m)
                state["bad_epochs"][k] = 0
                snap = snap or {n: v.detach().clone().cpu() for n, v in self.model_state().items()}
                if best_state is None or len(monitors) == 1:
                    best_state = dict(snap)
                else:
                    best_state.update({n: v for n, v in snap.items()
                                       if n.startswith(f"heads.{k}.")})
                improved += 1
            else:
                state["bad_epochs"][k] += 1
        return best_state, improved

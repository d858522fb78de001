"""What a training run keeps and restores: the model and optimizer state (full, also under
FSDP), the atomic last checkpoint with every RNG for exact resume, and the best weights (per
cross-fitted head) that the run returns."""
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
    """The Trainer's state keeping (a mixin: it reads the Trainer's model, opt, sched, scaler,
    state, best_state, device, fsdp, rank and ckpt_dir)."""

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

    def _optim_state(self):
        if self.fsdp:   # keyed by parameter name, full: loads on any world size
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_optimizer_state_dict)
            return get_optimizer_state_dict(self.model, self.opt,
                                            options=StateDictOptions(full_state_dict=True))
        return self.opt.state_dict()

    def _load_optim_state(self, state):
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 set_optimizer_state_dict)
            set_optimizer_state_dict(self.model, self.opt, state,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.opt.load_state_dict(state)

    def export_model(self):
        """A plain (unwrapped, unsharded) model with the trained weights; collective."""
        if not self.fsdp:
            return self.model
        from ..models import AAM
        state = {k: v.detach().cpu() for k, v in self.model_state().items()}
        plain = AAM(self.model.cfg)
        plain.load_state_dict(state)
        return plain.to(self.device)

    def _checkpoint(self):
        return {"model": self.model_state(), "optimizer": self._optim_state(),
                "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "state": self.state, "best_state": self.best_state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": (torch.cuda.get_rng_state(self.device)
                             if self.device.type == "cuda" else torch.empty(0))}

    def save_checkpoint(self):
        if self.ckpt_dir is None:
            return
        ck = self._checkpoint()          # every rank: gathering FSDP shards is collective
        if self.rank == 0:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(ck, self.ckpt_dir / "last.pt")

    def try_resume(self) -> bool:
        path = self.ckpt_dir / "last.pt" if self.ckpt_dir else None
        if path is None or not path.exists():
            return False
        # weights_only: a checkpoint is tensors and plain containers, never arbitrary objects
        ck = torch.load(path, map_location=self.device, weights_only=True)
        self.load_model_state(ck["model"])
        self._load_optim_state(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.state = ck["state"]
        self.best_state = ck["best_state"]
        torch.set_rng_state(ck["torch_rng"].cpu())
        if self.device.type == "cuda" and ck["cuda_rng"].numel():
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), self.device)
        return True

    def _keep_best(self, monitors) -> int:
        """Count epochs without improvement per monitor and keep the best weights: the whole
        model for one monitor; with one monitor per cross-fitted head, each head's own weights
        from its own best epoch.  Returns how many monitors improved."""
        state, snap = self.state, None
        improved = 0
        for k, m in enumerate(monitors):
            if np.isfinite(m) and m < state["best"][k] or self.best_state is None:
                if np.isfinite(m):
                    state["best"][k] = float(m)
                state["bad_epochs"][k] = 0
                snap = snap or {n: v.detach().clone().cpu() for n, v in self.model_state().items()}
                if self.best_state is None or len(monitors) == 1:
                    self.best_state = dict(snap)
                else:
                    self.best_state.update({n: v for n, v in snap.items()
                                            if n.startswith(f"heads.{k}.")})
                improved += 1
            else:
                state["bad_epochs"][k] += 1
        return improved

"""Learning-rate schedules.  All but 'plateau' step once per optimizer step."""
from __future__ import annotations

import math

import torch


def make_optimizer(params, cfg):
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.9,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def make_scheduler(opt, cfg, total_steps: int, steps_per_epoch: int):
    total_steps = max(1, total_steps)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5,
                                                          patience=max(1, cfg.patience // 3))
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate,
                                                   total_steps=total_steps + 1)
    if cfg.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=max(1, 10 * steps_per_epoch), eta_min=cfg.learning_rate * 0.01)
    warm = min(cfg.warmup_steps, total_steps // 10) if cfg.scheduler == "warmup_cosine" else 0

    def factor(step):
        if cfg.scheduler == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)

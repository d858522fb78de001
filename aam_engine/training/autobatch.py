"""Pick the largest batch that fits a memory budget, from trial steps.

Memory per sample is measured, not guessed: a trial forward pass at two batch sizes records
the bytes of every tensor autograd saves for the backward pass (saved_tensors_hooks), which is
what grows with the batch on any device.  Parameters, gradients and AdamW's two moments add
a fixed 4x the parameter bytes."""
from __future__ import annotations

import numpy as np
import torch

from ..data.batching import BatchBuilder
from . import losses as L


def activation_bytes(model, batch_tensors) -> int:
    """Bytes autograd saves during one training forward pass (plus the loss)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch_tensors)
        loss = out["embedding"].float().pow(2).mean()
        if "nuc_logits" in out:
            loss = loss + L.nucleotide_loss(out["nuc_logits"], out["nuc_targets"])
    del out, loss
    return total


def auto_batch_size(model, builder: BatchBuilder, rows, memory_budget_mb: float,
                    device="cpu", trial=(2, 4), max_batch: int = 4096) -> dict:
    """{'batch_size', 'per_sample_mb', 'fixed_mb'} for a training step within the budget."""
    rows = np.asarray(rows)
    if len(rows) < trial[1]:
        raise ValueError(f"auto batch size needs at least {trial[1]} samples; got {len(rows)}")
    rng = np.random.default_rng(0)
    pick = rows[rng.permutation(len(rows))]
    measured = []
    for b in trial:
        # the same samples grow with the batch, so the difference is what one sample costs
        t = builder.build(pick[:b], rng, mask=builder.mask_ratio > 0).to_torch(device)
        measured.append(activation_bytes(model, t))
    per_sample = max(1.0, (measured[1] - measured[0]) / (trial[1] - trial[0]))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    fixed = 4 * params + max(0.0, measured[0] - per_sample * trial[0])
    budget = memory_budget_mb * 2**20
    if budget <= fixed + 2 * per_sample:
        raise ValueError(f"A memory budget of {memory_budget_mb:.0f} MB does not fit even a "
                         f"batch of 2 (needs ~{(fixed + 2 * per_sample) / 2**20:.0f} MB); raise "
                         "it or use a smaller model / token_limit.")
    bs = int(min(max_batch, len(rows), (budget - fixed) // per_sample))
    return {"batch_size": max(2, bs), "per_sample_mb": per_sample / 2**20, "fixed_mb": fixed / 2**20}

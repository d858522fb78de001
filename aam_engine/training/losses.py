"""Objectives.  All computed in float32 whatever the autocast precision."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.distance_head import pair_distances


def pairwise_loss(emb, target, offset=0.0):
    """MSE between the model's distances (``offset`` + embedding distance) and UniFrac over
    the off-diagonal pairs (i < j) that have a distance: a NaN target (two samples of
    studies that no one tree or matrix covers) is no pair.

    No squashing, no clipping, any batch size >= 2 (a single sample has no pair: loss 0)."""
    if emb.shape[0] < 2:
        return emb.float().sum() * 0.0
    i, j, d = pair_distances(emb, offset)
    y = target.float()[i, j]
    known = torch.isfinite(y)
    if not bool(known.all()):
        if not bool(known.any()):
            return emb.float().sum() * 0.0
        d, y = d[known], y[known]
    return F.mse_loss(d, y)


def nucleotide_loss(logits, targets):
    """Cross-entropy on masked positions only (targets -100 elsewhere)."""
    targets = targets.reshape(-1)
    if not (targets != -100).any():
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets, ignore_index=-100)


def nucleotide_accuracy(logits, targets):
    sel = targets != -100
    if not sel.any():
        return float("nan")
    return (logits.argmax(-1)[sel] == targets[sel]).float().mean().item()


def regression_loss(pred, target, kind: str = "mse"):
    pred, target = pred.float(), target.float()
    return F.huber_loss(pred, target) if kind == "huber" else F.mse_loss(pred, target)


def classification_loss(logits, labels, weight=None, kind: str = "cross_entropy", gamma=2.0):
    logits = logits.float()
    if kind == "focal":
        logp = F.log_softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
        w = 1.0 if weight is None else weight[labels]
        return (-(1 - logp.exp()) ** gamma * logp * w).mean()
    return F.cross_entropy(logits, labels, weight=weight)

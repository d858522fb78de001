"""The distance head: everything that turns sample vectors into the model's UniFrac estimate.

It owns the learned map into the embedding space with its scale and offset, the sketch of the
sample's ASV set and the fitted mix of the two, and the one formula for a distance between two
embeddings (:func:`pair_distances`) that the loss, the metrics, ``embed`` and the benchmarks use.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layers import DistanceOffset, LogScale, identity_vectors, set_sketch


def pair_distances(emb, offset=0.0):
    """(i, j, d): the pairs i < j of ``emb``'s rows and the model's UniFrac estimate between
    them, ``offset`` + the Euclidean distance of their embeddings.  The one formula: on torch
    tensors it is differentiable (in float32, the square root clamped so that equal rows keep a
    finite gradient), on anything else it is computed with numpy in float64."""
    n = emb.shape[0]
    if isinstance(emb, torch.Tensor):
        emb = emb.float()
        i, j = torch.triu_indices(n, n, 1, device=emb.device)
        d2 = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
        return i, j, offset + torch.sqrt(d2.clamp_min(1e-12))[i, j]
    emb = np.asarray(emb, np.float64)
    i, j = np.triu_indices(n, 1)
    return i, j, offset + np.sqrt(((emb[i] - emb[j]) ** 2).sum(-1))


def distance_matrix(emb, offset=0.0) -> np.ndarray:
    """The square matrix of :func:`pair_distances`: 0 on the diagonal (still a metric)."""
    i, j, d = pair_distances(np.asarray(emb, np.float64), offset)
    out = np.zeros((len(emb), len(emb)))
    out[i, j] = out[j, i] = d
    return out


def offset_weight(cfg, learned: bool = False) -> str:
    """The name (in a model's weights) of the offset that the model's distances carry: the
    fitted mix's with the ASV-set sketch, the learned part's without it (or when
    ``learned``: the offset of the learned part alone)."""
    mix = cfg.set_sketch and not learned
    return "distance." + ("mix_offset" if mix else "embed_offset") + ".offset"


def mixed_distances(d_learned, d_sketch, offset: float, c: float, b: float) -> np.ndarray:
    """The distances of the mixed embedding [c * learned, b * sketch] from its parts':
    offset + sqrt(c^2 d_learned^2 + b^2 d_sketch^2)."""
    dl, ds = np.asarray(d_learned, float), np.asarray(d_sketch, float)
    return offset + np.sqrt(c ** 2 * dl ** 2 + b ** 2 * ds ** 2)


def fit_distance_mix(d_learned, d_sketch, target) -> tuple[float, float, float]:
    """(offset, c, b) >= 0 minimising the mean squared error of the distances of the mixed
    embedding [c * learned, b * sketch], offset + sqrt(c^2 d_learned^2 + b^2 d_sketch^2),
    against ``target`` (pairs): Nelder-Mead on log c, log b from three starts (the learned
    part alone, the sketch alone, both), the offset in closed form (the mean residual, >= 0)."""
    from scipy.optimize import minimize
    dl, ds = np.asarray(d_learned, float), np.asarray(d_sketch, float)
    y = np.asarray(target, float)

    def parts(q):
        base = mixed_distances(dl, ds, 0.0, np.exp(q[0]), np.exp(q[1]))
        return max(0.0, float((y - base).mean())), base

    def loss(q):
        o, base = parts(q)
        return float(((o + base - y) ** 2).mean())
    # starts: each part scaled to the targets' mean on its own, then both at half weight
    sl = np.log(y.mean() / max(dl.mean(), 1e-12))
    ss = np.log(y.mean() / max(ds.mean(), 1e-12))
    starts = ([sl, ss - 4], [sl - 4, ss], [sl - 0.35, ss - 0.35])
    best = min((minimize(loss, q0, method="Nelder-Mead") for q0 in starts), key=lambda r: r.fun)
    return parts(best.x)[0], float(np.exp(best.x[0])), float(np.exp(best.x[1]))


class DistanceHead(nn.Module):
    """Sample vector [B, D] -> (embedding, offset): the model's UniFrac estimate between two
    different samples is offset + the Euclidean distance of their embeddings.

    The learned part: a linear map (orthogonal at first: the embedding starts with the sample
    vectors' own distances) times one scale, plus an offset (UniFrac between two different
    samples is never near 0: the additive constant of classical scaling); both set from the data
    before training (``calibrate``) and then learned.  With ``set_sketch`` K > 0 the embedding
    is [c * learned, b * sketch of the sample's ASV set] with an offset of its own: the sketch
    has no trained weight, so it holds for unseen subjects; c, b and that offset are fitted
    after training on the training pairs (``set_mix``), while the encoder learns from the
    learned part's own fit.  The sketch is computed only when ``sketch=True`` is asked for."""

    def __init__(self, dim: int, out_dim: int, set_sketch: int = 0):
        super().__init__()
        self.embed = nn.Linear(dim, out_dim, bias=False)    # distances ignore a shift
        nn.init.orthogonal_(self.embed.weight)
        self.embed_scale, self.embed_offset = LogScale(), DistanceOffset()
        self.K = set_sketch
        if set_sketch:
            self.sketch_scale, self.mix_scale = LogScale(), LogScale()
            self.mix_offset = DistanceOffset()
        else:
            self.sketch_scale = self.mix_scale = self.mix_offset = None

    def learned(self, sample_vec):
        """The learned part of the embedding [B, out_dim] (its offset: ``learned_offset``)."""
        return self.embed_scale(self.embed(sample_vec))

    def learned_offset(self):
        return self.embed_offset()

    def offset(self):
        """The offset of the distances of the whole embedding (what ``embed`` gives)."""
        return self.embed_offset() if self.mix_offset is None else self.mix_offset()

    def sketch(self, slot_index, mask, asv_hash, slot_gate=None):
        """The unscaled sketch of each sample's ASV set [B, K] (a unit vector)."""
        if asv_hash is None:
            raise ValueError("set_sketch needs each batch's asv_hash (BatchBuilder gives it)")
        return set_sketch(identity_vectors(asv_hash, self.K), slot_index, mask, slot_gate)

    def forward(self, sample_vec, slot_index=None, mask=None, asv_hash=None, slot_gate=None,
                sketch: bool = False):
        """(embedding, its offset, the learned part).  Without ``sketch`` (or without
        set_sketch) the embedding is the learned part; with it, the mixed embedding, in float32
        (under bf16 autocast the sketch's small differences would round away)."""
        e = self.learned(sample_vec)
        if not (sketch and self.K):
            return e, self.learned_offset(), e
        s = self.sketch(slot_index, mask, asv_hash, slot_gate)
        mixed = torch.cat([self.mix_scale(e.detach().float()), self.sketch_scale(s)], -1)
        return mixed, self.offset(), e

    @torch.no_grad()
    def calibrate(self, offset: float, factor: float):
        """Before training: the learned part's offset, and its scale multiplied by ``factor``."""
        self.embed_offset.offset.fill_(offset)
        self.embed_scale.log_scale += float(np.log(factor))

    @torch.no_grad()
    def set_mix(self, offset: float, learned_scale: float, sketch_scale: float):
        """After training: the fitted mix (see fit_distance_mix)."""
        self.mix_offset.offset.fill_(offset)
        self.mix_scale.log_scale.fill_(float(np.log(learned_scale)))
        self.sketch_scale.log_scale.fill_(float(np.log(sketch_scale)))

"""Building blocks: a pre-norm transformer block on scaled_dot_product_attention, and
attention pooling.  Masks are boolean, True = a real position."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # a key bias cancels in the softmax
        self.out = nn.Linear(dim, dim)

    def forward(self, x, mask, need_weights: bool = False):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if need_weights:   # interpretation only: the explicit softmax, weights kept
            s = (q @ k.transpose(-1, -2)) / (D // self.heads) ** 0.5
            if mask is not None:
                s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
            w = torch.softmax(s.float(), -1).to(v.dtype)
            return self.out((w @ v).transpose(1, 2).reshape(B, L, D)), w
        # [B, 1, 1, L]: every query may look at every real key.  Callers guarantee at least one
        # real key per row (a START / sample token), so softmax never sees an all -inf row.
        # no dropout on the attention probabilities: on [N, heads, L, L] it dominated CPU step
        # time (a third of it) and rules out the fused kernels; dropout stays on the residuals
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ff = nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask, need_weights: bool = False):
        if need_weights:
            a, w = self.attn(self.ln1(x), mask, need_weights=True)
            x = x + self.drop(a)
            return x + self.drop(self.ff(self.ln2(x))), w
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.ff(self.ln2(x)))


class AttentionPool(nn.Module):
    """Masked softmax-weighted mean of positions -> one vector; also returns the weights.
    With ``queries`` > 1, that many independent pools, concatenated: [B, queries * D]
    (weights [B, queries, L])."""

    def __init__(self, dim: int, queries: int = 1):
        super().__init__()
        self.queries = queries
        self.score = nn.Linear(dim, queries, bias=False)   # a bias would cancel in the softmax

    def forward(self, x, mask):
        s = self.score(x).float().masked_fill(~mask[..., None], float("-inf"))
        w = torch.softmax(s, dim=1)                          # [B, L, queries]
        pooled = torch.einsum("blq,bld->bqd", w.to(x.dtype), x)
        if self.queries == 1:
            return pooled[:, 0], w[..., 0]
        return pooled.flatten(1), w.transpose(1, 2)


class LogScale(nn.Module):
    """Multiply by exp(a learnable scalar)."""

    def __init__(self):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1))   # 1-D: FSDP shards no scalars

    def forward(self, x):
        return x * self.log_scale.exp().to(x.dtype)


class DistanceOffset(nn.Module):
    """A learnable distance >= 0 added to every distance between two different samples."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(1))      # 1-D: FSDP shards no scalars

    def forward(self):
        return self.offset.abs().float()


def kmer_ids(tokens, k: int, first_base: int, last_base: int):
    """tokens [N, L] -> (each position's k-mer as a number in [0, 4^k) [N, L-k+1], whether that
    k-mer holds only A/C/G/T [N, L-k+1]; the number of an invalid k-mer is meaningless)."""
    base = tokens - first_base
    ok = (tokens >= first_base) & (tokens <= last_base)
    P = tokens.shape[1] - k + 1
    ids = torch.zeros_like(tokens[:, :P])
    valid = torch.ones_like(ok[:, :P])
    for i in range(k):
        ids = ids * 4 + base[:, i:i + P].clamp(0, 3)
        valid &= ok[:, i:i + P]
    return ids, valid


def kmer_spectrum(tokens, k: int, first_base: int, last_base: int, slot_index, weights):
    """A sample's k-mer spectrum: the ``weights``-weighted (relative abundance) mean of its
    ASVs' k-mer frequencies [B, 4^k].  tokens [U, L] of the batch's unique ASVs, slot_index
    [B, S] -> which unique ASV sits in each slot, weights [B, S] (0 in padded slots).  Built by
    one scatter-add, never as a dense [ASVs, 4^k] matrix; differentiable in ``weights``."""
    ids, valid = kmer_ids(tokens, k, first_base, last_base)
    freq = valid.float() / valid.sum(1, keepdim=True).clamp_min(1)
    B, S = slot_index.shape
    src = (freq[slot_index] * weights.float()[..., None]).reshape(B, -1)
    idx = ids.masked_fill(~valid, 0)[slot_index].reshape(B, -1)
    return torch.zeros(B, 4 ** k, dtype=src.dtype, device=src.device).scatter_add(1, idx, src)


class KmerProfile(nn.Module):
    """An ASV's k-mer content as a vector: the sum of learned k-mer vectors over the sequence,
    divided by sqrt(number of k-mers) (so O(1) per dimension at init).  k-mers holding anything
    but A/C/G/T (N, MASK, START, PAD) are skipped.  Two ASVs differing by a few bases share most
    k-mers, unrelated ones almost none: sibling ASVs are told apart from the first step, and an
    unseen ASV still gets a vector from what it shares with known ones."""

    def __init__(self, k: int, dim: int, first_base: int, last_base: int):
        super().__init__()
        self.k, self.first, self.last = k, first_base, last_base
        self.none = 4 ** k
        self.bag = nn.EmbeddingBag(4 ** k + 1, dim, mode="sum", padding_idx=4 ** k)

    def forward(self, tokens):
        ids, valid = kmer_ids(tokens, self.k, self.first, self.last)
        n = valid.sum(1, keepdim=True).clamp_min(1)
        return self.bag(ids.masked_fill(~valid, self.none)) / n.sqrt()


_M32 = 0xFFFFFFFF


def _mul32(x, c: int):
    """(x * c) mod 2^32 for int64 tensors x in [0, 2^32): in 16-bit halves of c, so that no
    product leaves int64 (exact on every device)."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _mix32(x):
    """A 32-bit integer mixer (xor-shift-multiply, "lowbias32"): every output bit depends on
    every input bit."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def identity_vectors(asv_hash, dim: int):
    """asv_hash [U] (int64, 32-bit hashes of ASV sequences) -> [U, dim] fixed pseudo-random
    +-1/sqrt(dim) vectors, one per ASV: nearly orthogonal for different ASVs (a random
    projection of the one-hot ASV identity, Johnson-Lindenstrauss), the same for the same
    sequence in any table, on any device, with no stored weights."""
    j = torch.arange(dim, device=asv_hash.device, dtype=torch.int64)
    x = _mix32((asv_hash.to(torch.int64)[:, None] & _M32) ^ _mix32((j + 0x9E3779B9) & _M32))
    return ((x & 1) * 2 - 1).float() / dim ** 0.5


def set_sketch(ident, slot_index, mask, slot_gate=None):
    """A sample's ASV set as a unit vector [B, K]: the sum of its ASVs' identity vectors
    ``ident`` [U, K] (see identity_vectors), normalised.  The distance between two sketches
    is a function of how many ASVs the samples share (sqrt(2 (1 - Ochiai)), blurred by the
    projection), with no trained weights: it holds for unseen subjects as well as for the
    training ones."""
    w = mask.float() if slot_gate is None else mask.float() * slot_gate.float()
    # [B, U] weights of the unique ASVs, then one product: no [B, S, K] tensor is built
    per_asv = torch.zeros(w.shape[0], ident.shape[0], device=w.device).scatter_add(
        1, slot_index, w)
    s = per_asv @ ident.float()
    return s / s.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def run_blocks(blocks, x, mask, checkpoint: bool = False):
    """x through each block; with ``checkpoint`` (training only) each block's activations are
    recomputed in the backward pass instead of kept: memory for compute."""
    use = checkpoint and torch.is_grad_enabled()
    for blk in blocks:
        if use:
            from torch.utils.checkpoint import checkpoint as ckpt
            x = ckpt(blk, x, mask, use_reentrant=False)
        else:
            x = blk(x, mask)
    return x


def transformer_stack(cfg) -> nn.ModuleList:
    return nn.ModuleList(TransformerBlock(cfg.embedding_dim, cfg.attention_heads,
                                          cfg.intermediate_ratio, cfg.dropout)
                         for _ in range(cfg.attention_layers))

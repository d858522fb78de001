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
    """Masked softmax-weighted mean of positions -> one vector; also returns the weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)   # a bias would cancel in the softmax

    def forward(self, x, mask):
        s = self.score(x).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        w = torch.softmax(s, dim=-1)
        return torch.einsum("bl,bld->bd", w.to(x.dtype), x), w


def transformer_stack(cfg) -> nn.ModuleList:
    return nn.ModuleList(TransformerBlock(cfg.embedding_dim, cfg.attention_heads,
                                          cfg.intermediate_ratio, cfg.dropout)
                         for _ in range(cfg.attention_layers))

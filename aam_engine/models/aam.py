"""The AAM model, top to bottom.

    tokens of the batch's UNIQUE ASVs [U, L]
      -> ASVEncoder: nucleotide transformer, attention pooling -> one vector per ASV [U, D]
      -> scatter to [B, S, D] by slot_index (or read from a per-feature cache when frozen)
      -> SampleEncoder: + abundance, + slot rank, [SAMPLE] token, transformer across ASVs
      -> sample vector [B, D]
           -> embedding (UniFrac space: Euclidean distances ~ UniFrac)
           -> target head (regression / classification, categorical covariates fused)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, head_count
from ..data.tokenizer import NUC_CLASSES, PAD, VOCAB_SIZE, A, T
from .distance_head import DistanceHead
from .layers import AttentionPool, KmerProfile, kmer_spectrum, run_blocks, transformer_stack


def relative_abundance(counts):
    """counts [B, S] (0 in padded slots) -> each sample's fractions [B, S]."""
    counts = counts.float()
    return counts / counts.sum(1, keepdim=True).clamp_min(1e-6)


class ASVEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.embedding_dim
        self.tok = nn.Embedding(VOCAB_SIZE, D, padding_idx=PAD)
        self.pos = nn.Embedding(cfg.max_bp + 1, D)
        self.blocks = transformer_stack(cfg)
        self.norm = nn.LayerNorm(D)
        self.pool = AttentionPool(D)
        self.nuc_head = nn.Linear(D, NUC_CLASSES)
        self.kmers = KmerProfile(cfg.kmer_size, D, A, T) if cfg.kmer_size else None
        self.checkpoint_blocks = False     # set by set_activation_checkpointing

    def forward(self, tokens):
        """tokens [N, L] -> (ASV vectors [N, D], per-nucleotide states [N, L, D])."""
        mask = tokens != PAD                       # START is never PAD: no empty row
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        # equal-length ASVs (the usual case: one amplicon) need no mask, which lets SDPA take
        # its fused kernels
        attn_mask = None if bool(mask.all()) else mask
        x = run_blocks(self.blocks, x, attn_mask, self.checkpoint_blocks)
        x = self.norm(x)
        vec, _ = self.pool(x, mask)
        if self.kmers is not None:
            vec = vec + self.kmers(tokens).to(vec.dtype)
        return vec, x


class SampleEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.embedding_dim
        self.abundance = nn.Linear(2, D)           # log1p(count), relative abundance
        self.rank = nn.Embedding(cfg.token_limit, D)
        self.sample_token = nn.Parameter(torch.zeros(1, 1, D))
        self.blocks = transformer_stack(cfg)
        self.norm = nn.LayerNorm(D)
        self.pool = AttentionPool(D)
        self.checkpoint_blocks = False

    def forward(self, asv_vecs, counts, mask, attention: list | None = None, slot_gate=None):
        """asv_vecs [B, S, D], counts [B, S], mask [B, S] ->
        (ASV states [B, S, D], sample vector [B, D], pooling weights over ASVs [B, S]).
        ``attention``: a list that receives each layer's weights [B, heads, S+1, S+1].
        ``slot_gate`` [B, S] in [0, 1] scales each ASV's input (0 = the ASV removed), for
        integrated gradients."""
        B, S, _ = asv_vecs.shape
        counts, rel = counts.float(), relative_abundance(counts)
        # scaled to O(1): raw log-counts (up to ~10) would swamp the sequence vectors
        feats = torch.stack([0.1 * torch.log1p(counts), rel], -1).to(asv_vecs.dtype)
        x = asv_vecs + self.abundance(feats)
        if slot_gate is not None:
            x = x * slot_gate[..., None].to(x.dtype)
        x = x + self.rank(torch.arange(S, device=asv_vecs.device))
        x = torch.cat([self.sample_token.expand(B, 1, -1).to(x.dtype), x], 1)
        m = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask], 1)
        if attention is None:
            x = run_blocks(self.blocks, x, m, self.checkpoint_blocks)
        else:                   # interpretation: the explicit softmax, weights kept
            for blk in self.blocks:
                x, a = blk(x, m, need_weights=True)
                attention.append(a)
        x = self.norm(x)
        vec, w = self.pool(x, m)
        return x[:, 1:], vec, w[:, 1:]


def head_blocks(cfg: ModelConfig) -> list[int]:
    """The widths of the blocks a prediction head reads, in order (see AAM.head_features):
    sample vector, composition, k-mer spectrum (when head_kmer_size), attention pools."""
    D = cfg.embedding_dim
    return ([D, D] + ([4 ** cfg.head_kmer_size] if cfg.head_kmer_size else [])
            + ([D * cfg.head_pools] if cfg.head_pools else []))


def head_width(cfg: ModelConfig) -> int:
    """How many numbers a prediction head reads."""
    return sum(head_blocks(cfg))


class PredictionHead(nn.Module):
    """One target head: its attention pools over the ASV states, the standardisation of what
    it reads (statistics of the training samples, set by Trainer.calibrate: what the head sees
    is how samples DIFFER, not the component all samples share), categorical covariates and
    an MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.embedding_dim
        H = head_width(cfg)
        self.task, self.activation = cfg.task, cfg.output_activation
        self.pool = AttentionPool(D, cfg.head_pools) if cfg.head_pools else None
        self.register_buffer("shift", torch.zeros(H))
        self.register_buffer("scale", torch.ones(H))
        self.covariates = nn.ModuleList(nn.Embedding(n + 1, H) for n in cfg.covariate_sizes)
        k = len(cfg.covariate_sizes)
        self.fuse = (nn.Linear(H * (1 + k), H) if cfg.covariate_fusion == "concat" and k
                     else nn.Identity())
        self.fusion = cfg.covariate_fusion
        self.mlp = nn.Sequential(nn.Linear(H, D), nn.GELU(), nn.Linear(D, cfg.n_outputs))
        self.out_scale = nn.Parameter(torch.ones(1))

    def forward(self, features, covariates=None):
        x = (features - self.shift) / self.scale
        if len(self.covariates):
            if covariates is None:
                covariates = torch.zeros(x.shape[0], len(self.covariates), dtype=torch.long,
                                         device=x.device)
            embs = [emb(covariates[:, i]) for i, emb in enumerate(self.covariates)]
            x = x + sum(embs) if self.fusion == "add" else self.fuse(torch.cat([x] + embs, -1))
        raw = self.mlp(x) * self.out_scale
        if self.task == "classification":
            return raw
        raw = raw.squeeze(-1)
        if self.activation == "softplus":
            return F.softplus(raw)
        if self.activation == "exp":
            return torch.exp(raw.clamp(max=30))
        if self.activation == "bounded":
            return torch.sigmoid(raw)
        return raw


class AAM(nn.Module):
    """Encoder (task='encoder') or predictor (task='regression' / 'classification')."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.max_bp < 1:
            raise ValueError("max_bp 0 (from the data) must be resolved before building a model "
                             "(aam_engine.api does it)")
        self.cfg = cfg
        D = cfg.embedding_dim
        self.asv = ASVEncoder(cfg)
        self.sample = SampleEncoder(cfg)
        # sample vector -> the UniFrac embedding, its offset and the ASV-set sketch
        self.distance = DistanceHead(D, cfg.embedding_out or D, cfg.set_sketch)
        if cfg.task != "encoder":
            # `ensemble` heads, each with its own pools, standardisation and MLP (heads trained
            # by K-fold cross-fitting share nothing trainable); predictions average them
            self.heads = nn.ModuleList(PredictionHead(cfg) for _ in range(head_count(cfg)))

    # -------------------------------------------------------------- pieces
    def set_activation_checkpointing(self, on: bool):
        """Recompute each transformer block in the backward pass (less memory, ~1/3 more
        compute); a runtime choice, not part of the saved model."""
        self.asv.checkpoint_blocks = self.sample.checkpoint_blocks = bool(on)

    def base_modules(self):
        """What `freeze_base` freezes: everything but the target head."""
        return [self.asv, self.sample, self.distance]

    @torch.no_grad()
    def asv_vectors(self, tokens, chunk: int = 1024):
        """ASV vectors for many ASVs (eval mode, chunked): the per-feature cache.  ``tokens``
        may be compact (uint8, as tables keep them); each chunk is widened on its own."""
        was = self.asv.training
        self.asv.eval()
        out = torch.cat([self.asv(tokens[i:i + chunk].long())[0]
                         for i in range(0, len(tokens), chunk)])
        self.asv.train(was)
        return out

    def distance_offset(self):
        """The offset added to the embedding's distances (see DistanceHead)."""
        return self.distance.offset()

    def head_features(self, asv_states, sample_vec, slot_vecs, counts, mask, tokens=None,
                      slot_index=None, slot_gate=None):
        """What each head reads, before standardisation: [B, heads, head_width]: the sample
        vector, the composition (ASV vectors weighted by relative abundance: how much of each
        kind of ASV, which an attention pool -- a weighted MEAN -- cannot say), the sample's
        k-mer spectrum (head_kmer_size: the detail a D-dimensional vector per ASV cannot keep;
        what a random forest gets from telling individual ASVs apart) and the head's own
        attention pools over the ASV states.  ``slot_gate`` scales each ASV's share, as it
        scales its input to the sample encoder (integrated gradients)."""
        rel = relative_abundance(counts)
        if slot_gate is not None:
            rel = rel * slot_gate.to(rel.dtype)
        shared = [sample_vec, torch.einsum("bs,bsd->bd", rel.to(slot_vecs.dtype), slot_vecs)]
        if self.cfg.head_kmer_size:
            shared.append(kmer_spectrum(tokens, self.cfg.head_kmer_size, A, T, slot_index,
                                        rel).to(slot_vecs.dtype))
        return torch.stack([torch.cat(shared + ([h.pool(asv_states, mask)[0]] if h.pool else []),
                                      -1) for h in self.heads], 1)

    def combine(self, per_head):
        """One prediction from the heads' [B, heads, ...]: the mean value (regression) or the
        log of the mean class probabilities (classification: softmax gives the mean)."""
        if per_head.shape[1] == 1:
            return per_head[:, 0]
        if self.cfg.task == "classification":
            return torch.logsumexp(torch.log_softmax(per_head.float(), -1), 1) - \
                math.log(per_head.shape[1])
        return per_head.mean(1)

    # -------------------------------------------------------------- forward
    def forward(self, batch, asv_cache=None, sketch: bool = False, dedup: bool = True,
                attention=None, slot_gate=None):
        """A batch (data.TorchBatch: its tensors by name) -> dict with 'embedding' /
        'pair_offset' (the UniFrac embedding and its distance offset), 'learned_embedding' /
        'learned_offset' (its learned part: what the pair loss fits), 'sample_vec',
        'pool_weights', and when relevant 'nuc_logits'/'nuc_targets', 'prediction'
        (normalised regression value or class logits; predictors with heads).
        ``asv_cache``: every feature's ASV vector (a frozen encoder); ``sketch``: the ASV-set
        sketch (set_sketch) joins 'embedding' (the distances ``embed`` gives; otherwise
        'embedding' is the learned part); ``dedup=False``: every [sample, slot] through the
        nucleotide encoder (the seed's path, for equivalence tests and benchmarks);
        ``attention``: a list that receives the sample encoder's attention weights;
        ``slot_gate`` [B, S]: each ASV's input scaled (integrated gradients)."""
        out = {}
        slot_vecs = self._slot_vectors(batch, asv_cache, dedup, out)
        asv_states, sample_vec, weights = self.sample(slot_vecs, batch.counts, batch.mask,
                                                      attention, slot_gate)
        emb, offset, learned = self.distance(sample_vec, batch.slot_index, batch.mask,
                                             batch.asv_hash, slot_gate, sketch)
        out.update(sample_vec=sample_vec, pool_weights=weights, embedding=emb, pair_offset=offset,
                   learned_embedding=learned, learned_offset=self.distance.learned_offset())
        if self.cfg.task != "encoder" and len(self.heads):
            f = out["head_features"] = self.head_features(
                asv_states, sample_vec, slot_vecs, batch.counts, batch.mask, batch.tokens,
                batch.slot_index, slot_gate)
            out["head_predictions"] = torch.stack(
                [h(f[:, k], batch.covariates) for k, h in enumerate(self.heads)], 1)
            out["prediction"] = self.combine(out["head_predictions"])
        return out

    def _slot_vectors(self, batch, asv_cache, dedup: bool, out: dict):
        """Each [sample, slot]'s ASV vector [B, S, D]: from the cache, from the batch's unique
        ASVs encoded once, or (dedup off) every slot encoded; the masked-nucleotide logits go
        to ``out`` where the batch carries nucleotide targets."""
        if asv_cache is not None:
            return asv_cache[batch.unique_features][batch.slot_index]
        if dedup:
            vecs, states = self.asv(batch.tokens)
            if batch.nuc_targets is not None:
                out["nuc_logits"], out["nuc_targets"] = self.asv.nuc_head(states), batch.nuc_targets
            return vecs[batch.slot_index]
        B, S = batch.slot_index.shape
        slot_tokens = batch.tokens[batch.slot_index].reshape(B * S, -1)
        vecs, states = self.asv(slot_tokens)
        if batch.nuc_targets is not None:
            t = batch.nuc_targets[batch.slot_index].reshape(B * S, -1)
            t = torch.where(batch.mask.reshape(B * S, 1), t, torch.full_like(t, -100))
            out["nuc_logits"], out["nuc_targets"] = self.asv.nuc_head(states), t
        return vecs.view(B, S, -1)

    def load_encoder_from(self, other: "AAM"):
        """Copy the encoder weights of a pretrained model (sizes must agree)."""
        mine, theirs = self.state_dict(), other.state_dict()
        keys = [k for k in theirs if k.startswith(("asv.", "sample.", "distance."))]
        bad = [k for k in keys if k not in mine or mine[k].shape != theirs[k].shape]
        if bad:
            raise ValueError(f"The pretrained encoder does not match this model's sizes "
                             f"(first: {bad[0]}); use the same embedding_dim, attention_heads, "
                             "attention_layers, max_bp and token_limit as the pretrained model.")
        self.load_state_dict({k: theirs[k] for k in keys}, strict=False)

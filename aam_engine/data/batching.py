"""Batch builder: per-sample ASV selection, unique-ASV dedup, UniFrac sub-matrix, targets.

The same ASV appears in many samples of a batch.  A batch therefore carries the UNIQUE ASVs
once (``tokens``: [U, max_bp+1]) plus ``slot_index`` [B, S] that scatters unique-ASV vectors
back to every (sample, ASV slot).  ``dedup_ratio`` = occupied slots / unique ASVs.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np

from .keyed import MASK, SELECT, TRIM, as_key, uniform
from .table import SampleTable
from .tokenizer import PAD, mask_tokens


@dataclass
class Batch:
    sample_index: np.ndarray          # [B] rows of the table
    unique_features: np.ndarray       # [U] column index (feature) of each unique ASV
    tokens: np.ndarray                # [U, L] int64 (masked when nuc_targets is set)
    slot_index: np.ndarray            # [B, S] index into unique ASVs (0 where padded)
    counts: np.ndarray                # [B, S] float32 counts (0 where padded)
    mask: np.ndarray                  # [B, S] bool, True = real ASV
    distances: np.ndarray | None = None    # [R, R] float32 of the distance rows (default
                                           # the batch's; a rank's share: the global batch's)
    targets: np.ndarray | None = None      # [B] float32 (regression) / int64 (classes)
    covariates: np.ndarray | None = None   # [B, K] int64, 0 = unknown
    nuc_targets: np.ndarray | None = None  # [U, L] int64, -100 where not masked
    asv_hash: np.ndarray | None = None     # [U] int64: each unique ASV's sequence hash
                                           # (32 bits; see BatchBuilder.feature_hash)

    @property
    def size(self) -> int:
        return len(self.sample_index)

    @property
    def dedup_ratio(self) -> float:
        return float(self.mask.sum()) / max(1, len(self.unique_features))

    def to_torch(self, device="cpu") -> "TorchBatch":
        """The batch's arrays as tensors on ``device`` (None stays None)."""
        import torch
        return TorchBatch(**{f.name: None if getattr(self, f.name) is None else
                             torch.as_tensor(getattr(self, f.name)).to(device, non_blocking=True)
                             for f in fields(self)})


@dataclass
class TorchBatch:
    """A Batch's arrays as tensors (same names and shapes): what AAM.forward reads, by name.
    ``folds``: each sample's fold, where the trainer cross-fits heads."""
    sample_index: object
    unique_features: object
    tokens: object
    slot_index: object
    counts: object
    mask: object
    distances: object = None
    targets: object = None
    covariates: object = None
    nuc_targets: object = None
    asv_hash: object = None
    folds: object = None


MIN_TRIMMED_BP = 20
MAX_START_TRIM = 2


def trim_reads(tokens, read_trim: int, u) -> np.ndarray:
    """Tokens [U, L] (START, bases, PAD) with each row's read shortened by a random number of
    bases up to ``read_trim`` (u[:, 0]), of which up to MAX_START_TRIM come off its start
    (u[:, 1]; a primer that ends a base later) and the rest off its end (a shorter read);
    at least MIN_TRIMMED_BP bases stay."""
    n = (tokens[:, 1:] != PAD).sum(1)
    cut = np.minimum(np.floor(u[:, 0] * (read_trim + 1)).astype(np.int64),
                     np.maximum(n - MIN_TRIMMED_BP, 0))
    start = np.minimum(np.floor(u[:, 1] * (MAX_START_TRIM + 1)).astype(np.int64), cut)
    keep = n - cut
    L = tokens.shape[1] - 1
    pos = np.arange(L)[None, :]
    src = np.minimum(pos + start[:, None], L - 1) + 1
    bases = np.take_along_axis(tokens, src, 1)
    out = tokens.copy()
    out[:, 1:] = np.where(pos < keep[:, None], bases, PAD)
    return out


class MatrixDistances:
    """Distances given as a whole [n, n] matrix (a user's DistanceMatrix), aligned to the
    table's samples.  ``block(rows)`` is the interface every distance source offers; the other
    one, data.unifrac_batch.BatchUniFrac, computes a block from the tree and never holds n x n.
    A float32 matrix is kept as given, not copied (a shared one stays shared)."""

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"a distance matrix must be square, got shape {self.matrix.shape}")

    def __len__(self):
        return len(self.matrix)

    def block(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return self.matrix[np.ix_(rows, rows)]


@dataclass(frozen=True)
class ReadNoise:
    """What training does to reads: the fraction of nucleotides masked (and how: single bases
    or spans), and the most bases a read is trimmed by (data.batching.trim_reads)."""
    mask_ratio: float = 0.0
    mask_strategy: str = "random"
    read_trim: int = 0


class BatchBuilder:
    """Turns lists of sample rows into :class:`Batch` objects.

    distances: a distance source with ``block(rows)`` (MatrixDistances, BatchUniFrac) or an
    [n_samples, n_samples] matrix, aligned to the table's sample order (or None);
    targets: [n_samples] (or None); covariates: [n_samples, K] int codes (or None);
    noise: the masking and trimming training asks for (none by default).
    """

    def __init__(self, table: SampleTable, token_limit: int = 1024, max_bp: int = 150,
                 selection: str = "abundance", distances=None, targets=None, covariates=None,
                 noise: ReadNoise = ReadNoise()):
        # token_limit / selection come from a validated configuration (aam_engine.config)
        self.table = table
        self.token_limit = int(token_limit)
        self.max_bp = int(max_bp)
        self.selection = selection
        if distances is not None and not hasattr(distances, "block"):
            distances = MatrixDistances(distances)
        self.distances = distances
        self.targets = None if targets is None else np.asarray(targets)
        self.covariates = None if covariates is None else np.asarray(covariates, dtype=np.int64)
        for name, arr in (("distances", self.distances), ("targets", self.targets),
                          ("covariates", self.covariates)):
            if arr is not None and len(arr) != table.n_samples:
                raise ValueError(f"{name} has {len(arr)} rows for {table.n_samples} samples")
        self.mask_ratio = float(noise.mask_ratio)
        self.mask_strategy = noise.mask_strategy
        self.read_trim = int(noise.read_trim)
        # tokenized once per table (uint8, kept and shared with it); a batch gathers rows
        self.feature_tokens = table.tokens(self.max_bp)
        # each feature's identity, from the tokens the model reads (unmasked): CRC-32 of its
        # bytes, the same on every machine, whatever the table calls the feature
        self.feature_hash = np.fromiter((zlib.crc32(r.tobytes()) for r in self.feature_tokens),
                                        dtype=np.int64, count=len(self.feature_tokens))

    def select(self, row: int, key=None) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, counts) of one sample, <= token_limit, most abundant first.

        Selection 'sample' with a ``key`` (data.keyed.as_key) draws token_limit ASVs without
        replacement, proportional to counts, from numbers keyed on (key, row, feature): the
        same draw whichever process builds the sample, and whatever else is in its batch."""
        csr = self.table.counts
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        feats, cnts = csr.indices[lo:hi], csr.data[lo:hi]
        key = as_key(key)
        if len(feats) > self.token_limit:
            if self.selection == "sample" and key is not None:
                # weighted sampling without replacement as the token_limit largest u^(1/w)
                # (Efraimidis & Spirakis 2006), here the smallest -log(u) / w
                u = uniform(key + (SELECT, row), feats)
                keep = np.argsort(-np.log(u) / cnts, kind="stable")[: self.token_limit]
            else:
                keep = np.lexsort((feats, -cnts))[: self.token_limit]
            feats, cnts = feats[keep], cnts[keep]
        order = np.lexsort((feats, -cnts))
        return feats[order], cnts[order]

    def build(self, rows, key=None, mask: bool = False, distance_rows=None,
              trim: bool = False) -> Batch:
        """The batch of samples ``rows``.  ``key`` (an int, ints, or a numpy Generator to draw
        one from; see data.keyed) fixes ASV subsampling and nucleotide masks per sample and per
        ASV, so a process that builds only its share of a global batch draws what one process
        building all of it would.  ``distance_rows`` (default ``rows``): the samples whose
        distance block the batch carries, e.g. the whole global batch for a rank's share.
        ``trim`` (training, with read_trim > 0): every unique ASV's read is cut short as
        another primer or read length would cut it (see trim_reads)."""
        rows = np.asarray(rows, dtype=np.int64)
        key = as_key(key)
        picked = [self.select(r, key) for r in rows]
        S = max(len(f) for f, _ in picked)
        B = len(rows)
        all_feats = np.concatenate([f for f, _ in picked])
        unique, inverse = np.unique(all_feats, return_inverse=True)
        slot_index = np.zeros((B, S), dtype=np.int64)
        counts = np.zeros((B, S), dtype=np.float32)
        smask = np.zeros((B, S), dtype=bool)
        pos = 0
        for b, (f, c) in enumerate(picked):
            n = len(f)
            slot_index[b, :n] = inverse[pos:pos + n]
            counts[b, :n] = c
            smask[b, :n] = True
            pos += n
        tokens = self.feature_tokens[unique].astype(np.int64)
        if trim and self.read_trim and key is not None:
            tokens = trim_reads(tokens, self.read_trim, uniform(key + (TRIM,), unique[:, None],
                                                                 np.arange(2)))
        nuc_targets = None
        if mask and self.mask_ratio > 0:
            if key is None:
                raise ValueError("masking needs a random key")
            u = uniform(key + (MASK,), unique[:, None], np.arange(tokens.shape[1]))
            tokens, nuc_targets = mask_tokens(tokens, self.mask_ratio, u, self.mask_strategy)
        drows = rows if distance_rows is None else np.asarray(distance_rows, dtype=np.int64)
        return Batch(
            sample_index=rows, unique_features=unique.astype(np.int64), tokens=tokens,
            slot_index=slot_index, counts=counts, mask=smask,
            distances=None if self.distances is None else self.distances.block(drows),
            targets=None if self.targets is None else self.targets[rows],
            covariates=None if self.covariates is None else self.covariates[rows],
            nuc_targets=nuc_targets, asv_hash=self.feature_hash[unique])

    def token_tensor(self, device="cpu"):
        """Every feature's tokens as a (uint8) tensor on ``device``: what the ASV-vector cache
        encodes.  A private copy: torch wants writable memory, and a shared table's is not."""
        import torch
        return torch.from_numpy(np.array(self.feature_tokens)).to(device)

    def batches(self, rows, batch_size: int, rng=None, shuffle: bool = False,
                drop_last: bool = False, mask: bool = False, trim: bool = False):
        """Iterate batches over ``rows`` (shuffled with ``rng``, a Generator, when asked).
        ``rng``: a Generator gives each batch a new key; a fixed key gives every batch the same
        one (evaluation: an ASV is masked alike in every batch and every epoch)."""
        rows = np.asarray(rows, dtype=np.int64)
        if shuffle:
            rows = rows[rng.permutation(len(rows))]
        stop = len(rows) - (len(rows) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.build(rows[i:i + batch_size], rng, mask, trim=trim)

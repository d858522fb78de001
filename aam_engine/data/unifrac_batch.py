"""Exact UniFrac for the samples of one batch, from per-sample branch profiles: memory linear in
the number of samples (nothing N x N is ever built).

Each sample's reads are pushed up the tree once (a sparse samples x branches matrix of the reads
below each branch); a batch's distances are then a few vectorised operations on its rows:

    unweighted             sum_b l_b |x_ib - x_jb| / sum_b l_b max(x_ib, x_jb)     x = any read below b
    weighted_unnormalized  sum_b l_b |p_ib - p_jb|                                 p = fraction of reads below b
    weighted_normalized    the same / sum_t r_t (p_it + p_jt)                      r = root-to-tip distance, t = tips

(Lozupone & Knight 2005; Lozupone et al. 2007), equal to the `unifrac` library's values to float
tolerance (tests/engine/test_unifrac_batch.py, on real data).
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from .table import SampleTable, first_few

UNIFRAC_METRICS = ("unweighted", "weighted_normalized", "weighted_unnormalized")


class BatchUniFrac:
    """``BatchUniFrac(table, tree, metric)(rows) -> [len(rows), len(rows)]`` UniFrac distances
    between those samples of the table (rows = sample indices)."""

    def __init__(self, table: SampleTable, tree, metric: str = "unweighted"):
        import skbio
        if metric not in UNIFRAC_METRICS:
            raise ValueError(f"UniFrac metric must be one of {UNIFRAC_METRICS}, got {metric!r}")
        if not isinstance(tree, skbio.TreeNode):
            tree = skbio.TreeNode.read(str(tree), format="newick")
        self.metric = metric
        tip_of = {f: i for i, f in enumerate(table.feature_ids)}
        # branches: every node but the root, numbered in post-order; a tip's ancestors are the
        # branches on its path to the root
        index, lengths, root_dist = {}, [], {}
        for node in tree.postorder(include_self=False):
            index[id(node)] = len(lengths)
            lengths.append(float(node.length or 0.0))
        rows, cols = [], []
        for node in tree.preorder(include_self=False):
            root_dist[id(node)] = root_dist.get(id(node.parent), 0.0) + float(node.length or 0.0)
        tip_depth = np.zeros(table.n_features)
        for tip in tree.tips():
            f = tip_of.get(tip.name)
            if f is None:
                continue
            tip_depth[f] = root_dist[id(tip)]
            node = tip
            while node.parent is not None:
                rows.append(f)
                cols.append(index[id(node)])
                node = node.parent
        placed = set(rows)
        missing = [table.feature_ids[f] for f in range(table.n_features) if f not in placed]
        if missing:
            raise ValueError(f"{len(missing)} features are not tips of the tree: "
                             f"{first_few(missing, 3)}. Filter the table to the tree's tips.")
        ancestors = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                      shape=(table.n_features, len(lengths)))
        counts = sparse.csr_matrix(table.counts, dtype=np.float64)
        depth = np.asarray(counts.sum(1)).ravel()
        depth[depth == 0] = 1.0
        # reads below each branch, per sample, as fractions of the sample's reads
        self.below = sparse.csr_matrix(sparse.diags(1.0 / depth) @ counts @ ancestors)
        self.lengths = np.asarray(lengths)
        # sum_t r_t p_it per sample: the weighted_normalized denominator is u_i + u_j
        self.tip_term = np.asarray(sparse.diags(1.0 / depth) @ counts @ tip_depth).ravel()

    def __len__(self):
        return self.below.shape[0]

    def block(self, rows) -> np.ndarray:
        """[len(rows), len(rows)] float32: the distance-source interface of BatchBuilder."""
        return self(rows).astype(np.float32)

    def __call__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        block = self.below[rows]
        cols = np.unique(block.indices)
        P = block[:, cols].toarray()                  # [B, branches under this batch]
        L = self.lengths[cols]
        if self.metric == "unweighted":
            X = (P > 0).astype(np.float64)
            a = X @ L
            inter = (X * L) @ X.T
            union = a[:, None] + a[None, :] - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                d = np.where(union > 0, (union - inter) / union, 0.0)
        else:
            from scipy.spatial.distance import cdist
            PL = P * L                                  # l_b >= 0: sum l|p - q| = L1 of l*p
            d = cdist(PL, PL, "cityblock")
            if self.metric == "weighted_normalized":
                u = self.tip_term[rows]
                denom = u[:, None] + u[None, :]
                with np.errstate(invalid="ignore", divide="ignore"):
                    d = np.where(denom > 0, d / denom, 0.0)
        np.fill_diagonal(d, 0.0)
        return (d + d.T) / 2

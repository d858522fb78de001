"""Per-sample features that a fit's learners read, from a table and a frozen encoder.

    clr          centred log-ratios of the counts over the model's training reads
                 (pseudocount 1): what the L2 baseline reads
    relative     each training read's share of the sample: what a forest reads
    composition  the ASV vectors weighted by each ASV's share of the sample (rel @ V): what
                 kinds of ASVs a sample holds, in the encoder's terms; defined for reads the
                 model never saw (the encoder reads them)
    clusters     each sample's shares of the encoder's clusters of reads: every read falls
                 into the cluster of its nearest centre (k-means of the vectors of the reads
                 the encoder was pretrained on, CLUSTERS of them), and a sample's reads are
                 summed per cluster: a grouping of reads learned on the corpus, defined for
                 reads nobody has seen

``columns`` are the model's training reads (the abundance blocks' columns, in order); a new
table's reads are placed by sequence (after reads of other trims are matched to them), and
reads the model never saw count in each sample's total but have no column.  The ASV vectors
``V`` [table features, D] come from the frozen encoder (inference.asv_vectors).
Prediction computes the same features; nothing here trains.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PSEUDOCOUNT = 1.0
BLOCKS = ("clr", "relative", "composition", "clusters")
CLUSTERS = 64             # an encoder's clusters of reads (k-means centres of its reads' vectors)
NEEDS_VECTORS = ("composition", "clusters")


def clr(counts, pseudocount: float = PSEUDOCOUNT) -> np.ndarray:
    """Centred log-ratio of dense or sparse counts [n, F] (pseudocount added to every cell)."""
    X = counts.toarray() if sp.issparse(counts) else np.asarray(counts, float)
    L = np.log(X + pseudocount)
    return L - L.mean(1, keepdims=True)


def totals(counts) -> np.ndarray:
    return np.maximum(np.asarray(sp.csr_matrix(counts).sum(1), float).ravel(), 1e-12)


def composition(counts, V) -> np.ndarray:
    """Relative-abundance-weighted mean of the ASV vectors V [F, D]: [n, D]."""
    C = sp.csr_matrix(counts, dtype=np.float64)
    return np.asarray(sp.diags(1.0 / totals(C)) @ C @ np.asarray(V, np.float64))


def cluster_centres(V, k: int = CLUSTERS, seed: int = 0) -> np.ndarray:
    """k-means centres (k at most the number of distinct vectors; 3 starts, ``seed``) of the
    reads' vectors V [F, D]: the clusters an encoder keeps of the reads it was pretrained on."""
    from sklearn.cluster import KMeans
    V = np.asarray(V, np.float64)
    k = min(k, len(np.unique(V, axis=0)))
    return KMeans(k, n_init=3, random_state=seed).fit(V).cluster_centers_


def nearest_centre(V, centres, chunk: int = 65536) -> np.ndarray:
    """Each read's cluster: the index of the centre nearest its vector [F] (in chunks of
    reads: a table of a million reads needs no F x K matrix at once)."""
    C = np.asarray(centres, np.float64)
    c2 = (C ** 2).sum(1)[None]
    out = [np.argmin(c2 - 2 * np.asarray(V[i:i + chunk], np.float64) @ C.T, 1)
           for i in range(0, len(V), chunk)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def clusters(counts, V, centres) -> np.ndarray:
    """Each sample's shares of the clusters [n, K]: its reads' counts summed per cluster of
    the centres, over its total."""
    near = nearest_centre(V, centres)
    M = sp.csr_matrix((np.ones(len(near)), (np.arange(len(near)), near)),
                      shape=(len(near), len(centres)))
    C = sp.csr_matrix(counts, dtype=np.float64)
    return (sp.diags(1.0 / totals(C)) @ C @ M).toarray()


def encoder_centres(encoder):
    """The centres an encoder (a ModelBundle) keeps of its pretraining reads: those of an
    encoder's extra, or, for a fitted model given as the encoder, those its stack reads; None
    where it keeps none (written before format 2.9)."""
    if encoder is None:
        return None
    c = (encoder.extra or {}).get("clusters")
    if c:
        return np.asarray(c["centres"], np.float64)
    stack = getattr(encoder, "stack", None)
    return None if stack is None or stack.centres is None else np.asarray(stack.centres)


def aligned(table, columns: list[str]) -> sp.csr_matrix:
    """The table's counts in the model's columns [n, len(columns)]: features placed by
    sequence (several features of one read summed), reads without a column left out."""
    index = {s: i for i, s in enumerate(columns)}
    src = [j for j, s in enumerate(table.sequences) if s in index]
    dst = [index[table.sequences[j]] for j in src]
    M = sp.csr_matrix((np.ones(len(src)), (src, dst)),
                      shape=(table.n_features, len(columns)))
    return sp.csr_matrix(table.counts @ M)


def sample_features(table, columns: list[str], names, V=None, centres=None) -> dict:
    """{block name: [n, width]} for the blocks ``names`` (see BLOCKS); V is needed for
    'composition' and 'clusters', and the centres for 'clusters'."""
    out = {}
    A = aligned(table, columns) if {"clr", "relative"} & set(names) else None
    for name in names:
        if name == "clr":
            out[name] = clr(A)
        elif name == "relative":
            out[name] = (sp.diags(1.0 / totals(table.counts)) @ A).toarray()
        elif name == "composition":
            if V is None:
                raise ValueError("the composition block needs the encoder's ASV vectors")
            out[name] = composition(table.counts, V)
        elif name == "clusters":
            if V is None or centres is None:
                raise ValueError("the clusters block needs the encoder's ASV vectors and its "
                                 "cluster centres")
            out[name] = clusters(table.counts, V, centres)
        else:
            raise ValueError(f"unknown feature block {name!r}; known: {', '.join(BLOCKS)}")
    return out


def with_covariates(feats: dict, codes, levels: dict) -> dict:
    """Every block with the covariates appended as one-hot columns (code 0, an unknown value,
    is all zeros); the blocks as they are without covariates."""
    if codes is None or not levels:
        return feats
    onehot = [np.eye(len(lv) + 1)[np.asarray(codes)[:, k]][:, 1:]
              for k, lv in enumerate(levels.values())]
    return {name: np.hstack([X] + onehot) for name, X in feats.items()}

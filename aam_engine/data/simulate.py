"""Example-data generator: ASVs evolving along a random tree, counts driven by covariates.

Writes what a QIIME 2 user would import: a BIOM table, a FASTA of sequences, a rooted Newick
tree and a metadata TSV.  The numeric covariate (``age``) raises the abundance of one clade and
the categorical one (``group``) of another, so both regression and classification have signal
and the UniFrac distances between samples reflect it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BASES = np.array(list("ACGT"))


@dataclass
class SimulatedData:
    counts: np.ndarray          # samples x features (int)
    sample_ids: list[str]
    feature_ids: list[str]
    sequences: list[str]
    newick: str
    metadata: dict[str, list]   # column -> values (aligned to sample_ids)


def _build_tree(n_leaves, length, rng, rate):
    """Recursive random bifurcations; returns (newick with leaves L0..Ln-1, leaf sequences)."""
    root = rng.integers(0, 4, size=length)
    leaves = []

    def grow(seq, n):
        bl = float(rng.exponential(0.08))
        flip = rng.random(length) < 1 - np.exp(-rate * bl)
        seq = np.where(flip, rng.integers(0, 4, size=length), seq)
        if n == 1:
            leaves.append(seq)
            return f"L{len(leaves) - 1}:{bl:.5f}"
        k = int(rng.integers(1, n))
        return f"({grow(seq, k)},{grow(seq, n - k)}):{bl:.5f}"

    k = max(1, n_leaves // 2)
    return f"({grow(root, k)},{grow(root, n_leaves - k)})root;", leaves


def simulate(n_samples: int = 60, n_features: int = 120, seq_length: int = 150,
             depth: int = 2000, seed: int = 0, hashed_ids: bool = True,
             mutation_rate: float = 2.0) -> SimulatedData:
    rng = np.random.default_rng(seed)
    nwk, leaf_seqs = _build_tree(n_features, seq_length, rng, mutation_rate)
    seqs = ["".join(BASES[s]) for s in leaf_seqs]
    for i in range(len(seqs)):       # keep sequences unique (a collision is vanishingly rare)
        while seqs[i] in seqs[:i]:
            seqs[i] = "".join(BASES[rng.integers(0, 4, size=seq_length)])
    ids = [hashlib.md5(s.encode()).hexdigest() if hashed_ids else s for s in seqs]
    for i, fid in enumerate(ids):            # "L1:" never matches inside "L12:"
        nwk = nwk.replace(f"L{i}:", f"{fid}:")

    # two informative clades: contiguous leaf blocks are clades of the recursive tree
    age_block = np.arange(max(2, n_features // 6))
    group_block = n_features // 2 + np.arange(max(2, n_features // 6))

    age = rng.uniform(1, 80, size=n_samples).round(1)
    group = rng.choice(["gut", "oral"], size=n_samples)
    subject = np.array([f"subject{i // 3:02d}" for i in range(n_samples)])
    base = rng.normal(0, 1.0, size=n_features)
    logits = base[None, :] + rng.normal(0, 0.5, size=(n_samples, n_features))
    logits[:, age_block] += 3.0 * ((age[:, None] - 40) / 40)
    logits[:, group_block] += np.where(group == "gut", 2.5, -2.5)[:, None]
    present = rng.random((n_samples, n_features)) < 0.6
    present[:, age_block] |= (age[:, None] > 40)
    w = np.exp(logits) * present
    w /= w.sum(axis=1, keepdims=True)
    counts = np.stack([rng.multinomial(depth, p) for p in w])
    sample_ids = [f"S{i:03d}" for i in range(n_samples)]
    keep = counts.sum(axis=0) > 0
    return SimulatedData(
        counts=counts[:, keep], sample_ids=sample_ids,
        feature_ids=[f for f, k in zip(ids, keep) if k], sequences=[s for s, k in zip(seqs, keep) if k],
        newick=nwk, metadata={"age": age.tolist(), "group": group.tolist(),
                              "subject": subject.tolist()})


def write_example_data(outdir, **kw) -> dict[str, Path]:
    """Simulate and write table.biom, sequences.fasta, tree.nwk, metadata.tsv to ``outdir``."""
    import biom
    import h5py
    d = simulate(**kw)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in (("table", "table.biom"), ("sequences", "sequences.fasta"),
                                        ("tree", "tree.nwk"), ("metadata", "metadata.tsv"))}
    bt = biom.Table(d.counts.T, d.feature_ids, d.sample_ids)
    tmp = paths["table"].with_suffix(".biom.tmp")
    with h5py.File(tmp, "w") as f:
        bt.to_hdf5(f, "q2-aam simulate")
    tmp.replace(paths["table"])
    paths["sequences"].write_text("".join(f">{f}\n{s}\n" for f, s in zip(d.feature_ids, d.sequences)))
    paths["tree"].write_text(d.newick + "\n")
    cols = list(d.metadata)
    lines = ["sample-id\t" + "\t".join(cols), "#q2:types\tnumeric\tcategorical\tcategorical"]
    for i, s in enumerate(d.sample_ids):
        lines.append(s + "\t" + "\t".join(str(d.metadata[c][i]) for c in cols))
    paths["metadata"].write_text("\n".join(lines) + "\n")
    return paths


def simulate_collection(n_samples: int, n_features: int, asvs_per_sample: int = 60,
                        seq_length: int = 100, depth: int = 5000, seed: int = 0):
    """A large public-collection-like table, built sparse (memory linear in samples): each
    sample draws ``asvs_per_sample`` ASVs from a heavy-tailed popularity over ``n_features``
    ASVs on a random tree.  Returns (SampleTable, newick)."""
    import scipy.sparse as sp
    from .table import SampleTable
    rng = np.random.default_rng(seed)
    nwk, leaf_seqs = _build_tree(n_features, seq_length, rng, 2.0)
    seqs, seen = [], set()
    for s in leaf_seqs:
        seq = "".join(BASES[s])
        while seq in seen:
            seq = "".join(BASES[rng.integers(0, 4, size=seq_length)])
        seen.add(seq)
        seqs.append(seq)
    ids = [f"F{i}" for i in range(n_features)]
    for i in reversed(range(n_features)):          # "L1:" never matches inside "L12:"
        nwk = nwk.replace(f"L{i}:", f"F{i}:")
    popularity = 1.0 / np.arange(1, n_features + 1) ** 0.9
    popularity = rng.permutation(popularity / popularity.sum())
    k = min(asvs_per_sample, n_features)
    cols = np.empty((n_samples, k), dtype=np.int64)
    for i in range(n_samples):
        cols[i] = rng.choice(n_features, k, replace=False, p=popularity)
    weights = rng.dirichlet(np.full(k, 0.5), size=n_samples)
    vals = np.maximum(1, np.round(weights * depth)).ravel()
    counts = sp.csr_matrix((vals, cols.ravel(), np.arange(0, n_samples * k + 1, k)),
                           shape=(n_samples, n_features))
    used = np.unique(cols)
    counts = counts[:, used]
    table = SampleTable.from_arrays(counts, [f"S{i}" for i in range(n_samples)],
                                    [ids[f] for f in used], {ids[f]: seqs[f] for f in used})
    return table, nwk

"""Sample distance matrices: read precomputed ones or compute UniFrac from a rooted tree."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .table import SampleTable, first_few
from .unifrac_batch import UNIFRAC_METRICS, BatchUniFrac


def check_distance_matrix(ids, matrix, tol: float = 1e-6) -> tuple[list[str], np.ndarray]:
    """Validate a square, symmetric, finite, non-negative matrix with unique IDs."""
    ids = [str(i) for i in ids]
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(ids):
        raise ValueError(f"Distance matrix must be square with one row per ID: shape {m.shape}, "
                         f"{len(ids)} IDs.")
    if len(set(ids)) != len(ids):
        dups = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"Duplicate IDs in the distance matrix: {first_few(dups)}")
    bad = ~np.isfinite(m)
    if bad.any():
        rows = [ids[i] for i in np.flatnonzero(bad.any(axis=1))]
        raise ValueError(f"Distance matrix has NaN or infinite values in rows {first_few(rows)}; "
                         "recompute it or drop those samples.")
    neg = m < -tol
    if neg.any():
        i, j = np.argwhere(neg)[0]
        rows = [ids[k] for k in np.flatnonzero(neg.any(axis=1))]
        raise ValueError(f"Distance matrix has negative distances (e.g. d({ids[i]!r}, "
                         f"{ids[j]!r}) = {m[i, j]:.6g}; rows {first_few(rows)}): it does not hold "
                         "distances. Give UniFrac (or another metric), which is never negative.")
    asym = np.abs(m - m.T) > tol * max(1.0, float(np.abs(m).max()))
    if asym.any():
        i, j = np.argwhere(asym)[0]
        raise ValueError(f"Distance matrix is not symmetric: d({ids[i]!r}, {ids[j]!r}) = "
                         f"{m[i, j]:.6g} but d({ids[j]!r}, {ids[i]!r}) = {m[j, i]:.6g}.")
    if np.abs(np.diag(m)).max() > tol:
        raise ValueError("Distance matrix has non-zero values on its diagonal.")
    return ids, np.clip((m + m.T) / 2, 0, None)


def read_distance_matrix(path) -> tuple[list[str], np.ndarray]:
    """Read (ids, matrix) from a TSV (lsmat), .npz (ids + matrix), .npy (+ .ids sidecar) or
    .h5 written by `ssu` / unifrac's *_to_file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "ids" not in z or not ({"matrix", "data"} & set(z.files)):
                raise ValueError(f"{path}: a .npz distance file needs arrays 'ids' and 'matrix'")
            ids, m = z["ids"].astype(str).tolist(), z["matrix" if "matrix" in z else "data"]
    elif suffix == ".npy":
        m = np.load(path, allow_pickle=False)
        side = path.with_suffix(".ids")
        if not side.exists():
            side = path.with_name(path.stem + ".ids.txt")
        if not side.exists():
            raise ValueError(f"{path}: a .npy matrix needs its sample IDs, one per line, in "
                             f"{path.with_suffix('.ids')}")
        ids = [l.strip() for l in side.read_text().splitlines() if l.strip()]
    elif suffix in (".h5", ".hdf5"):
        import h5py
        with h5py.File(path, "r") as f:
            if "matrix" not in f or "order" not in f:
                raise ValueError(f"{path}: expected datasets 'matrix' and 'order' (ssu output)")
            m = f["matrix"][:]
            ids = [i.decode() if isinstance(i, bytes) else str(i) for i in f["order"][:]]
    else:
        import skbio
        dm = skbio.DistanceMatrix.read(str(path), format="lsmat")
        ids, m = list(dm.ids), dm.data
    return check_distance_matrix(ids, m)


def align_distances(ids, matrix, sample_ids) -> np.ndarray:
    """Sub-matrix in the order of ``sample_ids``; every sample must be present."""
    index = {s: i for i, s in enumerate(ids)}
    missing = [s for s in sample_ids if s not in index]
    if missing:
        raise ValueError(f"{len(missing)} sample(s) are not in the distance matrix: "
                         f"{first_few(missing)}. Compute the matrix on the same table, or "
                         "filter the table to the matrix's samples.")
    idx = np.array([index[s] for s in sample_ids], dtype=np.int64)
    m = np.asarray(matrix, dtype=np.float64)
    if len(idx) == len(m) and (idx == np.arange(len(m))).all():
        return m                    # already in order: no second N x N copy
    return m[np.ix_(idx, idx)]


def tree_tips(tree) -> set[str]:
    return {t.name for t in tree.tips()}


def tree_for_table(table: SampleTable, tree):
    """(table without the features that are not tips of the tree -- warned --, the tree cut
    down to the table's features) for UniFrac."""
    import skbio
    if not isinstance(tree, skbio.TreeNode):
        tree = skbio.TreeNode.read(str(tree), format="newick")
    tips = tree_tips(tree)
    absent = [f for f in table.feature_ids if f not in tips]
    if len(absent) == table.n_features:
        raise ValueError(f"None of the table's features are tips of the tree (first IDs: "
                         f"{first_few(table.feature_ids, 3)}). Use the tree built from this "
                         "table's sequences.")
    if absent:
        warnings.warn(f"{len(absent)} of {table.n_features} features are not in the tree and "
                      f"are dropped for UniFrac: {first_few(absent, 3)}", stacklevel=3)
        table = table.filter_features([f for f in table.feature_ids if f in tips])
    keep = set(table.feature_ids)
    pruned = tree.shear([t for t in tips if t in keep]) if len(keep) < len(tips) else tree
    pruned.prune()
    return table, pruned


def batch_unifrac(table: SampleTable, tree, metric: str = "unweighted"):
    """(filtered table, BatchUniFrac): UniFrac computed per batch, memory linear in samples."""
    if metric not in UNIFRAC_METRICS:       # before the tree is read and cut
        raise ValueError(f"UniFrac metric must be one of {UNIFRAC_METRICS}, got {metric!r}")
    table, pruned = tree_for_table(table, tree)
    return table, BatchUniFrac(table, pruned, metric)


def compute_unifrac(table: SampleTable, tree, metric: str = "unweighted",
                    threads: int = 1) -> tuple[SampleTable, np.ndarray]:
    """The whole UniFrac matrix between the table's samples with the `unifrac` library
    (benchmarks and tests; training uses batch_unifrac, which never builds n x n).

    ``tree``: a rooted skbio.TreeNode or a Newick path.  Features that are not tips of the tree
    are dropped with a warning (UniFrac cannot place them); returns (filtered table, matrix)."""
    import unifrac
    if metric not in UNIFRAC_METRICS:
        raise ValueError(f"UniFrac metric must be one of {UNIFRAC_METRICS}, got {metric!r}")
    table, pruned = tree_for_table(table, tree)
    with tempfile.TemporaryDirectory() as tmp:
        tpath, npath = os.path.join(tmp, "t.biom"), os.path.join(tmp, "t.nwk")
        import h5py
        with h5py.File(tpath, "w") as f:
            table.to_biom().to_hdf5(f, "q2-aam")
        for node in pruned.traverse(include_self=True):  # unifrac needs lengths everywhere
            if node.length is None and node is not pruned:
                node.length = 0.0
        pruned.write(npath, format="newick")
        fn = getattr(unifrac, metric)
        dm = fn(tpath, npath, threads=threads) if "threads" in fn.__code__.co_varnames else fn(tpath, npath)
    return table, align_distances(list(dm.ids), dm.data, table.sample_ids)


class PartDistances:
    """Distances known only within parts of the table's samples: each part (e.g. a study with
    a tree or a distance matrix of its own) has its own source (``block(local rows)``).  A
    block holds NaN for a pair of samples of different parts (or of no part): the pair loss
    and the distance metrics skip such pairs."""

    def __init__(self, n_samples: int, parts):
        """``parts``: [(table rows of the part, its distance source over those rows, in that
        order)]; a row in two parts is an error."""
        self.part_of = np.full(n_samples, -1, dtype=np.int64)
        self.local = np.full(n_samples, -1, dtype=np.int64)
        self.sources = []
        for k, (rows, source) in enumerate(parts):
            rows = np.asarray(rows, dtype=np.int64)
            if (self.part_of[rows] >= 0).any():
                raise ValueError("a sample has distances from two sources; give each sample's "
                                 "distances once (one matrix or tree per study)")
            self.part_of[rows] = k
            self.local[rows] = np.arange(len(rows))
            self.sources.append(source)

    def __len__(self):
        return len(self.part_of)

    def block(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), len(rows)), np.nan, dtype=np.float32)
        part = self.part_of[rows]
        for k in np.unique(part[part >= 0]):
            idx = np.flatnonzero(part == k)
            out[np.ix_(idx, idx)] = self.sources[k].block(self.local[rows[idx]])
        return out


def _read_tree(tree):
    import skbio
    return tree if isinstance(tree, skbio.TreeNode) else skbio.TreeNode.read(str(tree),
                                                                             format="newick")


def part_distances(table: SampleTable, matrices=(), trees=(), metric: str = "unweighted"):
    """PartDistances from several distance matrices ((ids, matrix) each: a sample takes its
    distances from the one that holds it) and / or several rooted trees (a sample takes the
    tree whose tips carry the most of its reads; UniFrac from the reads on that tree's tips,
    features elsewhere left out of its distances but not out of the table).  Pairs are known
    within one source only.  Samples no source covers keep no distances (warned)."""
    from .batching import MatrixDistances
    if metric not in UNIFRAC_METRICS:
        raise ValueError(f"UniFrac metric must be one of {UNIFRAC_METRICS}, got {metric!r}")
    owner = np.full(table.n_samples, -1, dtype=np.int64)
    parts = []
    for ids, m in matrices:
        ids, m = check_distance_matrix(ids, m)
        present = [s for s in ids if s in table._sample_index]
        if not present:
            continue
        rows = table.index_of(present)
        clash = [table.sample_ids[r] for r in rows if owner[r] >= 0]
        if clash:
            raise ValueError(f"{len(clash)} sample(s) are in two distance matrices: "
                             f"{first_few(clash)}. Give each sample's distances once.")
        owner[rows] = len(parts)
        parts.append((rows, MatrixDistances(align_distances(ids, m, present))))
    trees = [_read_tree(t) for t in trees]
    if trees:
        free = np.flatnonzero(owner < 0)
        counts = table.counts[free]
        reads = np.zeros((len(trees), len(free)))
        tips = [tree_tips(t) for t in trees]
        for k, tp in enumerate(tips):
            on = np.array([f in tp for f in table.feature_ids], dtype=np.float64)
            reads[k] = counts @ on
        best = reads.argmax(0)
        for k, tree in enumerate(trees):
            rows = free[(best == k) & (reads[k] > 0)]
            if not len(rows):
                continue
            sub = table.subset([table.sample_ids[r] for r in rows])
            sub, pruned = tree_for_table(sub, tree)
            owner[rows] = len(parts)
            parts.append((rows, BatchUniFrac(sub, pruned, metric)))
    uncovered = [table.sample_ids[r] for r in np.flatnonzero(owner < 0)]
    if len(uncovered) == table.n_samples:
        raise ValueError("No sample of the table is covered by the distance matrices or trees "
                         "given: check that they belong to this table.")
    if uncovered:
        warnings.warn(f"{len(uncovered)} sample(s) are in no distance matrix and on no tree; "
                      f"they train without distances: {first_few(uncovered)}", stacklevel=2)
    return PartDistances(table.n_samples, parts)

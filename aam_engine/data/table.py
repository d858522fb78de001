"""SampleTable: sparse counts (samples x features) plus one nucleotide sequence per feature.

All input checks happen here, at the edge: every problem raises a ValueError that names the
offending samples / features (first few) and says how to fix it.  Code downstream assumes a
validated table.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .tokenizer import invalid_characters, normalize_sequence, tokenize

MIN_SEQUENCE_LENGTH = 10


def first_few(items, n: int = 5) -> str:
    """'a, b, c (and 12 more)' for error messages."""
    items = [str(i) for i in items]
    head = ", ".join(repr(i) for i in items[:n])
    return head + (f" (and {len(items) - n} more)" if len(items) > n else "")


def looks_like_sequence(feature_id: str) -> bool:
    s = normalize_sequence(feature_id)
    return len(s) >= MIN_SEQUENCE_LENGTH and not invalid_characters(s)


@dataclass
class SampleTable:
    counts: sp.csr_matrix          # samples x features, float64 counts
    sample_ids: list[str]
    feature_ids: list[str]
    sequences: list[str]           # normalized, one per feature

    def __post_init__(self):
        self.counts = sp.csr_matrix(self.counts, dtype=np.float64)
        # a stored 0 is an ASV the sample does not have (biom's subsample, behind rarefy and
        # q2-feature-table's rarefy, leaves one for every ASV it drew out): without this the
        # batches would read it as one of the sample's ASVs
        self.counts.eliminate_zeros()
        self.counts.sort_indices()
        self._sample_index = {s: i for i, s in enumerate(self.sample_ids)}
        self._tokens = {}

    def tokens(self, max_bp: int) -> np.ndarray:
        """Every feature's tokens, uint8 [n_features, max_bp + 1], computed once per max_bp and
        kept with the table: a table shared between processes (data.shared) shares them too."""
        if max_bp not in self._tokens:
            self._tokens[max_bp] = tokenize(self.sequences, max_bp, np.uint8)
        return self._tokens[max_bp]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, counts, sample_ids, feature_ids, sequences=None,
                    allow_empty_samples: bool = False) -> "SampleTable":
        """Build and validate.  ``sequences``: {feature_id: sequence} or None (IDs are sequences)."""
        sample_ids = [str(s) for s in sample_ids]
        feature_ids = [str(f) for f in feature_ids]
        counts = sp.csr_matrix(counts, dtype=np.float64)
        if counts.shape != (len(sample_ids), len(feature_ids)):
            raise ValueError(f"count matrix shape {counts.shape} does not match "
                             f"{len(sample_ids)} sample IDs x {len(feature_ids)} feature IDs")
        if counts.shape[0] == 0 or counts.shape[1] == 0 or counts.nnz == 0:
            raise ValueError(
                f"The feature table is empty ({counts.shape[0]} samples x {counts.shape[1]} "
                "features, no non-zero counts). Check the filtering steps that produced it.")
        for kind, ids in (("sample", sample_ids), ("feature", feature_ids)):
            seen, dups = set(), []
            for i in ids:
                (dups.append(i) if i in seen else seen.add(i))
            if dups:
                raise ValueError(f"Duplicate {kind} IDs in the table: {first_few(dups)}. "
                                 f"Each {kind} ID must be unique.")
        if (counts.data < 0).any() or not np.isfinite(counts.data).all():
            raise ValueError("The feature table has negative, NaN or infinite counts; "
                             "AAM needs non-negative frequencies (FeatureTable[Frequency]).")
        depth = np.asarray(counts.sum(axis=1)).ravel()
        empty = [sample_ids[i] for i in np.flatnonzero(depth == 0)]
        if empty and not allow_empty_samples:
            raise ValueError(
                f"{len(empty)} sample(s) have zero total count: {first_few(empty)}. Remove them "
                "first, e.g. `qiime feature-table filter-samples --p-min-frequency 1`.")
        seqs = cls._resolve_sequences(feature_ids, sequences)
        table = cls(counts, sample_ids, feature_ids, seqs)
        if empty:
            table = table.subset([s for s in sample_ids if s not in set(empty)])
        return table

    @staticmethod
    def _resolve_sequences(feature_ids, sequences) -> list[str]:
        if sequences is None:
            not_seq = [f for f in feature_ids if not looks_like_sequence(f)]
            if not_seq:
                raise ValueError(
                    f"{len(not_seq)} feature ID(s) are not nucleotide sequences: "
                    f"{first_few(not_seq, 3)}. Tables from DADA2 use hashed IDs: provide the "
                    "representative sequences (FeatureData[Sequence], --i-sequences / a FASTA).")
            raw = {f: f for f in feature_ids}
        else:
            raw = {str(k): str(v) for k, v in dict(sequences).items()}
            missing = [f for f in feature_ids if f not in raw]
            if missing:
                # a Deblur-style ID is its own sequence even when a FASTA is given
                still = [f for f in missing if not looks_like_sequence(f)]
                if still:
                    raise ValueError(
                        f"{len(still)} feature ID(s) have no sequence in the sequences given "
                        f"and are not sequences themselves: {first_few(still, 3)}. Use the "
                        "FeatureData[Sequence] produced together with this table, or filter the "
                        "table to features that have sequences "
                        "(`qiime feature-table filter-features --m-metadata-file sequences.qza`).")
                raw.update({f: f for f in missing})
        seqs, bad, short = [], [], []
        for f in feature_ids:
            s = normalize_sequence(raw[f])
            if invalid_characters(s):
                bad.append(f"{f} ({''.join(sorted(invalid_characters(s)))})")
            elif len(s) < MIN_SEQUENCE_LENGTH:
                short.append(f"{f} ({len(s)} bp)")
            seqs.append(s)
        if bad:
            raise ValueError(f"{len(bad)} sequence(s) contain characters that are not IUPAC "
                             f"nucleotide codes: {first_few(bad, 3)}. Check the FASTA / "
                             "FeatureData[Sequence] input.")
        if short:
            raise ValueError(f"{len(short)} sequence(s) are empty or shorter than "
                             f"{MIN_SEQUENCE_LENGTH} bp: {first_few(short, 3)}. Filter them "
                             "out (`qiime feature-table filter-seqs --p-min-length`).")
        return seqs

    @classmethod
    def from_biom(cls, table, sequences=None, **kw) -> "SampleTable":
        """From a ``biom.Table`` (features x samples, as biom stores them)."""
        counts = table.matrix_data.T.tocsr()
        return cls.from_arrays(counts, table.ids(axis="sample"), table.ids(axis="observation"),
                               sequences, **kw)

    @classmethod
    def from_dataframe(cls, df, sequences=None, **kw) -> "SampleTable":
        """From a pandas DataFrame, samples as rows and features as columns."""
        return cls.from_arrays(sp.csr_matrix(df.to_numpy(dtype=float)), df.index, df.columns,
                               sequences, **kw)

    # ------------------------------------------------------------------ views
    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def n_features(self) -> int:
        return len(self.feature_ids)

    def depths(self) -> np.ndarray:
        return np.asarray(self.counts.sum(axis=1)).ravel()

    def index_of(self, sample_ids) -> np.ndarray:
        missing = [s for s in sample_ids if s not in self._sample_index]
        if missing:
            raise ValueError(f"{len(missing)} sample(s) are not in the table: {first_few(missing)}")
        return np.array([self._sample_index[s] for s in sample_ids], dtype=np.int64)

    def to_biom(self):
        import biom
        return biom.Table(self.counts.T.tocsr(), self.feature_ids, self.sample_ids)

    # ------------------------------------------------------------------ transformations
    def subset(self, sample_ids) -> "SampleTable":
        """Samples in the given order; features absent from all of them are dropped."""
        idx = self.index_of(list(sample_ids))
        counts = self.counts[idx]
        keep = np.flatnonzero(np.asarray(counts.sum(axis=0)).ravel() > 0)
        return SampleTable(counts[:, keep], [self.sample_ids[i] for i in idx],
                           [self.feature_ids[j] for j in keep], [self.sequences[j] for j in keep])

    def filter_features(self, keep_ids) -> "SampleTable":
        """Keep only the given features (samples left empty raise, naming them)."""
        keep_set = set(keep_ids)
        keep = [j for j, f in enumerate(self.feature_ids) if f in keep_set]
        counts = self.counts[:, keep]
        return SampleTable.from_arrays(counts, self.sample_ids, [self.feature_ids[j] for j in keep],
                                       {self.feature_ids[j]: self.sequences[j] for j in keep})

    def rarefy(self, depth: int, seed: int = 0) -> "SampleTable":
        """Subsample every sample to ``depth`` reads without replacement (biom's subsample).

        Samples shallower than ``depth`` are dropped with a warning naming them."""
        depth = int(depth)
        if depth < 1:
            raise ValueError(f"rarefaction depth must be >= 1, got {depth}")
        shallow = [s for s, d in zip(self.sample_ids, self.depths()) if d < depth]
        if len(shallow) == self.n_samples:
            raise ValueError(f"Every sample has fewer than {depth} reads; choose a smaller "
                             f"rarefaction depth (largest depth: {int(self.depths().max())}).")
        if shallow:
            warnings.warn(f"Rarefaction to {depth} drops {len(shallow)} shallower sample(s): "
                          f"{first_few(shallow)}", stacklevel=2)
        bt = _biom_subsample(self.to_biom(), depth, seed)
        seq = dict(zip(self.feature_ids, self.sequences))
        bt = bt.filter(lambda v, i, m: v.sum() > 0, axis="observation", inplace=False)
        order = [s for s in self.sample_ids if s in set(bt.ids())]
        t = SampleTable.from_biom(bt, seq)
        return t.subset(order)

    def trimmed(self, start: int, length: int) -> "SampleTable":
        """The table as another primer / read length would have given it: every read cut to
        ``length`` bases from ``start``; features whose cut reads coincide are merged (their
        counts summed), and the cut reads become the feature IDs, as in a Deblur table."""
        cut = [s[start:start + length] for s in self.sequences]
        ids = sorted(set(cut))
        col = {s: i for i, s in enumerate(ids)}
        merge = sp.csr_matrix((np.ones(len(cut)), (np.arange(len(cut)), [col[s] for s in cut])),
                              shape=(len(cut), len(ids)))
        return SampleTable.from_arrays(self.counts @ merge, self.sample_ids, ids)

    # ------------------------------------------------------------------ splits
    def split(self, validation_fraction: float, seed: int = 0, groups=None,
              sample_ids=None) -> tuple[list[str], list[str]]:
        """Seeded train/validation split of ``sample_ids`` (default: all samples).

        ``groups``: {sample_id: group} (e.g. host_subject_id).  Whole groups go to one side so
        repeated samples of one subject never straddle train and validation."""
        return split_ids(list(sample_ids or self.sample_ids), validation_fraction, seed, groups)


def merge_tables(tables, names=None) -> tuple[SampleTable, dict[str, str]]:
    """One table from several (e.g. one per study): features joined by ID (an ID shared by two
    tables must carry one sequence), sample IDs unique across them.  Returns (the table,
    {sample ID: the name of its table}); ``names`` default to 'table1', 'table2', ..."""
    tables = list(tables)
    names = [str(n) for n in names] if names else [f"table{k + 1}" for k in range(len(tables))]
    if len(names) != len(tables) or len(set(names)) != len(names):
        raise ValueError(f"give one distinct name per table; got {names} for {len(tables)}")
    if len(tables) == 1:
        return tables[0], {s: names[0] for s in tables[0].sample_ids}
    column, seq_of, study = {}, {}, {}
    for name, t in zip(names, tables):
        clash = [f"{f} ({name}: {s[:12]}..., {seq_of[f][1]}: {seq_of[f][0][:12]}...)"
                 for f, s in zip(t.feature_ids, t.sequences)
                 if f in seq_of and seq_of[f][0] != s]
        if clash:
            raise ValueError(f"{len(clash)} feature ID(s) carry different sequences in two "
                             f"tables: {first_few(clash, 3)}. Give every feature one sequence "
                             "(e.g. hash IDs of the sequences, as DADA2 does).")
        for f, s in zip(t.feature_ids, t.sequences):
            if f not in column:
                column[f] = len(column)
                seq_of[f] = (s, name)
        dup = [s for s in t.sample_ids if s in study]
        if dup:
            raise ValueError(f"{len(dup)} sample ID(s) of table {name!r} are also in table "
                             f"{study[dup[0]]!r}: {first_few(dup)}. Sample IDs must be unique "
                             "across the tables (prefix them with the study).")
        study.update({s: name for s in t.sample_ids})
    blocks = []
    for t in tables:
        coo = t.counts.tocoo()
        cols = np.array([column[f] for f in t.feature_ids], dtype=np.int64)[coo.col]
        blocks.append(sp.csr_matrix((coo.data, (coo.row, cols)),
                                    shape=(t.n_samples, len(column))))
    features = list(column)
    return (SampleTable(sp.vstack(blocks).tocsr(), [s for t in tables for s in t.sample_ids],
                        features, [seq_of[f][0] for f in features]), study)


def _biom_subsample(bt, depth: int, seed: int):
    """biom's subsample, seeded: newer biom takes ``seed``; 2.1.12 (Debian) draws from numpy's
    global RNG, which is seeded here and restored afterwards."""
    import inspect
    if "seed" in inspect.signature(bt.subsample).parameters:
        return bt.subsample(depth, axis="sample", by_id=False, seed=seed)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return bt.subsample(depth, axis="sample", by_id=False)
    finally:
        np.random.set_state(state)


def check_groups(ids, groups):
    """Every sample needs a validation group: say which have none."""
    missing = [s for s in ids if s not in groups]
    if missing:
        raise ValueError(f"{len(missing)} sample(s) have no validation group: "
                         f"{first_few(missing)}. Give every sample a value in the groups column.")


def split_ids(ids, validation_fraction: float, seed: int = 0, groups=None):
    ids = list(ids)
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    if validation_fraction == 0:
        return ids, []
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(len(ids))
        n_val = max(1, int(round(validation_fraction * len(ids))))
        if n_val >= len(ids):
            raise ValueError(f"Cannot hold out {validation_fraction:.0%} of {len(ids)} samples "
                             "and keep any for training; lower the validation fraction.")
        val = set(order[:n_val].tolist())
        return ([s for i, s in enumerate(ids) if i not in val],
                [s for i, s in enumerate(ids) if i in val])
    check_groups(ids, groups)
    uniq = sorted({str(groups[s]) for s in ids})
    if len(uniq) < 2:
        raise ValueError(f"A grouped split needs at least 2 groups; found {len(uniq)} "
                         f"({first_few(uniq)}). Give groups with at least two values, or "
                         "none (the samples are then split at random).")
    perm = [uniq[i] for i in rng.permutation(len(uniq))]
    target = validation_fraction * len(ids)
    size = {g: 0 for g in uniq}
    for s in ids:
        size[str(groups[s])] += 1
    val_groups, n = set(), 0
    for g in perm:
        if n >= target or len(val_groups) == len(uniq) - 1:
            break
        val_groups.add(g)
        n += size[g]
    return ([s for s in ids if str(groups[s]) not in val_groups],
            [s for s in ids if str(groups[s]) in val_groups])


def fold_ids(ids, k: int, seed: int = 0, groups=None) -> np.ndarray:
    """Fold (0..k-1) of each id for K-fold cross-fitting: whole groups per fold where
    ``groups`` is given, folds as equal in size as whole groups allow (each group, in a
    seeded random order, joins the currently smallest fold)."""
    ids = list(ids)
    units = [str(groups[s]) for s in ids] if groups is not None else list(range(len(ids)))
    uniq = sorted(set(units), key=str)
    if k < 2 or k > len(uniq):
        raise ValueError(f"{k} folds need between 2 and {len(uniq)} "
                         f"{'groups' if groups is not None else 'samples'}")
    size = {u: 0 for u in uniq}
    for u in units:
        size[u] += 1
    fill, fold_of = [0] * k, {}
    for i in np.random.default_rng(seed).permutation(len(uniq)):
        f = int(np.argmin(fill))
        fold_of[uniq[i]] = f
        fill[f] += size[uniq[i]]
    return np.array([fold_of[u] for u in units], dtype=np.int64)


def read_fasta(path) -> dict[str, str]:
    """{id: sequence} from a FASTA file (scikit-bio's reader; IDs up to the first space)."""
    import skbio
    out = {}
    for rec in skbio.io.read(str(path), format="fasta", constructor=skbio.DNA,
                             lowercase=True, validate=False):
        rid = rec.metadata["id"]
        if rid in out:
            raise ValueError(f"Duplicate sequence ID {rid!r} in {path}")
        out[rid] = str(rec)
    return out


def read_biom(path):
    """A biom.Table from a .biom file (HDF5 or JSON) or from the FeatureTable .qza that holds
    one (read as the zip archive it is: no qiime2 needed, e.g. on a GPU cluster node)."""
    import biom
    path = str(path)
    if path.endswith(".qza"):
        import io
        import zipfile

        import h5py
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data/feature-table.biom")]
            if not names:
                raise ValueError(f"{path} holds no feature table (data/feature-table.biom)")
            with h5py.File(io.BytesIO(z.read(names[0])), "r") as f:
                return biom.Table.from_hdf5(f)
    return biom.load_table(path)


def load_biom(path, sequences=None, **kw) -> SampleTable:
    return SampleTable.from_biom(read_biom(path), sequences, **kw)

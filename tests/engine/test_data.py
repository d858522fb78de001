import hashlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from aam_engine.data import (BatchBuilder, ReadNoise, SampleTable, align_distances,
                             check_distance_matrix,
                             read_distance_matrix, split_ids, tokenize)
from aam_engine.data.tokenizer import MASK, N, PAD, START, detokenize, mask_tokens

from ..conftest import qza_biom, shared_data

SEQ = "ACGTACGTACGTAC"


# ---------------------------------------------------------------- tokenizer
def test_tokenize_edge_cases():
    t = tokenize(["acgt", "ACGTNRY", "A" * 20, ""], max_bp=8)
    assert t.shape == (4, 9)
    assert (t[:, 0] == START).all()
    assert t[0, 1:5].tolist() == [1, 2, 3, 4] and (t[0, 5:] == PAD).all()   # lowercase, padded
    assert t[1, 5:8].tolist() == [N, N, N]                                   # N and IUPAC -> N
    assert t[2, 1:].tolist() == [1] * 8                                      # cut to max_bp
    assert t[3, 1:].tolist() == [PAD] * 8                                    # empty: START only


def test_tokenize_roundtrip_and_u():
    assert detokenize(tokenize(["ACGUN"], 10)) == ["ACGTN"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ACGTNacgtRYKM-", max_size=40), min_size=1, max_size=12),
       st.integers(1, 30))
def test_tokenize_property(seqs, max_bp):
    t = tokenize(seqs, max_bp)
    assert t.shape == (len(seqs), max_bp + 1)
    assert (t[:, 0] == START).all() and t.min() >= 0 and t[:, 1:].max() <= N
    lengths = (t[:, 1:] != PAD).sum(1)
    assert lengths.tolist() == [min(len(s), max_bp) for s in seqs]


def test_mask_tokens_never_masks_start_or_pad(rng):
    t = tokenize(["ACGT" * 10, "AC"], 50)
    for strategy in ("random", "span"):
        masked, targets = mask_tokens(t, 0.5, rng, strategy)
        hit = masked == MASK
        assert hit.any()
        assert not hit[:, 0].any() and not hit[t == PAD].any()
        assert (targets[hit] == t[hit]).all() and (targets[~hit] == -100).all()


# ---------------------------------------------------------------- table
def test_table_sequences_as_ids_and_hashed_ids():
    seqs = [SEQ, SEQ.replace("A", "G"), "ttttGGGGccccAAAA"]
    t = SampleTable.from_arrays(np.array([[1, 2, 0], [0, 3, 4]]), ["a", "b"], seqs)
    assert t.sequences[2] == "TTTTGGGGCCCCAAAA"
    ids = [hashlib.md5(s.encode()).hexdigest() for s in seqs]
    t2 = SampleTable.from_arrays(np.array([[1, 2, 0], [0, 3, 4]]), ["a", "b"], ids,
                                 dict(zip(ids, seqs)))
    assert t2.sequences == t.sequences


@pytest.mark.parametrize("counts,fids,seqs,match", [
    (np.zeros((2, 1)), [SEQ], None, "empty"),
    (np.array([[1.0], [0.0]]), [SEQ], None, "zero total count: 'b'"),
    (np.array([[1.0, 1.0]]), ["abc123", SEQ], None, "not nucleotide sequences: 'abc123'"),
    (np.array([[1.0, 1.0]]), ["f1", "f2"], {"f1": SEQ}, "no sequence.*'f2'"),
    (np.array([[1.0, 1.0]]), ["f1", "f2"], {"f1": SEQ, "f2": "ACGTXXACGTAC"}, "IUPAC.*f2"),
    (np.array([[1.0, 1.0]]), ["f1", "f2"], {"f1": SEQ, "f2": "ACG"}, "shorter than 10 bp.*f2"),
    (np.array([[1.0, 1.0]]), ["f1", "f2"], {"f1": SEQ, "f2": ""}, "shorter than 10 bp.*f2"),
    (np.array([[1.0, 1.0]]), [SEQ, SEQ], None, "Duplicate feature IDs"),
    (np.array([[-1.0, 1.0]]), ["f1", "f2"], {"f1": SEQ, "f2": SEQ}, "negative"),
])
def test_table_bad_input(counts, fids, seqs, match):
    sids = ["a", "b"][: counts.shape[0]]
    with pytest.raises(ValueError, match=match):
        SampleTable.from_arrays(counts, sids, fids, seqs)


def test_gaps_lowercase_accepted():
    t = SampleTable.from_arrays(np.array([[1.0]]), ["a"], ["f"], {"f": "ac-gt.acgtAC GT"})
    assert t.sequences == ["ACGTACGTACGT"]


def test_subset_rarefy(example):
    table, _, _ = example
    sub = table.subset(table.sample_ids[:5][::-1])
    assert sub.sample_ids == table.sample_ids[:5][::-1]
    assert (np.asarray(sub.counts.sum(0)).ravel() > 0).all()
    r1, r2 = table.rarefy(500, seed=1), table.rarefy(500, seed=1)
    assert (r1.depths() == 500).all()
    assert (r1.counts != r2.counts).nnz == 0
    r3 = table.rarefy(500, seed=2)
    assert r1.feature_ids != r3.feature_ids or (r1.counts != r3.counts).nnz > 0


def test_a_sample_reads_only_the_asvs_it_has(example):
    """Rarefying draws ASVs out of a sample; biom keeps them as stored zeros, which the batches
    once read as ASVs of the sample (the model saw the unrarefied ASV set)."""
    table, _, _ = example
    r = table.rarefy(100, seed=0)
    assert (r.counts.data > 0).all()
    dense = r.counts.toarray()
    builder = BatchBuilder(r, 4096, 40, "abundance")
    for row in range(r.n_samples):
        feats, counts = builder.select(row)
        assert (counts > 0).all() and set(feats) == set(np.flatnonzero(dense[row]))
    # a table handed in with stored zeros (a biom table another tool rarefied) reads the same
    import scipy.sparse as sp
    m = sp.csr_matrix(dense)
    m.data[::2] = 0
    t = SampleTable(m, r.sample_ids, r.feature_ids, r.sequences)
    assert (t.counts.toarray() == m.toarray()).all() and (t.counts.data > 0).all()


def test_split_reproducible_and_grouped(example):
    table, _, md = example
    a = table.split(0.25, seed=4)
    assert a == table.split(0.25, seed=4) and a != table.split(0.25, seed=5)
    assert len(a[1]) == 10 and not set(a[0]) & set(a[1])
    groups = md["subject"].to_dict()
    tr, va = table.split(0.3, seed=1, groups=groups)
    assert {groups[s] for s in tr}.isdisjoint({groups[s] for s in va})
    assert len(tr) + len(va) == table.n_samples and va
    with pytest.raises(ValueError, match="at least 2 groups"):
        split_ids(["a", "b"], 0.5, groups={"a": 1, "b": 1})


# ---------------------------------------------------------------- batches
def test_batch_dedup_reconstructs_slots(example, rng):
    table, dist, _ = example
    bb = BatchBuilder(table, token_limit=16, max_bp=60, distances=dist, selection="sample")
    rows = [3, 0, 7, 1]
    b = bb.build(rows, rng)
    full = tokenize(table.sequences, 60)
    for i, r in enumerate(rows):
        n = b.mask[i].sum()
        slot_feats = b.unique_features[b.slot_index[i, :n]]
        # every slot's tokens are the tokens of the feature it names
        assert (b.tokens[b.slot_index[i, :n]] == full[slot_feats]).all()
        row = table.counts[r].toarray().ravel()
        assert (b.counts[i, :n] == row[slot_feats]).all()
        assert n == min(16, (row > 0).sum())
        assert (np.diff(b.counts[i, :n]) <= 0).all()           # most abundant first
    assert len(set(b.unique_features)) == len(b.unique_features)
    assert np.allclose(b.distances, dist[np.ix_(rows, rows)])  # matrix in batch order
    assert b.dedup_ratio == b.mask.sum() / len(b.unique_features) >= 1


def test_abundance_selection_is_top_k(example):
    table, _, _ = example
    bb = BatchBuilder(table, token_limit=5, max_bp=60)
    feats, cnts = bb.select(0, None)
    row = table.counts[0].toarray().ravel()
    assert sorted(cnts.tolist(), reverse=True) == sorted(row, reverse=True)[:5]


def test_a_share_of_a_batch_draws_what_the_whole_batch_draws(example):
    """Keyed randomness: half a batch built alone keeps the same ASVs per sample and masks the
    same nucleotides per ASV as the whole batch (each distributed rank builds only its share)."""
    table, dist, _ = example
    bb = BatchBuilder(table, token_limit=8, max_bp=60, distances=dist, selection="sample",
                      noise=ReadNoise(mask_ratio=0.3))
    rows = np.array([5, 2, 9, 11, 0, 7])
    whole = bb.build(rows, (4, 1, 0), mask=True)
    assert (whole.mask.sum(1) == 8).all()           # every sample subsampled
    for part in (rows[:3], rows[3:]):
        share = bb.build(part, (4, 1, 0), mask=True, distance_rows=rows)
        np.testing.assert_array_equal(share.distances, whole.distances)
        assert set(share.unique_features) < set(whole.unique_features)
        for i, r in enumerate(part):
            k = list(rows).index(r)
            np.testing.assert_array_equal(share.unique_features[share.slot_index[i]],
                                          whole.unique_features[whole.slot_index[k]])
            np.testing.assert_array_equal(share.counts[i], whole.counts[k])
        at = np.searchsorted(whole.unique_features, share.unique_features)
        np.testing.assert_array_equal(share.tokens, whole.tokens[at])
        np.testing.assert_array_equal(share.nuc_targets, whole.nuc_targets[at])
    other = bb.build(rows, (4, 2, 0), mask=True)     # another step draws anew
    assert not np.array_equal(other.unique_features, whole.unique_features)


def test_keyed_sampling_follows_the_counts():
    counts = np.array([[60.0, 30, 10]])
    table = SampleTable.from_arrays(counts, ["s"], ["ACGTACGTACGT", "ACGTACGTACGA",
                                                    "ACGTACGTACGC"])
    bb = BatchBuilder(table, token_limit=1, max_bp=12, selection="sample")
    picks = np.bincount([bb.select(0, (k,))[0][0] for k in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(picks, [0.6, 0.3, 0.1], atol=0.03)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 39), min_size=1, max_size=12), st.integers(1, 40), st.integers(0, 99))
def test_batch_builder_property(example, rows, limit, seed):
    table, _, _ = example
    bb = BatchBuilder(table, token_limit=limit, max_bp=60, selection="sample",
                      noise=ReadNoise(mask_ratio=0.2))
    b = bb.build(rows, np.random.default_rng(seed), mask=True)
    assert b.slot_index.shape == b.mask.shape == b.counts.shape
    assert (b.mask.sum(1) >= 1).all() and (b.mask.sum(1) <= limit).all()
    assert (b.counts[~b.mask] == 0).all() and (b.counts[b.mask] > 0).all()
    assert b.slot_index.max() < len(b.unique_features)
    assert b.nuc_targets.shape == b.tokens.shape


# ---------------------------------------------------------------- distances
def _dm(ids, seed=0):
    x = np.random.default_rng(seed).random((len(ids), 3))
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


@pytest.mark.parametrize("fmt", ["tsv", "npz", "npy", "h5"])
def test_read_distance_formats(tmp_path, fmt):
    import h5py
    import skbio
    ids = ["s1", "s2", "s3", "s4"]
    m = _dm(ids)
    p = tmp_path / f"d.{fmt}"
    if fmt == "tsv":
        skbio.DistanceMatrix(m, ids).write(str(p))
    elif fmt == "npz":
        np.savez(p, ids=np.array(ids), matrix=m)
    elif fmt == "npy":
        np.save(p, m)
        p.with_suffix(".ids").write_text("\n".join(ids))
    else:
        with h5py.File(p, "w") as f:
            f["matrix"] = m
            f["order"] = np.array([i.encode() for i in ids])
    rids, rm = read_distance_matrix(p)
    assert rids == ids and np.allclose(rm, m)
    sub = align_distances(rids, rm, ["s3", "s1"])
    assert np.allclose(sub, m[np.ix_([2, 0], [2, 0])])
    with pytest.raises(ValueError, match="not in the distance matrix: 'zz'"):
        align_distances(rids, rm, ["s1", "zz"])


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m.__setitem__((0, 1), np.nan), "NaN"),
    (lambda m: m.__setitem__((0, 1), m[0, 1] + 1), "not symmetric"),
    (lambda m: m.__setitem__((0, 0), 1.0), "diagonal"),
    (lambda m: (m.__setitem__((0, 2), -0.5), m.__setitem__((2, 0), -0.5)),
     r"negative distances \(e.g. d\('a', 'c'\) = -0.5; rows 'a', 'c'"),
])
def test_bad_distance_matrix(mutate, match):
    m = _dm("abc")
    mutate(m)
    with pytest.raises(ValueError, match=match):
        check_distance_matrix(list("abc"), m)


def test_fit_refuses_negative_distances_given_in_memory(example):
    """The plugin hands matrices over in memory: they are checked like files."""
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    table = example[0]
    ids = table.sample_ids
    m = _dm(ids)
    m[1, 3] = m[3, 1] = -0.2
    with pytest.raises(ValueError, match=f"negative distances.*{ids[1]}"):
        api.pretrain(table, ModelConfig(embedding_dim=8, attention_heads=2,
                                          attention_layers=1, token_limit=8),
                     TrainConfig(epochs=1, progress=False), distances=(ids, m))


def test_unifrac_from_tree_matches_library(example):
    table, dist, _ = example
    assert dist.shape == (table.n_samples,) * 2
    assert np.allclose(dist, dist.T) and (dist[~np.eye(len(dist), dtype=bool)] > 0).all()


def test_real_ibd_dedup_ratio():
    table = SampleTable.from_biom(qza_biom(shared_data("ibd-2538") / "table.qza"))
    bb = BatchBuilder(table, token_limit=1024, max_bp=100)
    rng = np.random.default_rng(0)
    for bs in (8, 32):
        ratios = [b.dedup_ratio for b in bb.batches(np.arange(table.n_samples), bs, rng, shuffle=True,
                                                    drop_last=True)]
        # shared ASVs across the samples of a batch: real data always dedups
        assert np.mean(ratios) > 1.5, (bs, np.mean(ratios))

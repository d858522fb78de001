"""Per-batch UniFrac (memory linear in samples) equals the `unifrac` library's whole matrix."""
import warnings

import numpy as np
import pytest

from aam_engine.data import (BatchBuilder, MatrixDistances, batch_unifrac, compute_unifrac,
                             load_biom)
from aam_engine.data.distances import UNIFRAC_METRICS

from ..conftest import shared_data

REAL = {"ibd-2538": ("table.qza", "tree-pruned.nwk"), "sleep-apnea": ("table.biom", "tree.nwk")}


@pytest.mark.parametrize("metric", UNIFRAC_METRICS)
def test_batches_equal_the_library_on_the_example(example_paths, metric):
    from aam_engine.data import read_fasta
    table = load_biom(example_paths["table"], read_fasta(example_paths["sequences"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1, full = compute_unifrac(table, example_paths["tree"], metric)
        t2, per_batch = batch_unifrac(table, example_paths["tree"], metric)
    assert t1.feature_ids == t2.feature_ids and len(per_batch) == t2.n_samples
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows = rng.choice(t2.n_samples, 9, replace=False)
        np.testing.assert_allclose(per_batch.block(rows), full[np.ix_(rows, rows)], atol=1e-6)


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("metric", UNIFRAC_METRICS)
def test_batches_equal_the_library_on_real_data(name, metric):
    d = shared_data(name)
    table_file, tree_file = REAL[name]
    table = load_biom(d / table_file)
    table = table.subset(table.sample_ids[:60])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1, full = compute_unifrac(table, d / tree_file, metric)
        _, per_batch = batch_unifrac(table, d / tree_file, metric)
    rows = np.arange(t1.n_samples)
    np.testing.assert_allclose(per_batch.block(rows), full, atol=1e-6)
    sub = rows[::7]
    np.testing.assert_allclose(per_batch.block(sub), full[np.ix_(sub, sub)], atol=1e-6)


def test_training_from_a_tree_never_builds_the_whole_matrix(example_paths, monkeypatch):
    """api.pretrain with a tree trains on per-batch UniFrac: the library's all-pairs function
    is never called, and the builder holds a BatchUniFrac."""
    import unifrac
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from aam_engine.data import read_fasta
    from aam_engine.data.unifrac_batch import BatchUniFrac
    for m in UNIFRAC_METRICS:
        monkeypatch.setattr(unifrac, m, lambda *a, **k: pytest.fail("n x n UniFrac computed"))
    table = load_biom(example_paths["table"], read_fasta(example_paths["sequences"]))
    from aam_engine.inputs import resolve_distances
    _, src = resolve_distances(table, tree=example_paths["tree"])
    assert isinstance(src, BatchUniFrac)
    enc = api.pretrain(table, ModelConfig(embedding_dim=8, attention_heads=2,
                                          attention_layers=1, token_limit=16),
                       TrainConfig(epochs=1, progress=False), tree=example_paths["tree"])
    assert enc.history[-1]["val_unifrac_r2"] == enc.history[-1]["val_unifrac_r2"]  # not NaN


def test_matrix_and_batch_sources_build_the_same_batches(example_paths):
    from aam_engine.data import read_fasta
    table = load_biom(example_paths["table"], read_fasta(example_paths["sequences"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, full = compute_unifrac(table, example_paths["tree"])
        _, src = batch_unifrac(table, example_paths["tree"])
    rows = np.array([3, 0, 7, 5])
    a = BatchBuilder(table, 16, 60, distances=MatrixDistances(full)).build(rows)
    b = BatchBuilder(table, 16, 60, distances=src).build(rows)
    np.testing.assert_allclose(a.distances, b.distances, atol=1e-6)

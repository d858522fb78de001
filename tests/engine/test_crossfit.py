"""The heads as a component of the stack (stack='heads'): K folds by group, head k learning
only outside its own fold and the fold it stops on, out-of-fold predictions, averaged
predictions."""

import numpy as np
import pytest

from aam_engine import api
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data.table import fold_ids
from aam_engine.io import read_model_dir, write_model_dir

SIZE = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=32)


def test_folds_hold_whole_groups_and_are_balanced():
    ids = [f"s{i}" for i in range(60)]
    groups = {s: f"g{i % 13}" for i, s in enumerate(ids)}
    folds = fold_ids(ids, 4, seed=1, groups=groups)
    assert set(folds) == {0, 1, 2, 3}
    for g in set(groups.values()):            # a group never straddles two folds
        assert len({f for s, f in zip(ids, folds) if groups[s] == g}) == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 5      # at most about one group apart
    assert (fold_ids(ids, 4, seed=1, groups=groups) == folds).all()
    assert not (fold_ids(ids, 4, seed=2, groups=groups) == folds).all()
    plain = fold_ids(ids, 5, seed=0)
    assert sorted(np.bincount(plain)) == [12] * 5
    with pytest.raises(ValueError, match="between 2 and 13 groups"):
        fold_ids(ids, 14, groups=groups)


@pytest.fixture(scope="module")
def crossfit(example):
    table, dist, md = example
    enc = api.pretrain(table, ModelConfig(**SIZE), TrainConfig(epochs=2, progress=False),
                       distances=(table.sample_ids, dist))
    groups = md["subject"].to_dict()
    model = api.fit(table, md["age"].astype(float).to_dict(), "regression",
                    ModelConfig(**SIZE, ensemble=3, stack="heads"),
                    TrainConfig(epochs=6, progress=False), encoder=enc, groups=groups)
    return table, md, enc, groups, model


def test_each_sample_is_validated_by_the_head_that_never_trained_on_it(crossfit):
    table, md, enc, groups, model = crossfit
    assert model.model_config.ensemble == 3 and model.extra["cross_fitted_heads"] == 3
    assert model.extra["stack"]["weights"] == {"heads": 1.0}
    val = model.extra["validation"]
    assert sorted(val["sample_ids"]) == sorted(table.sample_ids)   # every sample, once
    inf = api.inference_setup(model, table, "cpu")
    per_head = api.decode_regression(model.target, api.run_model(
        inf.model, inf.builder, np.arange(table.n_samples), inf.device, key="head_predictions"))
    folds = fold_ids(table.sample_ids, 3, model.train_config.random_seed, groups)
    oof = dict(zip(table.sample_ids, per_head[np.arange(table.n_samples), folds]))
    assert np.allclose(val["predicted"], [oof[s] for s in val["sample_ids"]], atol=1e-4)
    # the saved model predicts the heads' mean; the heads differ
    _, pred = api.predict(model, table)
    assert np.allclose(pred, per_head.mean(1), atol=1e-4)
    assert np.ptp(per_head, axis=1).max() > 1e-3


def test_a_head_gets_no_gradient_from_its_own_fold_or_the_one_it_stops_on(example):
    """The loss of a batch that holds only fold-0 samples moves head 1 only: never head 0
    (which scores fold 0) nor head 2 (which stops early on fold 0)."""
    from aam_engine.data import BatchBuilder
    from aam_engine.models import AAM
    from aam_engine.training import TaskData, Trainer
    table, dist, md = example
    cfg = ModelConfig(task="regression", max_bp=60, ensemble=3, stack="heads", **SIZE)
    y = md["age"].astype(float).to_numpy(np.float32)
    folds = fold_ids(table.sample_ids, 3, 0, md["subject"].to_dict())
    rows = np.arange(table.n_samples)
    trainer = Trainer(AAM(cfg), TaskData(BatchBuilder(table, 32, 60, targets=(y - y.mean()) / y.std()),
                                         rows, rows, "regression", folds=folds),
                      TrainConfig(progress=False))
    t = trainer._to_device(trainer.data.builder.build(rows[folds == 0][:6]))
    out, total, _ = trainer._run(t, train=True)
    total.backward()
    grad = lambda k: sum(float(p.grad.abs().sum()) for p in trainer.model.heads[k].parameters()
                         if p.grad is not None)
    assert grad(0) == 0 and grad(1) > 0 and grad(2) == 0
    # each head is monitored on its stopping fold; every row is scored by its own fold's head
    ev = trainer.evaluate(rows)
    assert ev["val_target"] > 0 and len(ev["val_head_targets"]) == 3


def test_a_model_trained_whole_has_one_head(example):
    table, dist, md = example
    model = api.fit(table, md["age"].astype(float).to_dict(), "regression",
                    ModelConfig(**SIZE, ensemble=4, freeze_base=False),
                    TrainConfig(epochs=1, progress=False))
    assert model.model_config.ensemble == 1 and model.extra["cross_fitted_heads"] == 0
    assert len(model.extra["validation_samples"]) < table.n_samples   # a validation split



def test_heads_read_the_kmer_spectrum_only_for_samples_not_grouped(crossfit, tmp_path):
    """With groups (a model for new subjects) the heads read the k-mer spectrum only with
    head_spectrum='always'; without groups they read it, and the model reads back from its
    files predicting the same."""
    table, md, enc, groups, grouped = crossfit
    assert grouped.model_config.head_kmer_size == 0
    fit = lambda groups=None, **kw: api.fit(
        table, md["age"].astype(float).to_dict(), "regression",
        ModelConfig(**SIZE, ensemble=3, stack="heads", **kw),
        TrainConfig(epochs=2, progress=False), encoder=enc, groups=groups)
    assert fit(groups, head_spectrum="always").model_config.head_kmer_size == 6
    model = fit()
    assert model.model_config.head_kmer_size == 6
    write_model_dir(model, tmp_path / "m")
    assert np.allclose(api.predict(read_model_dir(tmp_path / "m"), table)[1],
                       api.predict(model, table)[1], atol=1e-5)


def test_set_sketch_belongs_to_the_encoder_and_survives_files(example, tmp_path):
    """set_sketch: a head fitted on the encoder embeds as the encoder does, and a model file
    read back embeds the same (the sketch has no weights, only its scale: a lost setting or
    scale would change every distance)."""
    table, dist, md = example
    enc = api.pretrain(table, ModelConfig(**SIZE, set_sketch=128),
                       TrainConfig(epochs=1, progress=False), distances=(table.sample_ids, dist))
    model = api.fit(table, md["age"].astype(float).to_dict(), "regression",
                    ModelConfig(**SIZE, ensemble=2), TrainConfig(epochs=1, progress=False),
                    encoder=enc)
    assert model.model_config.set_sketch == 128
    emb = api.embed(model, table)[1]
    assert emb.shape[1] == 16 + 128
    assert np.allclose(emb, api.embed(enc, table)[1], atol=1e-5)
    write_model_dir(model, tmp_path / "m")
    assert np.allclose(api.embed(read_model_dir(tmp_path / "m"), table)[1], emb, atol=1e-5)


def test_heads_on_a_frozen_encoder_train_on_trimmed_reads_with_read_trim(crossfit, monkeypatch):
    """read_trim on a frozen encoder: the trainer encodes every feature's read as it is
    (view 0, the cache that validation and prediction read) and TRIM_VIEWS - 1 trims of it;
    each training batch reads one view per ASV.  Keyed: the same fit twice is the same model;
    the views change what the heads learn."""
    from aam_engine.training import trainer as T
    table, md, enc, groups, _ = crossfit
    seen = {}
    pick = T.Trainer._pick_views

    def spy(self, batch, t, key):
        cache, t2 = pick(self, batch, t, key)
        seen.setdefault("views", self.trim_views)
        seen.setdefault("cache", self.asv_cache)
        seen.setdefault("rows", []).append(cache.shape[0] == len(batch.unique_features))
        return cache, t2
    monkeypatch.setattr(T.Trainer, "_pick_views", spy)
    fit = lambda trim: api.fit(table, md["age"].astype(float).to_dict(), "regression",
                               ModelConfig(**SIZE, ensemble=3, stack="heads"),
                               TrainConfig(epochs=2, progress=False, read_trim=trim),
                               encoder=enc, groups=groups)
    a, b, plain = fit(10), fit(10), fit(0)
    views, cache = seen["views"], seen["cache"]
    assert views.shape[:2] == (T.TRIM_VIEWS, table.n_features) and all(seen["rows"])
    assert (views[0] == cache).all()
    moved = [(views[v] - cache).norm(dim=1) for v in range(1, T.TRIM_VIEWS)]
    assert all((m > 1e-4).float().mean() > 0.5 for m in moved)       # most reads were cut
    pa, pb, pp = (api.predict(m, table)[1] for m in (a, b, plain))
    np.testing.assert_array_equal(pa, pb)
    assert not np.allclose(pa, pp)

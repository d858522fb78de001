import warnings

import numpy as np
import pytest
import torch

from aam_engine import api
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data import BatchBuilder, SampleTable
from aam_engine.io import read_model_dir, write_model_dir
from aam_engine.models import AAM
from aam_engine.training import TaskData, Trainer

# the network's own tests: predictors that are their heads (the stack: test_stack.py)
MC = dict(embedding_dim=16, attention_heads=2, attention_layers=1, max_bp=60, token_limit=24,
          dropout=0.0, stack="heads")


def tc(**kw):
    base = dict(epochs=2, batch_size=8, learning_rate=3e-3, warmup_steps=0, progress=False,
                validation_fraction=0.2, random_seed=1)
    return TrainConfig(**{**base, **kw})


def mc(**kw):
    return ModelConfig(**{**MC, **kw})


def test_tiny_model_overfits_few_samples(example):
    """Regression + UniFrac on 6 samples: the training loss falls by more than 90%."""
    table, dist, md = example
    sub = table.subset(table.sample_ids[:6])
    idx = table.index_of(sub.sample_ids)
    y = md.loc[sub.sample_ids, "age"].to_numpy(np.float32)
    y = (y - y.mean()) / y.std()
    bb = BatchBuilder(sub, 24, 60, distances=dist[np.ix_(idx, idx)], targets=y)
    torch.manual_seed(0)
    model = AAM(mc(task="regression", dropout=0.0, freeze_base=False))   # every weight trains
    cfg = tc(epochs=150, batch_size=6, learning_rate=3e-3, nuc_penalty=0, patience=0,
             scheduler="constant", weight_decay=0.0)
    hist = Trainer(model, TaskData(bb, np.arange(6), np.array([], int), "regression"), cfg).fit()
    first, last = hist[0]["train_loss"], min(h["train_loss"] for h in hist[-5:])
    assert last < 0.1 * first, (first, last)


def test_same_seed_same_metrics(example):
    table, dist, _ = example
    runs = [api.pretrain(table, mc(), tc(), distances=(table.sample_ids, dist)).history
            for _ in range(2)]
    assert runs[0] == [{**h, "seconds": runs[0][i]["seconds"]} for i, h in enumerate(runs[1])]
    other = api.pretrain(table, mc(), tc(random_seed=2), distances=(table.sample_ids, dist)).history
    assert other[-1]["train_loss"] != runs[0][-1]["train_loss"]


def _strip(hist):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in hist]


def test_resume_matches_uninterrupted(example, tmp_path, monkeypatch):
    table, dist, md = example
    targets = md["age"].to_dict()
    opts = lambda **kw: api.Options(distances=(table.sample_ids, dist), **kw)
    full = api.fit(table, targets, "regression", mc(dropout=0.1), tc(epochs=4), options=opts())
    ck = tmp_path / "ck"
    real_epoch = Trainer.train_epoch

    def crash_in_third_epoch(self, epoch, bar=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_epoch(self, epoch, bar)
    monkeypatch.setattr(Trainer, "train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        api.fit(table, targets, "regression", mc(dropout=0.1), tc(epochs=4),
                options=opts(checkpoint_dir=ck))
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    # no encoder + distances: fit pretrains one first; the crash hit that stage
    assert (ck / "pretrain" / "last.pt").exists() and not (ck / "head").exists()
    # the same command again resumes at epoch 3 from the last checkpoint
    resumed = api.fit(table, targets, "regression", mc(dropout=0.1), tc(epochs=4),
                      options=opts(checkpoint_dir=ck))
    assert _strip(resumed.history) == _strip(full.history)
    for k, v in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], v)


def test_save_load_roundtrip_identical_predictions(example, tmp_path):
    table, _, md = example
    clf = api.fit(table, md["group"].to_dict(), "classification", mc(), tc(epochs=1),
                  options=api.Options(covariates={"subject": md["subject"].to_dict()}))
    write_model_dir(clf, tmp_path / "m")
    back = read_model_dir(tmp_path / "m")
    cov = {"subject": md["subject"].to_dict()}
    a, b = api.predict(clf, table, cov), api.predict(back, table, cov)
    assert a[1] == b[1] and np.array_equal(a[2], b[2])
    assert back.target["classes"] == ["gut", "oral"] and back.covariates["subject"][0] == "subject00"
    assert (tmp_path / "m" / "history.tsv").read_text().startswith("epoch\t")


def test_a_saved_model_reads_other_trims_as_its_training_reads(example, tmp_path):
    """The model keeps its training reads; a table of the same samples read one base later
    and ten shorter (new feature IDs, other sequences) predicts as the original does, and,
    read as it is, does not."""
    from aam_engine.data.reads import known_reads
    table, _, md = example
    clf = api.fit(table, md["group"].to_dict(), "classification", mc(), tc(epochs=1))
    write_model_dir(clf, tmp_path / "m")
    back = read_model_dir(tmp_path / "m")
    assert back.extra["reads"] == known_reads(table)
    retrimmed = table.trimmed(1, 49)
    assert retrimmed.n_features == table.n_features       # no two reads merge
    assert not set(retrimmed.feature_ids) & set(table.feature_ids)
    # the original in the re-trimmed table's feature order (equal counts are read in
    # feature order, so the order is part of what a sample reads)
    order = np.argsort([s[1:50] for s in table.sequences])
    same = SampleTable(table.counts[:, order], table.sample_ids,
                       [table.feature_ids[j] for j in order], [table.sequences[j] for j in order])
    probs = lambda t, **kw: api.predict(back, t, **kw)[2]
    assert np.allclose(probs(retrimmed), probs(same), atol=1e-6)
    assert not np.allclose(probs(retrimmed, match_reads=False), probs(same), atol=1e-3)


def test_nan_guard_skips_then_stops(example):
    table, dist, _ = example
    bb = BatchBuilder(table, 24, 60, distances=dist)
    model = AAM(mc())
    trainer = Trainer(model, TaskData(bb, np.arange(16), np.array([], int), "encoder"),
                      tc(epochs=1, max_nan_steps=3, nuc_penalty=0))
    calls = {"n": 0}
    orig = trainer._losses

    def poisoned(out, t):   # the first batch gets a NaN loss, later ones are fine
        total, parts = orig(out, t)
        calls["n"] += 1
        return (total * float("nan"), parts) if calls["n"] == 1 else (total, parts)
    trainer._losses = poisoned
    with pytest.warns(UserWarning, match="skipping a training step"):
        trainer.fit()
    assert trainer.state["skipped_steps"] == 1
    trainer2 = Trainer(AAM(mc()), TaskData(bb, np.arange(16), np.array([], int), "encoder"),
                       tc(epochs=1, max_nan_steps=2, nuc_penalty=0))
    trainer2._losses = lambda out, t: (orig(out, t)[0] * float("inf"), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FloatingPointError, match="Lower the learning rate"):
            trainer2.fit()


def test_early_stopping_and_best_weights(example):
    table, dist, _ = example
    enc = api.pretrain(table, mc(), tc(epochs=30, patience=2, learning_rate=0.05, scheduler="constant"),
                       distances=(table.sample_ids, dist))
    assert len(enc.history) < 30
    best = min(h["val_loss"] for h in enc.history)
    assert [h["best"] for h in enc.history if h["val_loss"] == best][0] == 1


def test_freeze_base_trains_only_head(example):
    table, dist, md = example
    enc = api.pretrain(table, mc(), tc(epochs=1), distances=(table.sample_ids, dist))
    reg = api.fit(table, md["age"].to_dict(), "regression", mc(freeze_base=True),
                  tc(epochs=2), encoder=enc)
    for k, v in enc.state_dict.items():
        torch.testing.assert_close(reg.state_dict[k], v)   # encoder untouched
    assert np.isfinite(reg.history[-1]["val_mae"])


def test_schedulers_optimizers_and_accumulation(example):
    table, dist, _ = example
    for sched, opt in (("cosine_restarts", "adam"), ("plateau", "sgd"), ("onecycle", "adamw")):
        h = api.pretrain(table, mc(), tc(epochs=2, scheduler=sched, optimizer=opt,
                                         gradient_accumulation_steps=2),
                         distances=(table.sample_ids, dist)).history
        assert np.isfinite(h[-1]["train_loss"])


def test_bf16_training_on_cpu(example):
    table, dist, _ = example
    enc = api.pretrain(table, mc(), tc(epochs=1, precision="bf16"),
                       distances=(table.sample_ids, dist))
    assert enc.extra["precision"] == "bf16" and np.isfinite(enc.history[-1]["train_loss"])


@pytest.mark.parametrize("targets,task,match", [
    ({}, "regression", "no target value"),
    ("one", "classification", "at least 2 classes"),
    ("text", "regression", "numeric targets"),
])
def test_api_bad_targets(example, targets, task, match):
    table = example[0]
    if targets == "one":
        targets = {s: "x" for s in table.sample_ids}
    elif targets == "text":
        targets = {s: "abc" for s in table.sample_ids}
    with pytest.raises(ValueError, match=match):
        api.fit(table, targets, task, mc(), tc(epochs=1))


def test_missing_targets_ignored_when_asked(example):
    table, _, md = example
    targets = md["age"].to_dict()
    for s in table.sample_ids[:5]:
        del targets[s]
    reg = api.fit(table, targets, "regression", mc(), tc(epochs=1),
                  options=api.Options(missing_samples="ignore"))
    assert reg.extra["n_samples"] == table.n_samples - 5


def test_encoder_cannot_predict(example):
    table, dist, _ = example
    enc = api.pretrain(table, mc(), tc(epochs=1), distances=(table.sample_ids, dist))
    with pytest.raises(ValueError, match="encoder.*no prediction head"):
        api.predict(enc, table)


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from aam_engine.runtime import resolve_device
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_encoder_sizes_win_and_the_difference_is_named(example):
    table, dist, _ = example
    enc = api.pretrain(table, mc(), tc(epochs=1), distances=(table.sample_ids, dist))
    targets = dict(zip(table.sample_ids, np.arange(table.n_samples, dtype=float)))
    with pytest.warns(UserWarning, match=r"embedding_dim 32 \(encoder: 16\)"):
        model = api.fit(table, targets, "regression", mc(embedding_dim=32), tc(epochs=1),
                        encoder=enc)
    assert model.model_config.embedding_dim == 16


def test_configs_validate_every_declared_range_and_read_old_names():
    from aam_engine.config import TrainConfig as T
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        T(batch_size=1).validate()
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        T(learning_rate=0).validate()
    with pytest.raises(ValueError, match="precision must be one of"):
        T(precision="fp8").validate()
    assert T.from_dict({"seed": 4}).random_seed == 4      # model directories written before


def test_preset_fills_sizes_left_at_defaults_and_explicit_values_win(example):
    from aam_engine.config import PRESETS, apply_preset
    m, t = apply_preset(ModelConfig(preset="cpu", attention_layers=3), TrainConfig())
    cpu = PRESETS["cpu"]
    assert (m.embedding_dim, m.token_limit, t.batch_size) == (
        cpu["embedding_dim"], cpu["token_limit"], cpu["batch_size"])
    assert m.attention_layers == 3                         # given explicitly: kept
    table, dist, _ = example
    enc = api.pretrain(table, ModelConfig(preset="cpu", max_bp=60, attention_layers=1),
                       tc(epochs=1), distances=(table.sample_ids, dist))
    assert enc.model_config.embedding_dim == cpu["embedding_dim"]
    assert enc.train_config.batch_size == tc().batch_size  # 8, given: kept


def test_the_sketch_changes_no_learning_and_its_mix_fits_the_training_pairs(example):
    """set_sketch: the encoder trains exactly as without it (same seed: the same learned
    embedding, the same history), and after training the offset and the two parts' scales are
    fitted to the training pairs: at least as close to UniFrac there as the learned part
    alone, which the mix can reproduce."""
    table, dist, _ = example
    run = lambda k: api.pretrain(table, mc(set_sketch=k), tc(epochs=3),
                                 distances=(table.sample_ids, dist))
    plain, sketched = run(0), run(256)
    mix = sketched.extra["sketch_mix"]
    assert "sketch_mix" not in plain.extra
    assert [h["val_pair"] for h in sketched.history] == [h["val_pair"] for h in plain.history]
    emb = api.embed(sketched, table)[1]
    assert emb.shape[1] == 16 + 256
    np.testing.assert_allclose(emb[:, :16] / mix["learned_scale"], api.embed(plain, table)[1],
                               rtol=1e-4, atol=1e-5)
    assert mix["r2_mixed"] >= mix["r2_learned_alone"] - 0.01
    assert mix["sketch_scale"] > 0 and mix["offset"] >= 0
    assert api.distance_offset(sketched) == pytest.approx(mix["offset"], abs=1e-6)


def test_pretraining_continues_from_an_encoder_with_its_weights_and_sizes(example):
    """start=: pretraining on a new table begins at the given encoder (its sizes win over
    the settings, with a warning naming them), not at random weights; a fit given a tree and
    pretrain_from='shipped' (the default) does this from the shipped encoder."""
    import torch
    from aam_engine import pretrained
    table, dist, md = example
    shipped = pretrained.default_encoder()
    with pytest.warns(UserWarning, match="embedding_dim 16"):
        still = api.pretrain(table, mc(), tc(epochs=1, learning_rate=1e-12),
                             distances=(table.sample_ids, dist), start=shipped)
    assert still.model_config.embedding_dim == shipped.model_config.embedding_dim
    assert still.extra["continued_from_an_encoder"]
    for k, v in shipped.state_dict.items():
        if k.startswith("asv."):
            torch.testing.assert_close(still.state_dict[k], v, msg=k)
    fitted = api.fit(table, md["age"].to_dict(), "regression",
                     ModelConfig(ensemble=3), tc(epochs=1),        # pretrain_from's default
                     options=api.Options(distances=(table.sample_ids, dist)))
    assert fitted.model_config.embedding_dim == shipped.model_config.embedding_dim


def test_a_classifier_given_distances_pretrains_its_encoder_first(example):
    """fit-classifier given a distance matrix (or tree) and no encoder: an encoder is
    pretrained on the table, then the stack reads it (a classifier's settings must not leak
    into the encoder's)."""
    table, dist, md = example
    clf = api.fit(table, md["group"].to_dict(), "classification", mc(stack=ModelConfig().stack,
                                                                     ensemble=3,
                                                                     pretrain_from="scratch"),
                  tc(epochs=1), options=api.Options(distances=(table.sample_ids, dist)))
    assert clf.task == "classification" and clf.model_config.n_outputs == 2
    assert clf.model_config.embedding_dim == MC["embedding_dim"]      # its own encoder
    assert clf.extra["stack"]["samples"] == table.n_samples

"""The default fit: a stack of components cross-fitted on the same grouped folds, weighed on
their out-of-fold predictions, saved without pickle, predicting the same from its files."""
import dataclasses

import numpy as np
import pytest

from aam_engine import api
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.fit.estimators import as_forest, fit_forest, fit_linear
from aam_engine.fit.report import word
from aam_engine.fit.stack import cross_fitted_stack, stack_weights
from aam_engine.io import read_model_dir, write_model_dir
from aam_engine.learners import Forest, Linear
from aam_engine.metrics import group_interval

TC = dict(progress=False, random_seed=0)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 12))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int), np.digitize(X[:, 2], [-0.5, 0.5]), \
        2 * X[:, 3] + rng.normal(size=120)


def test_learners_predict_in_numpy_what_scikit_learn_predicts(xy):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    X, y2, y3, v = xy
    for y, n in ((y2, 2), (y3, 3)):
        rf = RandomForestClassifier(20, random_state=0).fit(X, y)
        np.testing.assert_allclose(as_forest(rf, n).predict(X), rf.predict_proba(X))
        lin = fit_linear(X, y, n, seed=0)
        assert (lin.predict(X).argmax(1) == y).mean() > 0.8
        back = Linear.from_arrays(lin.arrays(), n)
        np.testing.assert_array_equal(back.predict(X), lin.predict(X))
    rr = RandomForestRegressor(20, random_state=0).fit(X, v)
    np.testing.assert_allclose(as_forest(rr, 0).predict(X), rr.predict(X))
    f = fit_forest(X, v, 0)
    np.testing.assert_array_equal(Forest.from_arrays(f.arrays(), 0).predict(X), f.predict(X))


def test_a_learner_that_saw_one_class_predicts_it_among_all_classes(xy):
    X, _, _, _ = xy
    for fit in (fit_linear, fit_forest):
        p = fit(X[:10], np.full(10, 2), 3).predict(X[:4])
        np.testing.assert_array_equal(p, np.tile([0.0, 0.0, 1.0], (4, 1)))


def test_stack_weights_are_a_mixture_and_the_stack_oof_never_sees_its_fold(xy):
    X, y, _, _ = xy
    onehot = np.eye(2)[y]
    good, noise = 0.9 * onehot + 0.05, np.full((len(y), 2), 0.5)
    w = stack_weights([good, noise], y, 2)
    assert w.sum() == pytest.approx(1) and (w >= 0).all() and w[0] > 0.9
    folds = np.arange(len(y)) % 4
    P = np.array([good, noise])
    oof = cross_fitted_stack(P, y, 2, folds)
    for k in range(4):          # fold k weighted by weights fitted without fold k
        wk = stack_weights(P[:, folds != k], y[folds != k], 2)
        np.testing.assert_allclose(oof[folds == k], np.tensordot(wk, P[:, folds == k], 1))


def test_intervals_resample_groups_and_beats_needs_an_interval_above_zero():
    y = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 4)
    groups = np.repeat(list("abcde"), 4)
    lo, hi = group_interval(lambda r: y[r].mean(), groups, n_resamples=200)
    assert 1 <= lo < 3 < hi <= 5
    assert np.isnan(group_interval(lambda r: y[r].mean(), groups[:8])).all()   # 2 groups
    assert word({"interval": [0.01, 0.2]}) == "beats"
    assert word({"interval": [-0.01, 0.2]}) == "matches"
    assert word({"interval": [-0.3, -0.2]}) == "trails"


@pytest.fixture(scope="module")
def stacked(example):
    """A classifier with the default stack on the shipped encoder, grouped by subject."""
    table, dist, md = example
    groups = md["subject"].astype(str).to_dict()
    model = api.fit(table, md["group"].astype(str).to_dict(), "classification",
                    ModelConfig(ensemble=3), TrainConfig(**TC), groups=groups)
    return table, md, groups, model


def test_the_default_fit_is_a_stack_with_an_honest_report(stacked):
    table, md, groups, model = stacked
    rep, stack = model.extra["stack"], model.stack
    assert [c.name for c in stack.components] == model.model_config.stack.split(",")
    assert all(len(c.models) == 1 for c in stack.components)      # each refitted on all
    assert stack.weights.sum() == pytest.approx(1) and (stack.weights >= 0).all()
    # the baselines a user would fit are scored on the same folds, outside the stack
    assert "linear:clr" in rep["components"] and "linear:clr" not in rep["weights"]
    assert rep["samples"] == table.n_samples and rep["groups"] == len(set(groups.values()))
    assert set(rep) >= {"stack", "without_encoder", "encoder_contribution",
                        "versus_best_baseline", "verdict"}
    assert rep["best_baseline"] in ("linear:clr", "linear:relative", "forest:relative")
    val = model.extra["validation"]
    assert rep["stack"]["macro_f1"] == pytest.approx(
        api.prediction_scores(np.array(val["true"]), np.array(val["predicted"]),
                              True)["macro_f1"])
    assert rep["stack"]["macro_f1"] > 0.7       # the simulated groups differ clearly
    # the clusters block reads the shipped encoder's own clusters of its pretraining reads
    from aam_engine.features import encoder_centres
    from aam_engine.pretrained import default_encoder
    assert "linear:clusters" in rep["weights"]
    np.testing.assert_allclose(stack.centres, encoder_centres(default_encoder()), rtol=1e-6)
    assert stack.centres_from == "the encoder's pretraining reads"
    # a fitted model given as the encoder of another fit hands on the centres its stack reads
    np.testing.assert_array_equal(encoder_centres(model), stack.centres)


def test_clusters_sum_each_samples_reads_per_nearest_centre():
    from aam_engine.features import cluster_centres, clusters, nearest_centre, sample_features
    V = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 4.9]])
    C = cluster_centres(V, 2)
    near = nearest_centre(V, C)
    assert near[0] == near[1] != near[2] == near[3]
    counts = np.array([[1, 3, 0, 4], [0, 0, 2, 2]])
    shares = clusters(counts, V, C)
    np.testing.assert_allclose(shares[:, near[0]], [0.5, 0.0])
    np.testing.assert_allclose(shares.sum(1), 1)
    assert len(cluster_centres(np.zeros((5, 2)), 64)) == 1      # no more than distinct reads
    table = api.SampleTable.from_arrays(counts, ["a", "b"], list("wxyz"),
                                        {f: "ACGT" * 5 for f in "wxyz"})
    with pytest.raises(ValueError, match="centres"):
        sample_features(table, list(table.sequences), ["clusters"], V)


def test_an_encoder_without_clusters_has_them_made_from_the_training_reads(example):
    """An encoder of an older format keeps no clusters: the fit clusters the training
    table's reads instead, says so, and the model predicts the same after saving."""
    import json
    from pathlib import Path
    table, dist, md = example
    old = read_model_dir(Path(__file__).parents[1] / "data" / "model_formats" / "2.8"
                         / "encoder")
    assert "clusters" not in old.extra
    tiny = api.SampleTable.from_dataframe(__import__("pandas").read_csv(
        Path(__file__).parents[1] / "data" / "model_formats" / "2.8" / "table.tsv", sep="\t",
        index_col=0))
    labels = {s: "ab"[i % 2] for i, s in enumerate(tiny.sample_ids)}
    with pytest.warns(UserWarning, match="keeps no clusters"):
        m = api.fit(tiny, labels, "classification", ModelConfig(ensemble=2),
                    TrainConfig(**TC, compare_baselines=False), encoder=old)
    assert m.stack.centres_from == "the training table's reads"
    assert m.stack.centres.shape[1] == old.model_config.embedding_dim
    cfg = m.config_json()
    assert cfg["stack"]["clusters"] == {"k": len(m.stack.centres),
                                        "from": "the training table's reads"}
    json.dumps(cfg)


def test_a_malformed_encoder_clusters_entry_is_refused(tmp_path):
    import json
    import shutil
    from pathlib import Path
    src = Path(__file__).parents[1] / "data" / "model_formats" / "2.9" / "encoder"
    shutil.copytree(src, tmp_path / "e")
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert len(cfg["extra"]["clusters"]["centres"]) >= 1
    cfg["extra"]["clusters"]["centres"][0] = [1.0]
    (tmp_path / "e" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="extra.clusters"):
        read_model_dir(tmp_path / "e")


def test_a_saved_stack_predicts_the_same_whatever_the_feature_order(stacked, tmp_path):
    table, md, groups, model = stacked
    write_model_dir(model, tmp_path / "m")
    back = read_model_dir(tmp_path / "m")
    a, b = api.predict(model, table), api.predict(back, table)
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(back.stack.centres, model.stack.centres)   # as fitted
    order = np.random.default_rng(1).permutation(table.n_features)
    shuffled = api.SampleTable(table.counts[:, order], table.sample_ids,
                               [table.feature_ids[i] for i in order],
                               [table.sequences[i] for i in order])
    np.testing.assert_allclose(api.predict(back, shuffled)[2], a[2], atol=1e-9)


def test_the_balanced_decision_predicts_a_rare_class_above_its_base_rate(stacked, tmp_path):
    from aam_engine.inputs import decide_classes
    enc = {"classes": ["common", "rare"], "priors": [0.9, 0.1]}
    P = np.array([[0.8, 0.2], [0.95, 0.05], [0.4, 0.6]])
    # 0.2 is twice the rare class's base rate: balanced predicts it, probable does not
    assert decide_classes(enc, P, "balanced").tolist() == [1, 0, 1]
    assert decide_classes(enc, P, "probable").tolist() == [0, 0, 1]
    assert decide_classes({"classes": enc["classes"]}, P, "balanced").tolist() == [0, 0, 1]
    # a fitted classifier stores its classes' training shares and predicts by its rule, saved
    # or not; the probabilities do not depend on the rule
    table, md, groups, model = stacked
    counts = md["group"].astype(str).value_counts(normalize=True)
    assert model.target["priors"] == pytest.approx(
        [counts[c] for c in model.target["classes"]])
    write_model_dir(model, tmp_path / "m")
    back = read_model_dir(tmp_path / "m")
    assert back.model_config.decision == "balanced" == model.model_config.decision
    _, labels, proba, classes = api.predict(back, table)
    picked = decide_classes(back.target, proba, "balanced")
    assert labels == [classes[i] for i in picked]
    probable = dataclasses.replace(back, model_config=dataclasses.replace(
        back.model_config, decision="probable"))
    _, labels_p, proba_p, _ = api.predict(probable, table)
    np.testing.assert_array_equal(proba_p, proba)
    assert labels_p == [classes[i] for i in np.asarray(proba).argmax(1)]


def test_a_class_of_one_sample_is_named_before_any_training(example):
    table, dist, md = example
    labels = md["group"].astype(str).to_dict()
    labels[table.sample_ids[0]] = "rare"
    with pytest.raises(ValueError, match=r"Class 'rare' \(1 sample\).*at least 2"):
        api.fit(table, labels, "classification", ModelConfig(), TrainConfig(**TC))


def test_one_validation_group_folds_the_samples_and_says_so(example):
    table, dist, md = example
    ages = md["age"].astype(float).to_dict()
    with pytest.warns(UserWarning, match="one validation group"):
        model = api.fit(table, ages, "regression", ModelConfig(ensemble=3), TrainConfig(**TC),
                        groups={s: "the only cage" for s in table.sample_ids})
    assert model.extra["stack"]["groups"] == table.n_samples       # each sample its own unit
    with pytest.warns(UserWarning, match="one validation group"):    # and the encoder it
        # pretrains first (given distances) validates on a split of the samples too
        given = api.fit(table, ages, "regression",
                        ModelConfig(ensemble=3, embedding_dim=16, attention_heads=2,
                                    attention_layers=1, max_bp=60, token_limit=24,
                                    pretrain_from="scratch"),
                        TrainConfig(**dict(TC, epochs=1, batch_size=8)),
                        groups={s: "the only cage" for s in table.sample_ids},
                        options=api.Options(distances=(table.sample_ids, dist)))
    assert given.extra["stack"]["groups"] == table.n_samples
    with pytest.raises(ValueError, match="1 sample\\(s\\) have no validation group"):
        api.fit(table, ages, "regression", ModelConfig(), TrainConfig(**TC),
                groups={s: "a" for s in table.sample_ids[1:]})

"""The model must LEARN with the defaults: on simulated data with a planted signal, held-out
samples (unseen subjects) are predicted clearly better than a constant and than the same model
untrained, and pretraining improves the learned part's fit of UniFrac on samples it never saw
over its own initial state.  Tiny model, seconds each; only the model size and epochs differ
from the engine's defaults.  `pytest tests/engine/test_learning.py --untrained` switches
training off (learning rate 1e-12, and every learner of the stack predicts what it was given
the most of, as if it had learnt nothing): every test here must then fail (CI checks it)."""
import warnings

import numpy as np
import pytest

from aam_engine import api
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data import SampleTable, compute_unifrac, split_ids
from aam_engine.data.simulate import simulate
from aam_engine.metrics import distance_r2, pair_distances, r2_score

SIZE = dict(embedding_dim=32, attention_heads=2, attention_layers=1, token_limit=64)


def learned_r2(enc, table, dist, ids):
    """Held-out R² of the encoder's LEARNED part (without the ASV-set sketch, which needs no
    training): offset + Euclidean distance of the learned embeddings against UniFrac."""
    inf = api.inference_setup(enc, table.subset(ids), "cpu")
    emb = api.run_model(inf.model, inf.builder, np.arange(len(ids)), inf.device,
                        key="learned_embedding")
    ix = table.index_of(ids)
    return distance_r2(emb, dist[np.ix_(ix, ix)], api.distance_offset(enc, learned=True))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, learning_rate):
    d = simulate(n_samples=120, n_features=80, seq_length=60, depth=1000, seed=11)
    table = SampleTable.from_arrays(d.counts, d.sample_ids, d.feature_ids,
                                    dict(zip(d.feature_ids, d.sequences)))
    tree = tmp_path_factory.mktemp("tree") / "tree.nwk"
    tree.write_text(d.newick + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, dist = compute_unifrac(table, tree)
    md = {k: dict(zip(d.sample_ids, v)) for k, v in d.metadata.items()}
    train, test = split_ids(table.sample_ids, 0.25, 0, md["subject"])
    itr = table.index_of(train)
    pre = lambda lr, epochs: api.pretrain(
        table.subset(train), ModelConfig(**SIZE),
        TrainConfig(epochs=epochs, patience=0, progress=False, learning_rate=lr),
        distances=(train, dist[np.ix_(itr, itr)]), groups=md["subject"])
    # the initial state: calibrated scale and offset, weights as initialised
    return table, dist, md, train, test, pre(learning_rate, 60), pre(1e-12, 1)


def test_pretraining_improves_the_learned_distances_on_unseen_samples(planted):
    table, dist, md, train, test, enc, untrained = planted
    r2, r2_0 = learned_r2(enc, table, dist, test), learned_r2(untrained, table, dist, test)
    # measured: initial state (calibrated, k-mer profiles) 0.22, after 60 epochs 0.32
    assert r2 > 0.1 and r2 > r2_0 + 0.06
    _, emb = api.embed(enc, table.subset(test))
    ite = table.index_of(test)
    i, j, d = pair_distances(emb, api.distance_offset(enc))
    assert np.corrcoef(d, dist[np.ix_(ite, ite)][i, j])[0, 1] > 0.45


def _fit(planted, target, task, learning_rate, encoder):
    table, dist, md, train, test, *_ = planted
    model = api.fit(table.subset(train), {s: md[target][s] for s in train}, task,
                    ModelConfig(**SIZE), TrainConfig(epochs=40, progress=False,
                                                     learning_rate=learning_rate),
                    encoder=encoder, groups=md["subject"])
    return api.predict(model, table.subset(test))


def test_classifier_beats_the_majority_class_on_unseen_subjects(planted, learning_rate):
    md, enc = planted[2], planted[5]
    ids, labels, probs, classes = _fit(planted, "group", "classification", learning_rate, enc)
    truth = np.array([md["group"][s] for s in ids])
    acc = np.mean(np.array(labels) == truth)
    # (the planted signal is readable from the abundances and from k-mer profiles: what must
    # learn here is the stack's learners, and --untrained stops them)
    majority = max(np.mean(truth == c) for c in classes)
    assert acc > majority + 0.1
    assert max(np.mean(np.array(labels) == c) for c in classes) < 0.9       # not a constant


def test_regressor_follows_the_planted_gradient_on_unseen_subjects(planted, learning_rate):
    md, enc = planted[2], planted[5]
    ids, pred = _fit(planted, "age", "regression", learning_rate, enc)
    truth = np.array([md["age"][s] for s in ids])
    r2 = r2_score(truth, pred)
    assert r2 > 0.5
    assert np.std(pred) > 0.3 * np.std(truth)                     # not the mean

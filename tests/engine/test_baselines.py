"""A fit compares itself with a random forest and an L2 linear model on the same samples."""
import numpy as np

from aam_engine import api
from aam_engine.baselines import compare_with_baselines
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.metrics import macro_f1

SIZE = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=48)


def test_fit_reports_baselines_on_its_own_validation_samples(example):
    table, dist, md = example
    groups = md["subject"].astype(str).to_dict()
    enc = api.pretrain(table, ModelConfig(**SIZE), TrainConfig(epochs=1, progress=False),
                       distances=(table.sample_ids, dist))
    model = api.fit(table, md["group"].astype(str).to_dict(), "classification",
                    ModelConfig(**SIZE, ensemble=3), TrainConfig(epochs=3, progress=False),
                    encoder=enc, groups=groups)
    base, val = model.extra["baselines"], model.extra["validation"]
    assert base["cross_fitted"] and base["samples"] == len(val["sample_ids"]) == table.n_samples
    assert base["aam"]["macro_f1"] == macro_f1(val["true"], val["predicted"])
    for name in ("rf_q2", "l2_linear"):
        assert 0 <= base[name]["macro_f1"] <= 1
    assert base["verdict"].startswith(f"On these {table.n_samples} validation samples AAM")
    off = api.fit(table, md["group"].astype(str).to_dict(), "classification",
                  ModelConfig(**SIZE, ensemble=3),
                  TrainConfig(epochs=1, progress=False, compare_baselines=False), encoder=enc,
                  groups=groups)
    assert "baselines" not in off.extra


def test_comparison_uses_the_same_folds_and_names_the_winner():
    rng = np.random.default_rng(0)
    X = rng.poisson(5, size=(60, 30)).astype(float)
    y = (X[:, 0] > 5).astype(int)
    X[:, 0] *= 20                                  # a signal both baselines find
    folds = np.arange(60) % 3
    chance = rng.integers(0, 2, 60)
    out = compare_with_baselines(X, y, True, np.ones(60, bool), chance, folds)
    assert out["rf_q2"]["macro_f1"] > 0.8 and "trails" in out["verdict"]
    perfect = compare_with_baselines(X, y, True, np.ones(60, bool), y, folds)
    assert perfect["aam"]["macro_f1"] == 1.0
    assert " AAM beats " in perfect["verdict"] or " AAM matches " in perfect["verdict"]
    # a plain validation split: baselines fitted outside the mask, scored inside it
    mask = np.zeros(60, bool)
    mask[:15] = True
    split = compare_with_baselines(X, y, True, mask, y[:15])
    assert split["samples"] == 15 and not split["cross_fitted"]

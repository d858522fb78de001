import numpy as np
import pytest

from aam_engine import api
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data.simulate import simulate
from aam_engine.data.table import SampleTable
from aam_engine.interpret import attention_importance, integrated_gradients

MC = ModelConfig(embedding_dim=16, attention_heads=2, attention_layers=1, max_bp=60,
                 token_limit=32, dropout=0.0, shipped_encoder=False)   # trained whole, here


@pytest.fixture(scope="module")
def planted():
    """The class is whether ONE planted ASV is present; every other ASV is noise.  Both
    classes get the same extra reads (non-carriers on a random other ASV), so the read depth
    and composition give nothing away; the planted ASV's sequence is GC-rich, unlike the rest."""
    d = simulate(n_samples=128, n_features=30, seq_length=60, seed=5)   # enough samples that
    # learning the rule beats memorising the samples (48 were not, on some data draws)
    counts = d.counts.astype(float)
    rng = np.random.default_rng(0)
    j = 7
    present = rng.random(len(counts)) < 0.5
    extra = rng.integers(50, 400, size=len(counts))
    counts[:, j] = np.where(present, extra, 0)
    for i in np.flatnonzero(~present):
        k = rng.choice([f for f in np.flatnonzero(counts[i]) if f != j])
        counts[i, k] += extra[i]
    seqs = list(d.sequences)
    seqs[j] = "".join(rng.choice(list("ACGT"), 60, p=[0.1, 0.4, 0.4, 0.1]))
    table = SampleTable.from_arrays(counts, d.sample_ids, d.feature_ids,
                                    dict(zip(d.feature_ids, seqs)))
    targets = dict(zip(d.sample_ids, np.where(present, "carrier", "non-carrier")))
    cfg = TrainConfig(epochs=30, batch_size=8, learning_rate=3e-3, nuc_penalty=0, progress=False,
                      validation_fraction=0, warmup_steps=0, scheduler="constant", random_seed=0,
                      patience=0)
    model = api.fit(table, targets, "classification", MC, cfg)
    ids, labels, _, _ = api.predict(model, table)
    assert np.mean([targets[s] == l for s, l in zip(ids, labels)]) > 0.95   # it learned the rule
    return table, model, d.feature_ids[j]


def test_integrated_gradients_rank_planted_asv_first(planted):
    table, model, planted_id = planted
    ids, imp = integrated_gradients(model, table, steps=8)
    order = np.argsort(-imp)
    assert ids[order[0]] == planted_id, [ids[i] for i in order[:3]]
    assert imp[order[0]] > 3 * np.median(imp)


def test_attention_importance_is_a_distribution_over_asvs(planted):
    table, model, _ = planted
    ids, imp = attention_importance(model, table)
    assert len(ids) == table.n_features and (imp >= 0).all()
    # per sample, attention over its ASVs sums to 1, so the mean over samples sums to 1 too
    assert imp.sum() == pytest.approx(1.0, abs=1e-4)
    assert np.argmax(imp) == table.feature_ids.index(planted[2])   # and it looks at the one that matters


def test_integrated_gradients_refuse_encoders(example):
    table, dist, _ = example
    enc = api.pretrain(table, MC, TrainConfig(epochs=1, progress=False),
                       distances=(table.sample_ids, dist))
    with pytest.raises(ValueError, match="need a prediction"):
        integrated_gradients(enc, table)


def test_embedding_distances_track_unifrac_after_pretraining(example):
    """Spearman between embedding distances and UniFrac rises well above an untrained model."""
    from scipy.stats import spearmanr
    table, dist, _ = example
    cfg = dict(batch_size=8, learning_rate=1e-2, nuc_penalty=0, progress=False,
               validation_fraction=0, warmup_steps=0, random_seed=0, scheduler="constant", patience=0)
    def rho(bundle):
        _, emb = api.embed(bundle, table)
        d = np.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1))
        i, j = np.triu_indices(len(emb), 1)
        return spearmanr(d[i, j], dist[i, j]).correlation
    trained = api.pretrain(table, MC, TrainConfig(epochs=40, **cfg), distances=(table.sample_ids, dist))
    untrained = api.pretrain(table, MC, TrainConfig(epochs=1, **{**cfg, "learning_rate": 1e-9}),
                             distances=(table.sample_ids, dist))
    r_trained, r_untrained = rho(trained), rho(untrained)
    print(f"Spearman(embedding distance, UniFrac): trained {r_trained:.3f}, untrained {r_untrained:.3f}")
    assert r_trained > 0.5 and r_trained > r_untrained + 0.2


def test_occlusion_ranks_the_planted_asv_first_for_a_stack(planted):
    """The default fit (a stack: learners on abundances and on the encoder's clusters):
    taking the planted ASV out of a sample moves its prediction most; an ASV a stack does not
    use moves nothing."""
    from aam_engine.interpret import occlusion_importance
    table, _, planted_id = planted
    targets = {s: "carrier" if c > 0 else "non-carrier"
               for s, c in zip(table.sample_ids,
                               table.counts[:, table.feature_ids.index(planted_id)].toarray()[:, 0])}
    model = api.fit(table, targets, "classification", ModelConfig(ensemble=3),
                    TrainConfig(progress=False, compare_baselines=False))
    ids, imp = occlusion_importance(model, table)
    order = np.argsort(-imp)
    assert ids[order[0]] == planted_id, [ids[i] for i in order[:3]]
    assert imp[order[0]] > 3 * np.median(imp) and (imp >= 0).all()

import dataclasses
import math

import numpy as np
import pytest
import torch

from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data import BatchBuilder, ReadNoise
from aam_engine.data.batching import TorchBatch
from aam_engine.models import AAM
from aam_engine.training import losses as L

TINY = dict(embedding_dim=16, attention_heads=2, attention_layers=1, max_bp=60, token_limit=24,
            dropout=0.0)
HEADS = {"stack": "heads"}       # a predictor that is its heads (these tests are the network's)


def tiny(task="encoder", **kw):
    torch.manual_seed(0)
    return AAM(ModelConfig(task=task, **{**TINY, **(HEADS if task != "encoder" else {}), **kw}))


def batch_tensors(example, rows=(0, 1, 2, 3), mask_ratio=0.0, **kw):
    table, dist, _ = example
    bb = BatchBuilder(table, TINY["token_limit"], TINY["max_bp"], distances=dist,
                      noise=ReadNoise(mask_ratio=mask_ratio), **kw)
    b = bb.build(list(rows), np.random.default_rng(0), mask=mask_ratio > 0)
    return b, b.to_torch()


def test_shapes_and_masks(example):
    b, t = batch_tensors(example, mask_ratio=0.15)
    out = tiny("regression")(t, sketch=True)
    B, S = b.mask.shape
    # the learned part (16) and the default set sketch
    assert out["embedding"].shape == (B, 16 + 1024) and out["prediction"].shape == (B,)
    assert out["pool_weights"].shape == (B, S)
    assert out["nuc_logits"].shape == (len(b.unique_features), 61, 6)
    # padded slots get exactly zero pooling weight
    assert (out["pool_weights"][~t.mask] == 0).all()
    for v in out.values():
        assert torch.isfinite(v.float()).all()


def test_no_nan_with_padding_and_one_asv_samples():
    """A sample with one ASV next to a full one (mostly padded slots), and a padded-out
    nucleotide row: every output and gradient is finite."""
    model = tiny("classification", n_outputs=3)
    tokens = torch.tensor([[6, 1, 2, 3, 0, 0], [6, 0, 0, 0, 0, 0]])   # second ASV: START only
    slot_index = torch.tensor([[0, 1, 0], [1, 0, 0]])
    counts = torch.tensor([[5.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    mask = counts > 0
    out = model(TorchBatch(torch.arange(2), torch.arange(2), tokens, slot_index, counts, mask,
                           asv_hash=torch.tensor([11, 12])))
    loss = out["prediction"].sum() + L.pairwise_loss(out["embedding"], torch.zeros(2, 2))
    loss.backward()
    assert torch.isfinite(out["prediction"]).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_dedup_equals_naive_path(example):
    b, t = batch_tensors(example, rows=range(8), mask_ratio=0.2)
    assert b.dedup_ratio > 1
    model = tiny("regression").eval()
    a, n = model(t, dedup=True), model(t, dedup=False)
    for k in ("embedding", "prediction", "pool_weights"):
        torch.testing.assert_close(a[k], n[k], atol=1e-5, rtol=1e-5)
    # nucleotide logits: the unique ASV's logits are exactly those of every slot holding it
    flat_mask = t.mask.reshape(-1)
    per_slot = a["nuc_logits"][t.slot_index.reshape(-1)][flat_mask]
    torch.testing.assert_close(per_slot, n["nuc_logits"][flat_mask], atol=1e-5, rtol=1e-5)


def test_cached_asv_vectors_equal_full_forward(example):
    b, t = batch_tensors(example, rows=range(6))
    model = tiny("regression").eval()
    cache = model.asv_vectors(torch.as_tensor(BatchBuilder(example[0], 24, 60).feature_tokens))
    torch.testing.assert_close(model(t)["prediction"], model(t, asv_cache=cache)["prediction"],
                               atol=1e-5, rtol=1e-5)


def test_pairwise_loss_hand_computed():
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], requires_grad=True)
    target = torch.tensor([[0, 4.0, 1.0], [4.0, 0, 2.0], [1.0, 2.0, 0]])
    # distances 5, 1, sqrt(18); errors 1, 0, sqrt(18) - 2
    expect = (1 + 0 + (math.sqrt(18) - 2) ** 2) / 3
    loss = L.pairwise_loss(emb, target)
    assert loss.item() == pytest.approx(expect, rel=1e-6)
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    assert L.pairwise_loss(emb[:1], target[:1, :1]).item() == 0.0


def test_other_losses_hand_computed():
    logits = torch.tensor([[[0.0, 0, 0, 0, 0, math.log(5)]]])   # p(class 5) = 5/10
    targets = torch.tensor([[5]])
    assert L.nucleotide_loss(logits, targets).item() == pytest.approx(math.log(2), rel=1e-6)
    assert L.nucleotide_loss(logits, torch.tensor([[-100]])).item() == 0.0
    assert L.regression_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() == 5.0
    assert L.regression_loss(torch.tensor([3.0]), torch.tensor([0.0]), "huber").item() == 2.5
    lg = torch.tensor([[0.0, 0.0]])
    assert L.classification_loss(lg, torch.tensor([1])).item() == pytest.approx(math.log(2))
    assert L.classification_loss(lg, torch.tensor([1]), kind="focal").item() == pytest.approx(
        0.25 * math.log(2))


def test_bf16_autocast_runs_on_cpu(example):
    _, t = batch_tensors(example, mask_ratio=0.15)
    model = tiny("regression")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(t)
    loss = L.regression_loss(out["prediction"], torch.zeros(4)) + L.nucleotide_loss(
        out["nuc_logits"], out["nuc_targets"])
    loss.backward()
    assert torch.isfinite(loss)


def test_encoder_weights_transfer():
    enc, reg = tiny(), tiny("regression")
    reg.load_encoder_from(enc)
    torch.testing.assert_close(reg.asv.tok.weight, enc.asv.tok.weight)
    with pytest.raises(ValueError, match="sizes"):
        AAM(ModelConfig(task="regression", **{**TINY, **HEADS, "embedding_dim": 8})
            ).load_encoder_from(enc)


@pytest.mark.parametrize("bad,match", [
    (dict(embedding_dim=10, attention_heads=3), "divisible"),
    (dict(task="classification", n_outputs=1), "2 classes"),
    (dict(task="nope"), "task must be"),
])
def test_model_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**TINY, **bad}).validate()


def test_train_config_validation():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8").validate()
    with pytest.raises(ValueError, match="device must be"):
        TrainConfig(device="tpu").validate()
    with pytest.raises(ValueError, match="unknown settings"):
        TrainConfig.from_dict({"epochz": 3})


def test_auto_batch_size_from_trial_steps(example):
    from aam_engine.training.autobatch import activation_bytes, auto_batch_size
    table, dist, _ = example
    bb = BatchBuilder(table, TINY["token_limit"], TINY["max_bp"], distances=dist,
                      noise=ReadNoise(mask_ratio=0.15))
    model = tiny()
    b4 = activation_bytes(model, bb.build(list(range(4)), np.random.default_rng(0), True).to_torch())
    b8 = activation_bytes(model, bb.build(list(range(8)), np.random.default_rng(0), True).to_torch())
    assert b8 > b4 > 0   # grows with the batch (sub-linearly: shared ASVs are encoded once)
    small = auto_batch_size(model, bb, np.arange(40), memory_budget_mb=8)
    large = auto_batch_size(model, bb, np.arange(40), memory_budget_mb=64)
    assert 2 <= small["batch_size"] < large["batch_size"] <= 40
    assert small["per_sample_mb"] > 0
    with pytest.raises(ValueError, match="does not fit even a batch of 2"):
        auto_batch_size(model, bb, np.arange(40), memory_budget_mb=0.001)


def test_api_memory_budget_picks_the_batch_size(example):
    from aam_engine import api
    table, dist, _ = example
    enc = api.pretrain(table, ModelConfig(**TINY), TrainConfig(epochs=1, memory_budget_mb=16,
                                                               progress=False),
                       distances=(table.sample_ids, dist))
    assert 2 <= enc.extra["batch_size"] and enc.train_config.memory_budget_mb == 16


def test_activation_checkpointing_same_gradients_less_saved_memory(example):
    from aam_engine.training.autobatch import activation_bytes
    _, t = batch_tensors(example, rows=range(8))
    grads, saved = [], []
    for on in (False, True):
        model = tiny(attention_layers=2)
        model.set_activation_checkpointing(on)
        saved.append(activation_bytes(model, t))
        model.zero_grad()
        model(t)["embedding"].pow(2).sum().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], msg=k)
    assert saved[1] < 0.7 * saved[0]       # what the auto batch size counts


def test_kmer_spectrum_is_the_abundance_weighted_kmer_frequencies(example):
    """The head's k-mer spectrum, computed by hand from the sequences: each sample's relative-
    abundance-weighted mean of its ASVs' k-mer frequencies (k-mers with N skipped; the first
    max_bp bases read), and a slot gate of 0 removes an ASV's share."""
    import itertools
    from aam_engine.data.tokenizer import A, T
    from aam_engine.models.layers import kmer_spectrum
    table = example[0]
    b, t = batch_tensors(example, rows=range(5))
    k = 3
    code = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    rel = t.counts / t.counts.sum(1, keepdim=True)
    got = kmer_spectrum(t.tokens, k, A, T, t.slot_index, rel)
    want = np.zeros((len(b.sample_index), 4 ** k))
    for i in range(len(b.sample_index)):
        for s in np.flatnonzero(b.mask[i]):
            seq = table.sequences[b.unique_features[b.slot_index[i, s]]][:TINY["max_bp"]]
            kmers = [code[seq[p:p + k]] for p in range(len(seq) - k + 1) if seq[p:p + k] in code]
            for c in kmers:
                want[i, c] += float(rel[i, s]) / len(kmers)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, rtol=1e-5)
    gate = torch.ones_like(rel)
    gate[0, 0] = 0
    gated = kmer_spectrum(t.tokens, k, A, T, t.slot_index, rel * gate)
    assert float(gated[0].sum()) == pytest.approx(1 - float(rel[0, 0]), rel=1e-5)
    torch.testing.assert_close(gated[1:], got[1:])


def test_head_reads_the_kmer_spectrum(example):
    """head_kmer_size widens what each head reads by 4^k numbers: each sample's spectrum,
    which sums to 1."""
    _, t = batch_tensors(example, rows=range(4))
    with_k, without = tiny("regression", head_kmer_size=3), tiny("regression", head_kmer_size=0)
    f = with_k.eval()(t)["head_features"]
    assert f.shape[-1] == without.eval()(t)["head_features"].shape[-1] + 4 ** 3
    D = TINY["embedding_dim"]      # sample vector, composition, then the spectrum
    torch.testing.assert_close(f[..., 2 * D:2 * D + 4 ** 3].sum(-1), torch.ones(f.shape[:2]))


def test_identity_vectors_are_fixed_nearly_orthogonal_and_exact():
    """The set sketch's per-ASV vectors come from 32-bit integer arithmetic that stays exact in
    int64 on every device: the same hash gives the same +-1/sqrt(K) vector, different hashes
    nearly orthogonal ones (|cosine| of order 1/sqrt(K))."""
    from aam_engine.models.layers import _mul32, identity_vectors
    x = torch.randint(0, 2 ** 32, (500,), dtype=torch.int64)
    for c in (0x7FEB352D, 0x846CA68B):
        assert [int(v) for v in _mul32(x, c)] == [int(a) * c % 2 ** 32 for a in x]
    h = torch.tensor([7, 8, 2 ** 32 - 1, 7])
    v = identity_vectors(h, 512)
    torch.testing.assert_close(v.abs(), torch.full_like(v, 512 ** -0.5))
    torch.testing.assert_close(v[0], v[3])
    cos = v[:3] @ v[:3].T
    assert (cos.diagonal() - 1).abs().max() < 1e-6
    assert cos.triu(1).abs().max() < 0.2


def test_set_sketch_is_appended_to_the_embedding_and_follows_shared_asvs(example):
    """set_sketch K: the embedding gains K numbers, the scaled unit sketch of the sample's
    ASV set; two samples' sketches are identical when they hold the same ASVs (whatever
    their counts) and move apart as they share fewer.  Only a caller that asks for it
    (sketch=True: the distances of `embed`) gets it; training never computes it.  A batch
    without hashes is refused."""
    b, t = batch_tensors(example, rows=range(4))
    model = tiny("encoder", set_sketch=256).eval()
    plain = model(t)
    assert plain["embedding"].shape == (4, 16)
    torch.testing.assert_close(plain["embedding"], plain["learned_embedding"])
    out = model(t, sketch=True)
    assert out["embedding"].shape == (4, 16 + 256)
    sk = out["embedding"][:, 16:] / model.distance.sketch_scale.log_scale.exp()
    torch.testing.assert_close(sk.norm(dim=1), torch.ones(4))
    t2 = dataclasses.replace(t, counts=t.counts.clone(), slot_index=t.slot_index.clone(),
                             mask=t.mask.clone())
    t2.counts[1] = t2.counts[0] * 3 + 1
    t2.slot_index[1], t2.mask[1] = t2.slot_index[0], t2.mask[0]
    s2 = model(t2, sketch=True)["embedding"][:, 16:]
    torch.testing.assert_close(s2[0], s2[1])
    # sample 0 losing half its ASVs moves its sketch, by about sqrt(2 (1 - sqrt(1/2)))
    n = int(t.mask[0].sum())
    t2.mask[1, n // 2:] = False
    t2.counts[1, n // 2:] = 0
    s3 = model(t2, sketch=True)["embedding"][:, 16:] / model.distance.sketch_scale.log_scale.exp()
    expect = (2 * (1 - ((n // 2) / n) ** 0.5)) ** 0.5
    assert abs(float((s3[0] - s3[1]).norm()) - expect) < 0.15
    with pytest.raises(ValueError, match="asv_hash"):
        model(dataclasses.replace(t, asv_hash=None), sketch=True)

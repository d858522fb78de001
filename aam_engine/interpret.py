"""Which ASVs matter to a fitted model (no qiime2 here).

attention_importance: how much the model attends to each ASV - the [SAMPLE] token's attention
    to the ASV in every sample-encoder layer (mean over heads and layers) together with the
    final attention-pooling weight, averaged over the samples (0 where the ASV is absent).
integrated_gradients: for regressors / classifiers, the attribution of the prediction to each
    ASV, integrating gradients along a gate that scales the ASV's input (sequence vector +
    abundance) from 0 (the ASV removed) to 1 (as observed) (Sundararajan et al. 2017); mean
    absolute attribution over samples.
"""
from __future__ import annotations

import numpy as np

from .io import ModelBundle


def _setup(bundle, table, device, covariates=None, match_reads=True):
    from .inference import inference_setup
    model, builder, dev = inference_setup(bundle, table, device, covariates, match_reads)
    cache = model.asv_vectors(builder.token_tensor(dev))
    return model, builder, dev, cache


def _accumulate(total, batch, per_slot):
    feats = batch.unique_features[batch.slot_index]
    np.add.at(total, feats[batch.mask], per_slot[batch.mask])


def attention_importance(bundle: ModelBundle, table, device="auto", batch_size=32,
                         covariates=None, match_reads=True):
    """(feature_ids, importance) - mean attention each ASV receives per sample
    (``match_reads``: as in api.predict)."""
    import torch
    model, builder, dev, cache = _setup(bundle, table, device, covariates, match_reads)
    total = np.zeros(table.n_features)
    with torch.no_grad():
        for batch in builder.batches(np.arange(table.n_samples), batch_size):
            att = []
            out = model(**batch.to_torch(dev), asv_cache=cache, attention=att)
            from_sample = torch.stack([a[:, :, 0, 1:].float().mean(1) for a in att]).mean(0)
            pool = out["pool_weights"].float()
            # both as distributions over the sample's ASVs (the [SAMPLE] token's share removed)
            score = 0.5 * (from_sample / from_sample.sum(1, keepdim=True).clamp_min(1e-12)
                           + pool / pool.sum(1, keepdim=True).clamp_min(1e-12))
            _accumulate(total, batch, score.cpu().numpy())
    return table.feature_ids, total / table.n_samples


def integrated_gradients(bundle: ModelBundle, table, device="auto", steps: int = 16,
                         batch_size=16, covariates=None, match_reads=True):
    """(feature_ids, importance) - mean |attribution| of the prediction to each ASV
    (regression: the predicted value; classification: the predicted class's logit)."""
    import torch
    if bundle.task == "encoder":
        raise ValueError("Integrated gradients need a prediction: use a regressor or classifier "
                         "(method 'attention' works for encoders).")
    model, builder, dev, cache = _setup(bundle, table, device, covariates, match_reads)
    total = np.zeros(table.n_features)
    alphas = (torch.arange(steps, dtype=torch.float32, device=dev) + 0.5) / steps
    for batch in builder.batches(np.arange(table.n_samples), batch_size):
        t = batch.to_torch(dev)
        with torch.no_grad():
            pred = model(**t, asv_cache=cache)["prediction"]
            cls = pred.argmax(-1) if bundle.task == "classification" else None
        grads = torch.zeros(t["mask"].shape, device=dev)
        for a in alphas:
            # every ASV's input scaled by a: from removed (0) to as observed (1)
            gate = torch.full(t["mask"].shape, float(a), device=dev, requires_grad=True)
            p = model(**t, asv_cache=cache, slot_gate=gate)["prediction"]
            if cls is not None:
                p = p.gather(1, cls[:, None]).squeeze(1)
            g, = torch.autograd.grad(p.sum(), gate)
            grads += g / steps
        attribution = grads.abs().cpu().numpy()     # (input - baseline) = 1 for every gate
        _accumulate(total, batch, attribution)
    return table.feature_ids, total / table.n_samples

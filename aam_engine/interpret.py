"""Which ASVs matter to a fitted model (no qiime2 here).

attention_importance: how much the model attends to each ASV - the [SAMPLE] token's attention
    to the ASV in every sample-encoder layer (mean over heads and layers) together with the
    final attention-pooling weight, averaged over the samples (0 where the ASV is absent).
integrated_gradients: for models whose stack is their heads, the attribution of the heads'
    prediction to each ASV, integrating gradients along a gate that scales the ASV's input
    (sequence vector + abundance) from 0 (the ASV removed) to 1 (as observed) (Sundararajan
    et al. 2017); mean absolute attribution over samples.
occlusion: for any regressor / classifier, how far the model's prediction moves when the ASV
    is taken out of a sample (its counts removed, the rest as they are): the predicted class's
    probability, or the value in the target's units; mean absolute change over samples (0
    where the ASV is absent).  What the whole stack does, forests included.
"""
from __future__ import annotations

import numpy as np

from .io import ModelBundle


def _setup(bundle, table, device, covariates=None, match_reads=True):
    from .inference import inference_setup
    inf = inference_setup(bundle, table, device, covariates, match_reads)
    cache = inf.model.asv_vectors(inf.builder.token_tensor(inf.device))
    return inf.model, inf.builder, inf.device, cache


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
            out = model(batch.to_torch(dev), asv_cache=cache, attention=att)
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
    if bundle.stack is not None and [c.name for c in bundle.stack.components] != ["heads"]:
        raise ValueError("Integrated gradients follow the heads' gradients, and this model's "
                         "stack is more than its heads: use method 'occlusion', which measures "
                         "the whole stack.")
    model, builder, dev, cache = _setup(bundle, table, device, covariates, match_reads)
    total = np.zeros(table.n_features)
    alphas = (torch.arange(steps, dtype=torch.float32, device=dev) + 0.5) / steps
    for batch in builder.batches(np.arange(table.n_samples), batch_size):
        t = batch.to_torch(dev)
        with torch.no_grad():
            pred = model(t, asv_cache=cache)["prediction"]
            cls = pred.argmax(-1) if bundle.task == "classification" else None
        grads = torch.zeros(t.mask.shape, device=dev)
        for a in alphas:
            # every ASV's input scaled by a: from removed (0) to as observed (1)
            gate = torch.full(t.mask.shape, float(a), device=dev, requires_grad=True)
            p = model(t, asv_cache=cache, slot_gate=gate)["prediction"]
            if cls is not None:
                p = p.gather(1, cls[:, None]).squeeze(1)
            g, = torch.autograd.grad(p.sum(), gate)
            grads += g / steps
        attribution = grads.abs().cpu().numpy()     # (input - baseline) = 1 for every gate
        _accumulate(total, batch, attribution)
    return table.feature_ids, total / table.n_samples


OCCLUSION_ROWS = 2048      # samples-with-one-ASV-removed predicted at a time


def occlusion_importance(bundle: ModelBundle, table, device="auto", covariates=None,
                         match_reads=True):
    """(feature_ids, importance) - mean |change of the prediction| when each ASV is removed
    from each sample that holds it (averaged over all samples; see the module's docstring)."""
    import scipy.sparse as sp

    from .data import BatchBuilder, SampleTable
    from .inference import Inference, inference_setup, predictions
    from .inputs import decode_regression
    if bundle.task == "encoder":
        raise ValueError("Occlusion needs a prediction: use a regressor or classifier "
                         "(method 'attention' works for encoders).")
    inf = inference_setup(bundle, table, device, covariates, match_reads)
    t = inf.table
    out = lambda P: P if bundle.task == "classification" else decode_regression(bundle.target, P)
    base = out(predictions(bundle, inf))
    cls = base.argmax(1) if base.ndim == 2 else None
    C = t.counts.tocoo()
    total = np.zeros(t.n_features)
    for lo in range(0, C.nnz, OCCLUSION_ROWS):
        rows, cols = C.row[lo:lo + OCCLUSION_ROWS], C.col[lo:lo + OCCLUSION_ROWS]
        removed = t.counts[rows].tolil()
        removed[np.arange(len(rows)), cols] = 0
        removed = sp.csr_matrix(removed)
        keep = np.asarray(removed.sum(1)).ravel() > 0        # a sample of one ASV: skipped
        if not keep.any():
            continue
        sub = SampleTable(removed[keep], [f"{r}:{c}" for r, c in zip(rows[keep], cols[keep])],
                          t.feature_ids, t.sequences)
        codes = None if inf.covariates is None else inf.covariates[rows[keep]]
        builder = BatchBuilder(sub, inf.builder.token_limit, inf.builder.max_bp,
                               covariates=codes)
        sub_inf = Inference(inf.model, builder, inf.device, sub, codes, None)
        P = out(predictions(bundle, sub_inf))
        r = rows[keep]
        delta = (np.abs(P[np.arange(len(r)), cls[r]] - base[r, cls[r]]) if cls is not None
                 else np.abs(P - base[r]))
        np.add.at(total, cols[keep], delta)
    return table.feature_ids, total / t.n_samples

"""The 'heads' component: the model's own prediction heads on the frozen encoder, one per
fold, trained side by side on the cached ASV vectors (aam_engine.run).  Head k learns from
the samples outside folds k and k + 1, stops early on fold k + 1 and predicts fold k (its
out-of-fold predictions); new samples get the mean of the heads."""
from __future__ import annotations

import numpy as np

from ..learners import softmax
from ..run import RunDirs, RunInputs, run_training


def fit_heads(table, model_cfg, train_cfg, task: str, inputs: RunInputs, dirs: RunDirs):
    """(the trained model with its K heads, its history, its run summary, the heads'
    out-of-fold predictions in the table's sample order: normalised values or class
    probabilities)."""
    from ..data import BatchBuilder
    from ..inference import run_model
    model, history, extra = run_training(table, model_cfg, train_cfg, task, inputs, dirs)
    builder = BatchBuilder(table, model_cfg.token_limit, model_cfg.max_bp,
                           covariates=inputs.covariates)
    rows = np.arange(table.n_samples)
    per_head = run_model(model, builder, rows, next(model.parameters()).device,
                         key="head_predictions")
    out = per_head[rows, np.asarray(inputs.folds)].astype(float)
    return model, history, extra, softmax(out) if task == "classification" else out

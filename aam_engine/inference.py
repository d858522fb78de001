"""Running a saved model on a table: the model on its device, the batch builder, and the
covariates encoded as the model learned them.  predict / embed (api) and the interpretation
methods (interpret) share it."""
from __future__ import annotations

import warnings

import numpy as np

from .data import BatchBuilder, SampleTable
from .io import ModelBundle


def encode_covariates(covariates: dict | None, sample_ids, levels: dict | None = None):
    """{column: {sample: value}} -> (codes [n, K], levels {column: [values]}); unknown = 0."""
    if not covariates and not levels:
        return None, {}
    covariates = covariates or {}
    levels = dict(levels) if levels else {c: sorted({str(v) for v in col.values()
                                                     if v is not None and str(v) != "nan"})
                                          for c, col in covariates.items()}
    codes = np.zeros((len(sample_ids), len(levels)), dtype=np.int64)
    for k, (c, lv) in enumerate(levels.items()):
        index = {v: i + 1 for i, v in enumerate(lv)}
        col = covariates.get(c, {})
        codes[:, k] = [index.get(str(col.get(s)), 0) for s in sample_ids]
    return codes, levels


def inference_setup(bundle: ModelBundle, table: SampleTable, device: str, covariates=None,
                    match_reads: bool = True):
    """(model in eval mode on its device, batch builder, device) to run a saved model on a
    table: predict, embed and aam_engine.interpret share it.  ``match_reads``: a read that is
    another trim of one of the model's training reads is read as that read (data.reads)."""
    from .training.runtime import resolve_device
    if match_reads and bundle.extra.get("reads"):
        from .data.reads import as_known_reads
        table, _ = as_known_reads(table, bundle.extra["reads"])
    dev = resolve_device(device)
    model = bundle.build_model().to(dev)
    codes = None
    if bundle.covariates:
        if covariates is None:
            warnings.warn(f"The model was trained with covariates {list(bundle.covariates)}; "
                          "none were given, so they are treated as unknown.")
        codes, _ = encode_covariates(covariates, table.sample_ids, bundle.covariates)
    mc = bundle.model_config
    builder = BatchBuilder(table, mc.token_limit, mc.max_bp, "abundance", covariates=codes)
    return model, builder, dev

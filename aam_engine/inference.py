"""Running a saved model on a table, outside training: the table as the model reads it (reads
of other trims matched to its training reads, and the count of what matched said), the model
on its device, the batch builder with the covariates encoded as the model learned them, the
model's outputs (ASV vectors once per feature) and the frozen encoder's ASV vectors.
predict / embed (api), the interpretation methods (interpret) and training share it."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np

from .data import BatchBuilder, SampleTable
from .inputs import encode_covariates
from .io import ModelBundle


@dataclass
class Inference:
    model: object                # the AAM in eval mode, on ``device``
    builder: BatchBuilder
    device: object
    table: SampleTable           # as the model reads it
    covariates: object           # codes [n, K] or None
    reads: dict | None           # what read matching found (data.reads.ReadMatch.counts)


def read_as_trained(bundle: ModelBundle, table: SampleTable, match_reads: bool = True):
    """(the table as the model reads it, what matching found or None): a read that is another
    trim of one of the model's training reads is read as that read (data.reads); the count
    goes to stderr, and ambiguous reads are warned about."""
    if not (match_reads and bundle.extra.get("reads")):
        return table, None
    from .data.reads import as_known_reads
    table, match = as_known_reads(table, bundle.extra["reads"])
    print(f"q2-aam {match.summary()}", file=sys.stderr)
    if match.ambiguous:
        warnings.warn(f"{match.ambiguous} read(s) of the table are contained in several of "
                      "the model's training reads (their trim cut what told those apart): "
                      "they are read as they are, not as one of them.", stacklevel=3)
    return table, match.counts()


def inference_setup(bundle: ModelBundle, table: SampleTable, device: str, covariates=None,
                    match_reads: bool = True) -> Inference:
    """What running a saved model on a table needs (see Inference)."""
    from .runtime import resolve_device
    table, reads = read_as_trained(bundle, table, match_reads)
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
    return Inference(model, builder, dev, table, codes, reads)


def run_model(model, builder: BatchBuilder, rows, device, asv_cache=None, key="prediction",
              batch_size: int = 32):
    """Eval-mode outputs ``key`` (a name, or a tuple of names -> a tuple) for ``rows``, ASV
    vectors computed once per feature unless a cache is given."""
    import torch
    model.eval()
    if asv_cache is None:
        asv_cache = model.asv_vectors(builder.token_tensor(device))
    keys = (key,) if isinstance(key, str) else tuple(key)
    outs = {k: [] for k in keys}
    # the ASV-set sketch only where the caller asks for the whole embedding
    sketch = "embedding" in keys
    with torch.no_grad():
        for batch in builder.batches(rows, batch_size):
            out = model(batch.to_torch(device), asv_cache=asv_cache, sketch=sketch)
            for k in keys:
                outs[k].append(out[k].float().cpu().numpy())
    res = tuple(np.concatenate(outs[k]) for k in keys)
    return res[0] if isinstance(key, str) else res


def encoder_vectors(model, table: SampleTable, device="cpu", chunk: int = 4096) -> np.ndarray:
    """The frozen encoder's vector of every feature of the table: [features, D]."""
    import torch
    from .runtime import resolve_device
    dev = resolve_device(device) if isinstance(device, str) else device
    model = model.to(dev)
    tokens = np.array(table.tokens(model.cfg.max_bp))
    with torch.no_grad():       # in chunks: a corpus holds tens of thousands of reads
        return np.concatenate([model.asv_vectors(torch.from_numpy(tokens[i:i + chunk]).to(dev))
                               .float().cpu().numpy()
                               for i in range(0, len(tokens), chunk)] or
                              [np.zeros((0, model.cfg.embedding_dim), np.float32)])


def predictions(bundle: ModelBundle, inf: Inference, batch_size: int = 32) -> np.ndarray:
    """The model's predictions for every sample of ``inf.table``: normalised values [n] or
    class probabilities [n, classes]: its stack's weighted mean of its components (a model
    of format 2.6 or older: its heads)."""
    from .features import NEEDS_VECTORS, sample_features, with_covariates
    from .learners import softmax
    stack, rows = bundle.stack, np.arange(inf.table.n_samples)
    heads = None
    if stack is None or stack.uses_heads:
        out = run_model(inf.model, inf.builder, rows, inf.device, batch_size=batch_size)
        heads = softmax(out.astype(float)) if bundle.task == "classification" else out
    if stack is None:
        return heads
    V = (encoder_vectors(inf.model, inf.table, inf.device)
         if set(NEEDS_VECTORS) & set(stack.blocks) else None)
    feats = sample_features(inf.table, stack.columns, stack.blocks, V, stack.centres)
    return stack.predict(with_covariates(feats, inf.covariates, bundle.covariates), heads)

"""High-level engine API used by the QIIME 2 plugin and the engine CLI alike.

    pretrain(table, distances | tree)            -> ModelBundle (encoder)
    fit(table, targets, task, encoder=None, ...) -> ModelBundle (regressor / classifier)
    predict(bundle, table)                       -> predictions (+ class probabilities)
    embed(bundle, table)                         -> sample embeddings

It is also the one door for callers outside the engine (the QIIME 2 plugin): the names they
need from the engine's modules are re-exported here (torch is imported only when training or
inference runs).  What a fit reads is made ready in ``inputs``; one training run is ``run``.
"""
from __future__ import annotations

import numpy as np

from .config import ModelConfig, TrainConfig, declared
from .data import SampleTable, merge_tables
from .data.distances import UNIFRAC_METRICS
from .data.simulate import simulate
from .data.table import split_ids
from .fit import fit as fit_stack
from .inference import inference_setup, predictions, run_model
from .inputs import Options, decide_classes, decode_regression
from .interpret import attention_importance, integrated_gradients, occlusion_importance
from .io import ModelBundle
from .io.model_dir import history_tsv, read_model_dir, write_model_files
from .metrics import (REGRESSION_TIE, accuracy, constant_fraction, distance_scores, macro_f1,
                      mae, prediction_scores, r2_score)
from .pretraining import pretrain_encoder
from .run import node_scoped

__all__ = [  # for callers outside the engine
    "pretrain", "fit", "predict", "embed", "embedding_distances", "distance_offset",
    "ModelConfig", "TrainConfig", "Options", "declared", "SampleTable", "merge_tables",
    "split_ids", "ModelBundle", "inference_setup", "run_model", "decode_regression",
    "UNIFRAC_METRICS", "history_tsv", "read_model_dir", "write_model_files", "simulate",
    "attention_importance", "integrated_gradients", "occlusion_importance",
    "REGRESSION_TIE", "accuracy", "constant_fraction", "distance_scores", "macro_f1", "mae",
    "prediction_scores", "r2_score"]


@node_scoped
def pretrain(table: SampleTable, model_cfg: ModelConfig, train_cfg: TrainConfig,
             distances=None, tree=None, groups=None, options: Options | None = None,
             start: ModelBundle | None = None) -> ModelBundle:
    """Self-supervised pretraining on UniFrac distances (+ masked nucleotides where
    nuc_penalty > 0; off by default).  ``distances`` / ``tree``: one source, or lists of them
    (studies with matrices or trees of their own; see resolve_distances); given here or in
    ``options`` (with the metric, rarefaction and the checkpoint / log folders).  ``start``:
    an encoder to continue from (its weights and sizes) instead of random weights."""
    return pretrain_encoder(table, model_cfg, train_cfg, distances, tree, groups, options,
                            start)


@node_scoped
def fit(table: SampleTable, targets: dict, task: str, model_cfg: ModelConfig,
        train_cfg: TrainConfig, encoder: ModelBundle | None = None, groups: dict | None = None,
        options: Options | None = None) -> ModelBundle:
    """A regressor / classifier: its stack's components cross-fitted on the frozen encoder's
    features and the abundances, weighed by a stacker (aam_engine.fit, read top to
    bottom)."""
    return fit_stack(table, targets, task, model_cfg, train_cfg, encoder, groups, options)


# ---------------------------------------------------------------------------- inference
def predict(bundle: ModelBundle, table: SampleTable, covariates=None, device: str = "auto",
            batch_size: int = 32, match_reads: bool = True):
    """Regression: (sample_ids, values).  Classification: (sample_ids, labels, probabilities
    [n, classes], classes).  ``match_reads``: a read that is another trim of a training read
    (another primer trim or length of the same ASV) is read as that training read
    (aam_engine.data.reads; what matched is reported on stderr)."""
    if bundle.task == "encoder":
        raise ValueError("This model is an encoder (from `pretrain`): it has no prediction head. "
                         "Fine-tune it with fit-regressor / fit-classifier first, or use `embed`.")
    inf = inference_setup(bundle, table, device, covariates, match_reads)
    out = predictions(bundle, inf, batch_size)
    if bundle.task == "regression":
        return table.sample_ids, decode_regression(bundle.target, out)
    classes = bundle.target["classes"]
    picked = decide_classes(bundle.target, out, bundle.model_config.decision)
    return table.sample_ids, [classes[i] for i in picked], out, classes


def distance_offset(bundle: ModelBundle, learned: bool = False) -> float:
    """The model's distance between two DIFFERENT samples is this offset + the Euclidean
    distance of their embeddings (``embed``); see ``embedding_distances``.  ``learned``: the
    offset of the embedding's learned part alone (its 'learned_embedding' output)."""
    from .models.distance_head import offset_weight
    return float(bundle.state_dict[offset_weight(bundle.model_config, learned)].abs())


def embedding_distances(bundle: ModelBundle, emb) -> np.ndarray:
    """The model's UniFrac estimate between the rows of ``emb`` (from ``embed``): a square
    matrix, 0 on the diagonal, offset + Euclidean distance elsewhere (still a metric)."""
    from .models.distance_head import distance_matrix
    return distance_matrix(emb, distance_offset(bundle))


def embed(bundle: ModelBundle, table: SampleTable, device: str = "auto", batch_size: int = 32,
          match_reads: bool = True):
    """(sample_ids, embeddings [n, dim]) in the model's UniFrac embedding space (distances:
    ``embedding_distances``); ``match_reads`` as in ``predict``."""
    inf = inference_setup(bundle, table, device, match_reads=match_reads)
    return table.sample_ids, run_model(inf.model, inf.builder, np.arange(table.n_samples),
                                       inf.device, key="embedding", batch_size=batch_size)

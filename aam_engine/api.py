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

import dataclasses
import functools
import warnings

import numpy as np

from .config import (ENCODER_SIZES, ModelConfig, TrainConfig, apply_preset, declared,
                     warn_size_mismatch)
from .data import SampleTable, merge_tables
from .data.distances import UNIFRAC_METRICS
from .data.table import split_ids
from .io import ModelBundle
from .io.model_dir import history_tsv, read_model_dir, write_model_files
from .data.simulate import simulate
from .inference import encode_covariates, inference_setup
from .interpret import attention_importance, integrated_gradients
from .inputs import (cross_fit_heads, decode_regression, encode_targets, prepare_table,
                     resolve_distances, resolve_distances_of, resolve_sizes)
from .metrics import accuracy, constant_fraction, distance_scores, macro_f1, mae, r2_score
from .run import node_scoped, on_node, run_training

__all__ = [  # for callers outside the engine
    "pretrain", "fit", "predict", "embed", "embedding_distances", "distance_offset",
    "ModelConfig", "TrainConfig", "declared", "SampleTable", "merge_tables", "split_ids",
    "ModelBundle",
    "UNIFRAC_METRICS", "history_tsv", "read_model_dir", "write_model_files", "simulate",
    "attention_importance", "integrated_gradients",
    "accuracy", "constant_fraction", "distance_scores", "macro_f1", "mae", "r2_score"]


@node_scoped
def pretrain(table: SampleTable, model_cfg: ModelConfig, train_cfg: TrainConfig,
             distances=None, tree=None, metric: str = "unweighted",
             rarefaction_depth: int | None = None, groups=None, checkpoint_dir=None,
             log_dir=None) -> ModelBundle:
    """Self-supervised pretraining on UniFrac distances (+ masked nucleotides where
    nuc_penalty > 0; off by default).  ``distances`` / ``tree``: one source, or lists of them
    (studies with matrices or trees of their own; see resolve_distances)."""
    model_cfg, train_cfg = apply_preset(model_cfg.validate(), train_cfg.validate())
    return _pretrain(table, model_cfg, train_cfg, distances, tree, metric, rarefaction_depth,
                     groups, checkpoint_dir, log_dir)


def _pretrain(table, model_cfg, train_cfg, distances, tree, metric, rarefaction_depth, groups,
              checkpoint_dir, log_dir) -> ModelBundle:
    """pretrain() on configurations already validated (fit's first stage calls it too)."""
    table = on_node(prepare_table, table, rarefaction_depth, train_cfg.random_seed)
    model_cfg = resolve_sizes(model_cfg, table, task="encoder", freeze_base=False)
    table, dist = on_node(resolve_distances, table, distances, tree, metric)
    if dist is None and train_cfg.nuc_penalty == 0:
        raise ValueError("Pretraining needs a distance matrix or a phylogeny (or nuc_penalty > 0).")
    model, history, extra = run_training(table, model_cfg, train_cfg, "encoder", distances=dist,
                                         groups=groups, checkpoint_dir=checkpoint_dir,
                                         log_dir=log_dir)
    extra["unifrac_metric"] = metric if tree is not None else "precomputed"
    return ModelBundle(model_cfg, train_cfg, model.state_dict(), {"type": "encoder"}, {},
                       history, extra)


@node_scoped
def fit(table: SampleTable, targets: dict, task: str, model_cfg: ModelConfig,
        train_cfg: TrainConfig, encoder: ModelBundle | None = None, covariates: dict | None = None,
        distances=None, tree=None, metric="unweighted", rarefaction_depth=None, groups=None,
        missing_samples: str = "error", checkpoint_dir=None, log_dir=None) -> ModelBundle:
    """Fine-tune (or train from scratch) a regressor / classifier on a metadata column.

    With ``freeze_base`` (the default) the head is trained on a fixed, pretrained encoder: the
    one given, or, without one but with distances / a tree, one pretrained here first on the
    table's UniFrac (every sample of the table, labelled or not); with neither, the encoder
    that ships with the engine (``shipped_encoder``; aam_engine.pretrained).
    ``freeze_base=False`` fine-tunes the given encoder, or trains the whole model from
    scratch."""
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    model_cfg, train_cfg = apply_preset(model_cfg.validate(), train_cfg.validate())
    if (encoder is None and distances is None and tree is None and model_cfg.freeze_base
            and model_cfg.shipped_encoder):
        from .pretrained import default_encoder
        encoder = default_encoder()
    if encoder is None and model_cfg.freeze_base and (distances is not None or tree is not None):
        sub = lambda d, name: None if d is None else f"{d}/{name}"
        encoder = _pretrain(table, model_cfg, train_cfg, distances, tree, metric,
                           rarefaction_depth, groups, sub(checkpoint_dir, "pretrain"),
                           sub(log_dir, "pretrain"))
        distances = tree = None
        checkpoint_dir, log_dir = sub(checkpoint_dir, "head"), sub(log_dir, "head")
    if encoder is not None:
        if encoder.task != "encoder" and encoder.task != task:
            raise ValueError(f"The model given as encoder is a {encoder.task} model; give an "
                             "AAMModel[SequenceEncoder] from `pretrain` (or one of this task).")
        ec = encoder.model_config
        warn_size_mismatch(model_cfg.to_dict(), ec)
        model_cfg = dataclasses.replace(model_cfg, **{k: getattr(ec, k) for k in ENCODER_SIZES})
    table = on_node(prepare_table, table, rarefaction_depth, train_cfg.random_seed)
    keep, y, enc, weights = encode_targets(targets, task, table.sample_ids, missing_samples,
                                           train_cfg, model_cfg.output_activation)
    table, dist = on_node(resolve_distances_of, table, keep, distances, tree, metric)
    if len(table.sample_ids) != len(keep):   # UniFrac may have dropped features, never samples
        keep_set = set(table.sample_ids)
        y = y[[i for i, s in enumerate(keep) if s in keep_set]]
    codes, levels = encode_covariates(covariates, table.sample_ids)
    model_cfg = resolve_sizes(
        model_cfg, table, task=task,
        n_outputs=len(enc["classes"]) if task == "classification" else 1,
        covariate_sizes=[len(v) for v in levels.values()],
        # freeze_base applies to a pretrained encoder; without one the whole model trains
        freeze_base=model_cfg.freeze_base and encoder is not None,
        ensemble=cross_fit_heads(model_cfg, model_cfg.freeze_base and encoder is not None,
                        table.sample_ids, groups))
    if task == "classification":
        seen = set(y.tolist())
        if len(seen) < 2:
            raise ValueError("A classifier needs at least 2 classes among the training samples.")
    enc["name"] = targets.name if hasattr(targets, "name") else enc.get("name")
    decode = functools.partial(decode_regression, enc) if task == "regression" else None
    train = functools.partial(run_training, table, train_cfg=train_cfg, task=task, targets=y,
                              distances=dist, covariates=codes, class_weights=weights,
                              decode=decode, groups=groups, encoder=encoder)
    model_cfg = _head_spectrum(model_cfg, groups)
    if not (model_cfg.freeze_base and model_cfg.head_kmer_size
            and model_cfg.head_spectrum == "auto"):
        model, history, extra = train(model_cfg=model_cfg, checkpoint_dir=checkpoint_dir,
                                      log_dir=log_dir)
    else:
        model_cfg, (model, history, extra) = _choosecross_fit_heads(train, model_cfg, checkpoint_dir,
                                                           log_dir)
    extra["pretrained_encoder"] = encoder is not None
    if train_cfg.compare_baselines and extra.get("validation"):
        extra["baselines"] = _baselines(table, y, task, enc, extra, groups, train_cfg)
    return ModelBundle(model_cfg, train_cfg, model.state_dict(), enc, levels, history, extra)


MAX_BASELINE_CELLS = 50_000_000     # samples x features the baselines hold densely (400 MB)


def _baselines(table, y, task, enc, extra, groups, train_cfg) -> dict | None:
    """AAM's validation predictions against a random forest and an L2 linear model on the
    same samples (aam_engine.baselines); None, with a warning, without scikit-learn."""
    import importlib.util
    if importlib.util.find_spec("sklearn") is None:
        warnings.warn("scikit-learn is not installed: the fit is not compared with baselines")
        return None
    if table.n_samples * table.n_features > MAX_BASELINE_CELLS:    # they read dense counts
        warnings.warn(f"The table is too large ({table.n_samples} x {table.n_features}) to "
                      "compare the fit with in-memory baselines; skipped (compare_baselines).")
        return None
    from .baselines import compare_with_baselines
    val = extra["validation"]
    classify = task == "classification"
    truth = y if classify else decode_regression(enc, y)
    val_mask = np.isin(table.sample_ids, val["sample_ids"])
    # AAM's predictions re-ordered like the validation rows in the table
    pred = np.asarray(val["predicted"])[np.argsort(table.index_of(val["sample_ids"]))]
    folds = None if extra.get("folds") is None else np.asarray(extra["folds"])
    g = None if groups is None else np.array([str(groups[s]) for s in table.sample_ids])
    return compare_with_baselines(table.counts.toarray(), truth, classify, val_mask, pred,
                                  folds, g, train_cfg.random_seed)


def _head_spectrum(model_cfg, groups):
    """Samples grouped by subject ask for a model for new subjects: there the heads read no
    k-mer spectrum, which tells a subject's own ASVs apart (see head_kmer_size)."""
    if groups is not None and model_cfg.head_kmer_size and model_cfg.head_spectrum == "auto":
        return dataclasses.replace(model_cfg, head_kmer_size=0)
    return model_cfg


def _choosecross_fit_heads(train, model_cfg, checkpoint_dir, log_dir):
    """Heads on a frozen encoder are cheap, so fit them twice: reading the k-mer spectrum
    (head_kmer_size) and not, and keep the one whose held-out target loss (each cross-fitted
    head on its own fold) is lower.  Run only without groups (see _head_spectrum): on grouped
    folds this loss chose the spectrum where it cost unseen subjects (bench/head_spectrum.py).
    Returns (the chosen configuration, its (model, history, extra)); extra["head_choice"]
    records both losses."""
    options = [model_cfg, dataclasses.replace(model_cfg, head_kmer_size=0)]
    sub = lambda d, k: None if d is None else f"{d}/head_kmer_size_{k}"
    runs = [train(model_cfg=c, checkpoint_dir=sub(checkpoint_dir, c.head_kmer_size),
                  log_dir=sub(log_dir, c.head_kmer_size)) for c in options]
    losses = [r[2]["validation_loss"] for r in runs]
    # without held-out samples nothing says the spectrum helps: the heads without it
    best = 0 if None not in losses and losses[0] < losses[1] else 1
    runs[best][2]["head_choice"] = {
        "head_kmer_size": options[best].head_kmer_size,
        "validation_loss": {str(c.head_kmer_size): v for c, v in zip(options, losses)}}
    return options[best], runs[best]


# ---------------------------------------------------------------------------- inference
def predict(bundle: ModelBundle, table: SampleTable, covariates=None, device: str = "auto",
            batch_size: int = 32, match_reads: bool = True):
    """Regression: (sample_ids, values).  Classification: (sample_ids, labels, probabilities
    [n, classes], classes).  ASV vectors are computed once per feature (frozen encoder).
    ``match_reads``: a read that is another trim of a training read (another primer trim or
    length of the same ASV) is read as that training read (aam_engine.data.reads)."""
    if bundle.task == "encoder":
        raise ValueError("This model is an encoder (from `pretrain`): it has no prediction head. "
                         "Fine-tune it with fit-regressor / fit-classifier first, or use `embed`.")
    from .training.outputs import run_model
    model, builder, dev = inference_setup(bundle, table, device, covariates, match_reads)
    out = run_model(model, builder, np.arange(table.n_samples), dev, batch_size=batch_size)
    if bundle.task == "regression":
        return table.sample_ids, decode_regression(bundle.target, out)
    import torch
    probs = torch.softmax(torch.as_tensor(out), -1).numpy()
    classes = bundle.target["classes"]
    return table.sample_ids, [classes[i] for i in probs.argmax(1)], probs, classes


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
    from .training.outputs import run_model
    model, builder, dev = inference_setup(bundle, table, device, match_reads=match_reads)
    return table.sample_ids, run_model(model, builder, np.arange(table.n_samples), dev,
                                       key="embedding", batch_size=batch_size)

"""High-level engine API used by the QIIME 2 plugin and the engine CLI alike.

    pretrain(table, distances | tree)            -> ModelBundle (encoder)
    fit(table, targets, task, encoder=None, ...) -> ModelBundle (regressor / classifier)
    predict(bundle, table)                       -> predictions (+ class probabilities)
    embed(bundle, table)                         -> sample embeddings

It is also the one door for callers outside the engine (the QIIME 2 plugin): the names they
need from the engine's modules are re-exported here (torch is imported only when training or
inference runs).
"""
from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np

from .config import (ENCODER_SIZES, ModelConfig, TrainConfig, apply_preset, declared,
                     warn_size_mismatch)
from .data import (BatchBuilder, MatrixDistances, SampleTable, align_distances, batch_unifrac,
                   check_distance_matrix, merge_tables, part_distances)
from .data.distances import UNIFRAC_METRICS
from .data.table import first_few, fold_ids, split_ids
from .io import ModelBundle
from .io.model_dir import history_tsv, read_model_dir, write_model_files
from .data.simulate import simulate
from .inference import encode_covariates, inference_setup
from .interpret import attention_importance, integrated_gradients
from .metrics import (MAX_DISTANCE_ROWS, accuracy, capped_rows, constant_fraction,
                      distance_scores, known_pairs, macro_f1, mae, r2_score)

__all__ = [  # for callers outside the engine
    "pretrain", "fit", "predict", "embed", "embedding_distances", "distance_offset",
    "ModelConfig", "TrainConfig", "declared", "SampleTable", "merge_tables", "split_ids",
    "ModelBundle",
    "UNIFRAC_METRICS", "history_tsv", "read_model_dir", "write_model_files", "simulate",
    "attention_importance", "integrated_gradients",
    "accuracy", "constant_fraction", "distance_scores", "macro_f1", "mae", "r2_score"]


# ---------------------------------------------------------------------------- preparation
def prepare_table(table: SampleTable, rarefaction_depth: int | None, seed: int) -> SampleTable:
    return table.rarefy(rarefaction_depth, seed) if rarefaction_depth else table


def _listed(x, pair: bool = False) -> list:
    """None -> [], one source -> [it], a list of sources -> the list (a distance matrix is an
    (ids, matrix) tuple, so only a list holds several)."""
    if x is None:
        return []
    if pair:
        return list(x) if isinstance(x, list) else [x]
    return list(x) if isinstance(x, (list, tuple)) else [x]


def resolve_distances(table: SampleTable, distances=None, tree=None, metric="unweighted"):
    """(table, distance source aligned to table.sample_ids): a MatrixDistances (float32) from
    (ids, matrix), or from a rooted tree a BatchUniFrac that computes each batch's UniFrac
    exactly, never the whole matrix.  Several sources (a list of matrices and / or of trees,
    e.g. one per study): a PartDistances, pairs known within one source (data.distances)."""
    matrices, trees = _listed(distances, pair=True), _listed(tree)
    if len(matrices) + len(trees) > 1:
        return table, part_distances(table, matrices, trees, metric)
    if trees:      # per batch, from the tree: nothing n x n
        return batch_unifrac(table, trees[0], metric)
    if matrices:
        ids, m = check_distance_matrix(*matrices[0])
        return table, MatrixDistances(align_distances(ids, m, table.sample_ids))
    return table, None


AUTO_MAX_BP = 150   # max_bp 0: the longest sequence of the table, at most this


def resolve_sizes(model_cfg: ModelConfig, table: SampleTable, **fixed) -> ModelConfig:
    """The model configuration with ``fixed`` settings applied and max_bp 0 replaced by the
    longest sequence of the table (capped at AUTO_MAX_BP): shorter amplicons are not padded."""
    if not fixed.get("max_bp", model_cfg.max_bp):
        fixed["max_bp"] = min(AUTO_MAX_BP, max(len(s) for s in table.sequences))
    return dataclasses.replace(model_cfg, **fixed)      # validated where it entered the api


def _split(sample_ids, cfg: TrainConfig, groups):
    return split_ids(sample_ids, cfg.validation_fraction, cfg.random_seed, groups)


def _heads(model_cfg: ModelConfig, frozen: bool, sample_ids, groups) -> int:
    """How many heads to cross-fit: ``ensemble``, at most one per sample (or group), one for a
    model trained whole (its shared base would see every fold)."""
    if not frozen:
        return 1
    if groups is not None:
        missing = [s for s in sample_ids if s not in groups]
        if missing:
            raise ValueError(f"{len(missing)} sample(s) have no group value: {first_few(missing)}")
        n = len({str(groups[s]) for s in sample_ids})
    else:
        n = len(sample_ids)
    k = min(model_cfg.ensemble, n)
    return k if k >= 2 else 1


def _check_enough(n_train: int, cfg: TrainConfig):
    if n_train < 2:
        raise ValueError(f"Only {n_train} training sample(s) after the validation split; AAM "
                         "needs at least 2. Use more samples or a smaller validation fraction.")


def encode_targets(values: dict, task: str, sample_ids, missing_samples: str, cfg: TrainConfig,
                   activation: str = "linear"):
    """-> (kept sample ids, encoded targets array, target encoding dict, class weights)."""
    missing = [s for s in sample_ids if s not in values or values[s] is None or
               (isinstance(values[s], float) and np.isnan(values[s])) or values[s] == ""]
    if missing:
        if missing_samples != "ignore":
            raise ValueError(f"{len(missing)} sample(s) in the table have no target value: "
                             f"{first_few(missing)}. Add them to the metadata, or set "
                             "missing_samples='ignore' to train without them.")
        sample_ids = [s for s in sample_ids if s not in set(missing)]
    if not sample_ids:
        raise ValueError("No sample of the table has a target value in the metadata: check "
                         "that the metadata's sample IDs match the table's.")
    enc = {"type": task}
    if task == "regression":
        try:
            y = np.array([float(values[s]) for s in sample_ids])
        except (TypeError, ValueError):
            bad = [s for s in sample_ids if not _is_number(values[s])]
            raise ValueError(f"A regressor needs numeric targets; samples {first_few(bad)} have "
                             f"non-numeric values (e.g. {values[bad[0]]!r}).") from None
        if not np.isfinite(y).all():
            bad = [s for s, v in zip(sample_ids, y) if not np.isfinite(v)]
            raise ValueError(f"Target values are infinite for samples {first_few(bad)}.")
        if cfg.target_transform == "log1p":
            if (y <= -1).any():
                raise ValueError("target_transform 'log1p' needs targets > -1.")
            y = np.log1p(y)
        if activation in ("softplus", "exp") and (y < 0).any():
            raise ValueError(f"output activation {activation!r} predicts positive values only, "
                             "but some targets are negative; use 'linear'.")
        if activation == "bounded":
            shift, scale = float(y.min()), float(y.max() - y.min()) or 1.0
        elif activation in ("softplus", "exp"):
            shift, scale = 0.0, float(y.std()) or 1.0
        else:
            shift, scale = float(y.mean()), float(y.std()) or 1.0
        enc.update(transform=cfg.target_transform, shift=shift, scale=scale)
        return sample_ids, ((y - shift) / scale).astype(np.float32), enc, None
    labels = [str(values[s]) for s in sample_ids]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"A classifier needs at least 2 classes; the target column has only "
                         f"{classes!r} among the table's samples.")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[l] for l in labels], dtype=np.int64)
    enc["classes"] = classes
    weights = None
    if cfg.class_weights == "balanced":
        counts = np.bincount(y, minlength=len(classes))
        weights = (len(y) / (len(classes) * np.maximum(counts, 1))).astype(np.float32)
    return sample_ids, y, enc, weights


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def decode_regression(enc: dict, z):
    y = np.asarray(z, dtype=np.float64) * enc["scale"] + enc["shift"]
    return np.expm1(y) if enc.get("transform") == "log1p" else y


# ---------------------------------------------------------------------------- training
def _node_scoped(f):
    """``f`` inside training.distributed.node_scope: under torchrun, data that node_shared
    prepares once per node lives until ``f`` returns (torch imported only when it runs)."""
    @functools.wraps(f)
    def run(*args, **kwargs):
        from .training.distributed import node_scope
        with node_scope():
            return f(*args, **kwargs)
    return run


def _node_shared(fn, *args):
    """``fn(*args)`` once per node under torchrun, its big arrays shared by the node's ranks
    (training.distributed.node_shared); simply ``fn(*args)`` otherwise."""
    from .training.distributed import node_shared
    return node_shared(functools.partial(fn, *args))


def _tokenized(table: SampleTable, max_bp: int) -> SampleTable:
    table.tokens(max_bp)
    return table


def _train(table, model_cfg, train_cfg, task, **kw):
    """Train in this process, in ``train_cfg.devices`` processes on this node (DDP), or as one
    rank of a torchrun job.  The table's tokens are computed once (per node) and travel with
    it, shared like its counts."""
    from .training.distributed import resolve_world, run_on_node, world_info
    world = resolve_world(train_cfg)
    table = _node_shared(_tokenized, table, model_cfg.max_bp)
    if world > 1 and world_info()[1] == 1:
        return run_on_node(_train_local, world, train_cfg.device,
                           (table, model_cfg, train_cfg, task), kw)
    return _train_local(table, model_cfg, train_cfg, task, **kw)


def _train_local(table, model_cfg, train_cfg, task, targets=None, distances=None,
                 covariates=None, class_weights=None, decode=None, groups=None,
                 encoder: ModelBundle | None = None, checkpoint_dir=None, log_dir=None,
                 resume=True):
    """Train on the seeded split of the table's samples (whole groups to one side), or with
    cross-fitted heads on K folds of all of them."""
    import torch
    from .models import AAM
    from .training import TaskData, Trainer
    folds = None
    if task != "encoder" and model_cfg.ensemble > 1:   # cross-fitted heads: every sample
        train_ids = val_ids = list(table.sample_ids)  # trains all heads but one, scores one
        folds = fold_ids(train_ids, model_cfg.ensemble, train_cfg.random_seed, groups)
    else:
        train_ids, val_ids = _split(table.sample_ids, train_cfg, groups)
    _check_enough(len(train_ids), train_cfg)
    builder = BatchBuilder(table, model_cfg.token_limit, model_cfg.max_bp,
                           train_cfg.asv_selection, distances, targets, covariates,
                           train_cfg.mask_ratio, train_cfg.mask_strategy, train_cfg.read_trim)
    data = TaskData(builder, table.index_of(train_ids), table.index_of(val_ids), task,
                    class_weights, decode, folds)
    torch.manual_seed(train_cfg.random_seed)
    model = AAM(model_cfg)
    if encoder is not None:
        model.load_encoder_from(encoder.build_model())
    model.set_activation_checkpointing(train_cfg.activation_checkpointing)
    if train_cfg.memory_budget_mb > 0:
        from .training.autobatch import auto_batch_size
        from .training.runtime import resolve_device
        pick = auto_batch_size(model.to(resolve_device(train_cfg.device)), builder,
                               data.train_rows, train_cfg.memory_budget_mb,
                               resolve_device(train_cfg.device))
        train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(),
                                           "batch_size": pick["batch_size"]})
        torch.manual_seed(train_cfg.random_seed)     # the trial steps must not shift the RNG
    trainer = Trainer(model, data, train_cfg, checkpoint_dir, log_dir)
    history = trainer.fit(resume=resume)
    model = trainer.export_model()
    mix = None
    if trainer.use_pair and not trainer.frozen:
        from .training.trainer import fit_sketch_mix
        mix = fit_sketch_mix(model, builder, data.train_rows, trainer.device, trainer.asv_cache)
    extra = {"n_samples": table.n_samples, "n_features": table.n_features,
             "train_samples": train_ids, "validation_samples": val_ids,
             "cross_fitted_heads": model_cfg.ensemble if folds is not None else 0,
             # each training sample's fold (cross-fitted heads), aligned with train_samples
             "folds": folds.tolist() if folds is not None else None,
             "skipped_steps": trainer.state["skipped_steps"],
             "optimizer_steps": trainer.state["step"],
             "precision": trainer.precision, "device": str(trainer.device),
             "batch_size": train_cfg.batch_size,
             # the monitored validation loss at the kept weights (mean over cross-fitted
             # heads); None without validation samples
             "validation_loss": (float(np.mean(trainer.state["best"]))
                                 if val_ids and np.isfinite(trainer.state["best"]).all()
                                 else None)}
    if mix is not None:
        extra["sketch_mix"] = mix
    if trainer.rank == 0 and val_ids:
        extra["validation"] = validation_outputs(trainer, model, data, val_ids)
    return model, history, extra


MAX_SUMMARY_PAIRS = 2000


def validation_outputs(trainer, model, data, val_ids):
    """Per-sample validation predictions (for the summary plots); with cross-fitted heads
    each sample's prediction by the head that did not train on it."""
    from .training.trainer import run_model
    key = (("embedding", "learned_embedding") if data.task == "encoder" else
           "head_predictions" if data.folds is not None else "prediction")
    out = run_model(model, data.builder, data.val_rows, trainer.device, trainer.asv_cache, key=key)
    if data.task == "encoder":
        out, learned = out
    if data.folds is not None:
        out = out[np.arange(len(out)), data.folds[data.val_rows]]
    if data.task == "regression":
        dec = data.decode
        return {"sample_ids": val_ids,
                "true": dec(data.builder.targets[data.val_rows]).tolist(),
                "predicted": dec(out).tolist()}
    if data.task == "classification":
        return {"sample_ids": val_ids, "true": data.builder.targets[data.val_rows].tolist(),
                "predicted": out.argmax(1).tolist()}
    rec = {"sample_ids": val_ids}
    if data.builder.distances is not None and len(val_ids) > 1:
        # the validation pairs' model and UniFrac distances (the encoder summary's scatter),
        # at most MAX_SUMMARY_PAIRS of them, drawn reproducibly
        keep = capped_rows(len(val_ids), MAX_DISTANCE_ROWS)
        block = data.builder.distances.block(data.val_rows[keep])
        d, D = known_pairs(out[keep], block, float(model.distance_offset().detach()))
        rec.update({f"unifrac_{k}": v for k, v in distance_scores(d, D).items()})
        # the learned part alone (what pretraining fits; the sketch needs no training)
        dl, _ = known_pairs(learned[keep], block, float(model.distance.learned_offset()))
        rec["learned_unifrac_r2"] = r2_score(D, dl)
        pick = capped_rows(len(d), MAX_SUMMARY_PAIRS)
        d, D = d[pick], D[pick]
        rec["pairs"] = {"model": np.round(d, 5).tolist(), "unifrac": np.round(D, 5).tolist()}
    return rec


@_node_scoped
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


def _subset_resolve(table, keep, distances, tree, metric):
    """resolve_distances on the table cut to the samples ``keep`` (those with a target)."""
    if len(keep) < table.n_samples:
        table = table.subset(keep)
    return resolve_distances(table, distances, tree, metric)


def _pretrain(table, model_cfg, train_cfg, distances, tree, metric, rarefaction_depth, groups,
              checkpoint_dir, log_dir) -> ModelBundle:
    """pretrain() on configurations already validated (fit's first stage calls it too)."""
    table = _node_shared(prepare_table, table, rarefaction_depth, train_cfg.random_seed)
    model_cfg = resolve_sizes(model_cfg, table, task="encoder", freeze_base=False)
    table, dist = _node_shared(resolve_distances, table, distances, tree, metric)
    if dist is None and train_cfg.nuc_penalty == 0:
        raise ValueError("Pretraining needs a distance matrix or a phylogeny (or nuc_penalty > 0).")
    model, history, extra = _train(table, model_cfg, train_cfg, "encoder", distances=dist,
                                   groups=groups, checkpoint_dir=checkpoint_dir, log_dir=log_dir)
    extra["unifrac_metric"] = metric if tree is not None else "precomputed"
    return ModelBundle(model_cfg, train_cfg, model.state_dict(), {"type": "encoder"}, {},
                       history, extra)


@_node_scoped
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
    table = _node_shared(prepare_table, table, rarefaction_depth, train_cfg.random_seed)
    keep, y, enc, weights = encode_targets(targets, task, table.sample_ids, missing_samples,
                                           train_cfg, model_cfg.output_activation)
    table, dist = _node_shared(_subset_resolve, table, keep, distances, tree, metric)
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
        ensemble=_heads(model_cfg, model_cfg.freeze_base and encoder is not None,
                        table.sample_ids, groups))
    if task == "classification":
        seen = set(y.tolist())
        if len(seen) < 2:
            raise ValueError("A classifier needs at least 2 classes among the training samples.")
    enc["name"] = targets.name if hasattr(targets, "name") else enc.get("name")
    decode = functools.partial(decode_regression, enc) if task == "regression" else None
    train = functools.partial(_train, table, train_cfg=train_cfg, task=task, targets=y,
                              distances=dist, covariates=codes, class_weights=weights,
                              decode=decode, groups=groups, encoder=encoder)
    model_cfg = _head_spectrum(model_cfg, groups)
    if not (model_cfg.freeze_base and model_cfg.head_kmer_size
            and model_cfg.head_spectrum == "auto"):
        model, history, extra = train(model_cfg=model_cfg, checkpoint_dir=checkpoint_dir,
                                      log_dir=log_dir)
    else:
        model_cfg, (model, history, extra) = _choose_heads(train, model_cfg, checkpoint_dir,
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


def _choose_heads(train, model_cfg, checkpoint_dir, log_dir):
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
            batch_size: int = 32):
    """Regression: (sample_ids, values).  Classification: (sample_ids, labels, probabilities
    [n, classes], classes).  ASV vectors are computed once per feature (frozen encoder)."""
    if bundle.task == "encoder":
        raise ValueError("This model is an encoder (from `pretrain`): it has no prediction head. "
                         "Fine-tune it with fit-regressor / fit-classifier first, or use `embed`.")
    from .training.trainer import run_model
    model, builder, dev = inference_setup(bundle, table, device, covariates)
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


def embed(bundle: ModelBundle, table: SampleTable, device: str = "auto", batch_size: int = 32):
    """(sample_ids, embeddings [n, dim]) in the model's UniFrac embedding space (distances:
    ``embedding_distances``)."""
    from .training.trainer import run_model
    model, builder, dev = inference_setup(bundle, table, device)
    return table.sample_ids, run_model(model, builder, np.arange(table.n_samples), dev,
                                       key="embedding", batch_size=batch_size)

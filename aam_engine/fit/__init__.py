"""A fit, top to bottom: a regressor or classifier from a table, a metadata column and an
encoder.  Each step is a function of this module, in the order it runs:

    settings     the configurations, validated, with the preset's sizes
    encoder      the one given, the shipped one, or one pretrained here on the table's UniFrac
    inputs       the table (rarefied, labelled samples), the targets encoded, the covariates,
                 the validation groups and the K folds (whole groups per fold)
    features     per-sample blocks from the frozen encoder (aam_engine.features)
    components   each cross-fitted on the folds (fit.components; the heads: fit.heads)
    stack        weights on the components' out-of-fold predictions (fit.stack)
    report       out-of-fold scores with intervals, the encoder's contribution (fit.report)
    outputs      the ModelBundle: the encoder (and heads), the stack, the report

A model trained whole (freeze_base off, or no encoder) is one component, the heads, fitted
on a validation split.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from ..config import ENCODER_SIZES, apply_preset, head_count, warn_size_mismatch
from ..data.reads import known_reads
from ..data.table import check_groups, fold_ids
from ..features import (CLUSTERS, NEEDS_VECTORS, cluster_centres, encoder_centres,
                        sample_features, with_covariates)
from ..inputs import (Options, check_classes, decide_classes, fold_count, decode_regression,
                      encode_covariates, encode_targets, prepare_table, resolve_distances_of,
                      resolve_sizes)
from ..io import ModelBundle
from ..run import RunDirs, RunInputs, run_training
from ..stacked import HEADS, Stack, parse, reads_encoder
from .components import cross_fit
from .report import fit_report
from .stack import cross_fitted_stack, stack_weights

# what a fit compares itself with (compare_baselines): the classic L2 model on CLR
# abundances and a forest, fitted on the same folds for the report only where the stack
# does not hold them
BASELINE_COMPONENTS = ("linear:clr", "forest:relative")
MIN_HEAD_FOLDS = 3          # head k needs a fold to learn from beside folds k and k + 1


def fit(table, targets: dict, task: str, model_cfg, train_cfg, encoder: ModelBundle = None,
        groups: dict | None = None, options: Options | None = None) -> ModelBundle:
    """Fit a regressor / classifier of ``targets`` ({sample: value}) on ``table``.
    ``groups`` ({sample: unit}): the independent units (subject, cage, family) that folds
    keep whole.  ``options``: distances / tree (an encoder pretrained here first), covariates,
    rarefaction, missing samples, checkpoint and log folders (aam_engine.inputs.Options)."""
    options = options or Options()
    model_cfg, train_cfg = settings(task, model_cfg, train_cfg)
    dirs = RunDirs(options.checkpoint_dir, options.log_dir)
    encoder = choose_encoder(table, model_cfg, train_cfg, encoder, groups, options, dirs)
    if encoder is not None and options.has_distances and model_cfg.freeze_base:
        options, dirs = dataclasses.replace(options, distances=None, tree=None), dirs.sub("head")
    data = inputs(table, targets, task, model_cfg, train_cfg, encoder, groups, options)
    if not data.frozen:
        return whole_model(data, encoder, dirs)
    feats, centres = features(data, encoder)
    runs, model, history, run = fit_components(data, feats, encoder, dirs)
    stack, rep = fit_stack(data, runs, centres)
    return outputs(data, encoder, model, history, run, stack, rep)


# ------------------------------------------------------------------------------ settings
def settings(task: str, model_cfg, train_cfg):
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    model_cfg, train_cfg = apply_preset(model_cfg.validate(), train_cfg.validate())
    return dataclasses.replace(model_cfg, task=task), train_cfg


# ------------------------------------------------------------------------------- encoder
def choose_encoder(table, model_cfg, train_cfg, encoder, groups, options, dirs):
    """The encoder given; else, for a frozen encoder, one pretrained here on the table's
    distances where they are given, or the shipped one (shipped_encoder); else None (the
    whole model trains from scratch)."""
    if encoder is not None:
        if encoder.task not in ("encoder", model_cfg.task):
            raise ValueError(f"The model given as encoder is a {encoder.task} model; give an "
                             "AAMModel[SequenceEncoder] from `pretrain` (or one of this task).")
        return encoder
    if not model_cfg.freeze_base:
        return None
    from ..pretrained import default_encoder
    if options.has_distances:
        from ..pretraining import pretrain_encoder
        sub = dirs.sub("pretrain")
        if groups is not None and one_unit(groups, table.sample_ids):
            groups = None   # its validation split splits samples, as the folds do
            # (usable_groups says so once, when the fit reads its inputs)
        return pretrain_encoder(table, model_cfg, train_cfg, groups=groups,
                                options=dataclasses.replace(options, log_dir=sub.log_dir,
                                                            checkpoint_dir=sub.checkpoint_dir),
                                start=default_encoder() if model_cfg.pretrain_from == "shipped"
                                else None)
    if model_cfg.shipped_encoder:
        return default_encoder()
    return None


# -------------------------------------------------------------------------------- inputs
@dataclass
class FitInputs:
    """A fit's inputs, made ready: the labelled table, its encoded targets, covariates,
    groups (one label per sample) and folds, and the settings that follow from them."""
    labelled: object             # the table of the samples with a target, rarefied
    task: str
    y: np.ndarray
    target: dict                 # the target encoding (shift / scale, or classes)
    class_weights: object
    covariates: object           # codes [n, K] or None
    levels: dict                 # covariate levels
    groups: dict | None
    units: np.ndarray            # each sample's group (or its own id)
    folds: np.ndarray | None     # None: a model trained whole, on a validation split
    distances: object
    model_cfg: object
    train_cfg: object
    frozen: bool

    @property
    def n_classes(self) -> int:
        return len(self.target["classes"]) if self.task == "classification" else 0

    def decode(self, z):
        """Predictions as the user reads them: values in the target's units, or the class
        indices the model's decision rule picks from class probabilities."""
        if self.n_classes:
            return decide_classes(self.target, z, self.model_cfg.decision)
        return decode_regression(self.target, z)

    def run_inputs(self, encoder, folds=None) -> RunInputs:
        return RunInputs(self.y, self.distances, self.covariates, self.class_weights,
                         self.decode, self.groups, folds, encoder)


def inputs(table, targets, task, model_cfg, train_cfg, encoder, groups, options) -> FitInputs:
    if encoder is not None:
        warn_size_mismatch(model_cfg.to_dict(), encoder.model_config)
        model_cfg = dataclasses.replace(
            model_cfg, **{k: getattr(encoder.model_config, k) for k in ENCODER_SIZES})
    table = prepare_table(table, options.rarefaction_depth, train_cfg.random_seed)
    keep, y, enc, weights = encode_targets(targets, task, table.sample_ids,
                                           options.missing_samples, train_cfg,
                                           model_cfg.output_activation)
    table, dist = resolve_distances_of(table, keep, options.distances, options.tree,
                                       options.metric)
    if len(table.sample_ids) != len(keep):   # UniFrac may have dropped features, never samples
        kept = set(table.sample_ids)
        y = y[[i for i, s in enumerate(keep) if s in kept]]
    groups = usable_groups(groups, table.sample_ids)
    if task == "classification":
        check_classes(y, enc["classes"], groups, table.sample_ids)
    enc["name"] = getattr(targets, "name", None) or enc.get("name")
    codes, levels = encode_covariates(options.covariates, table.sample_ids)
    frozen = bool(model_cfg.freeze_base and encoder is not None)
    K = fold_count(model_cfg, frozen, table.sample_ids, groups)
    units = np.array([str(groups[s]) for s in table.sample_ids] if groups is not None
                     else table.sample_ids)
    folds = fold_ids(table.sample_ids, K, train_cfg.random_seed, groups) if K > 1 else None
    if groups is not None and model_cfg.head_spectrum == "auto":
        # a model for new subjects: the spectrum tells a subject's own ASVs apart, which cost
        # unseen subjects (bench/results history: docs/experiments.md)
        model_cfg = dataclasses.replace(model_cfg, head_kmer_size=0)
    model_cfg = resolve_sizes(model_cfg, table, task=task, ensemble=K,
                              n_outputs=len(enc["classes"]) if task == "classification" else 1,
                              covariate_sizes=[len(v) for v in levels.values()],
                              freeze_base=frozen)
    return FitInputs(table, task, y, enc, weights, codes, levels, groups, units, folds, dist,
                     model_cfg, train_cfg, frozen and folds is not None)


def one_unit(groups, sample_ids) -> bool:
    """Every sample in one validation group (no grouped split is possible)."""
    return len({str(groups.get(s)) for s in sample_ids}) < 2


def usable_groups(groups, sample_ids):
    """The validation groups, or None (with a warning) where every sample is in one: folds
    then split the samples, and scores are for new samples of that unit, not new units."""
    if groups is None:
        return None
    check_groups(sample_ids, groups)
    if one_unit(groups, sample_ids):
        warnings.warn("Every sample is in one validation group: the folds split its samples, "
                      "so the scores are for new samples of that unit, not for new units.",
                      stacklevel=4)
        return None
    return groups


# ------------------------------------------------------------------------------ features
def features(data: FitInputs, encoder):
    """(the feature blocks the stack's components read, for every sample; the clusters
    block's centres and where they came from, or None)."""
    names = {b for learner, b in parse(data.model_cfg.stack) if learner != HEADS}
    if data.train_cfg.compare_baselines:
        names |= {c.split(":")[1] for c in BASELINE_COMPONENTS}
    V, centres = None, None
    if set(NEEDS_VECTORS) & names:
        from ..inference import encoder_vectors
        V = encoder_vectors(encoder.build_model(), data.labelled, data.train_cfg.device)
    if "clusters" in names:
        centres = clusters_of(encoder, V, data.train_cfg.random_seed)
    feats = sample_features(data.labelled, known_reads(data.labelled), sorted(names), V,
                            None if centres is None else centres[0])
    return with_covariates(feats, data.covariates, data.levels), centres


def clusters_of(encoder, V, seed: int):
    """(centres, where from): the encoder's clusters of its pretraining reads (or those of a
    fitted model's stack given as the encoder); an encoder that keeps none (written before
    format 2.9) has its clusters made here from the vectors of the training table's reads
    (no label read), and says so."""
    as_saved = lambda c: np.asarray(c, np.float32).astype(np.float64)   # as the stack keeps them
    centres = encoder_centres(encoder)
    if centres is not None:
        return as_saved(centres), "the encoder's pretraining reads"
    warnings.warn("This encoder keeps no clusters of its pretraining reads (an encoder "
                  "written before format 2.9 keeps none): the clusters block clusters the "
                  "training table's reads instead. Pretrain it again with this release to keep "
                  "its own.", stacklevel=4)
    return as_saved(cluster_centres(V, CLUSTERS, seed)), "the training table's reads"


# ---------------------------------------------------------------------------- components
def fit_components(data: FitInputs, feats: dict, encoder, dirs):
    """{component name: CrossFit} for the stack's components (and, for the report only, the
    baselines where the stack has none), and the model: the trained heads where they are a
    component, else the encoder with no heads, with its history and run summary."""
    wanted = parse(data.model_cfg.stack)
    if (HEADS, "") in wanted and data.folds.max() + 1 < MIN_HEAD_FOLDS:
        warnings.warn(f"The heads need at least {MIN_HEAD_FOLDS} folds (groups) to be "
                      "cross-fitted; the stack is fitted without them.", stacklevel=3)
        wanted = [w for w in wanted if w != (HEADS, "")]
    data.model_cfg = dataclasses.replace(
        data.model_cfg, stack=",".join(HEADS if l == HEADS else f"{l}:{b}" for l, b in wanted))
    if data.train_cfg.compare_baselines:
        wanted += [b for b in (tuple(c.split(":")) for c in BASELINE_COMPONENTS)
                   if b not in wanted]
    runs, model, history, run = {}, None, [], {}
    seed = data.train_cfg.random_seed
    for learner, block in wanted:
        if learner == HEADS:
            from .heads import fit_heads
            model, history, run, oof = fit_heads(data.labelled, data.model_cfg, data.train_cfg,
                                                 data.task, data.run_inputs(encoder, data.folds),
                                                 dirs)
            from ..stacked import Component
            runs[HEADS] = cross_fit_result(Component(HEADS, HEADS), oof)
        else:
            runs[f"{learner}:{block}"] = cross_fit(learner, block, feats[block], data.y,
                                                   data.n_classes, data.folds, data.units, seed)
    if model is None:
        model = encoder_only(data.model_cfg, encoder)
    return runs, model, history, run


def cross_fit_result(component, oof):
    from .components import CrossFit
    return CrossFit(component, oof)


def encoder_only(model_cfg, encoder):
    """The model a stack without heads keeps: the frozen encoder (its ASV vectors make the
    composition and clusters blocks of new tables)."""
    from ..models import AAM
    assert head_count(model_cfg) == 0
    model = AAM(model_cfg)
    model.load_encoder_from(encoder.build_model())
    return model.eval()


# --------------------------------------------------------------------------------- stack
def fit_stack(data: FitInputs, runs: dict, centres=None):
    """The stack (its components' weights, fitted on their out-of-fold predictions) and its
    report (out-of-fold scores of the components, the stack and the stack without its
    encoder components, with intervals over groups)."""
    names = [n for n in runs if n == HEADS or n in data.model_cfg.stack.split(",")]
    P = [runs[n].oof for n in names]
    w = stack_weights(P, data.y, data.n_classes)
    stack_oof = cross_fitted_stack(P, data.y, data.n_classes, data.folds)
    plain = [n for n in names if not reads_encoder(runs[n].component.learner,
                                                   runs[n].component.block)]
    plain_oof = (cross_fitted_stack([runs[n].oof for n in plain], data.y, data.n_classes,
                                    data.folds) if plain and len(plain) < len(names) else None)
    rep = fit_report(data.y, {n: r.oof for n, r in runs.items()}, stack_oof, plain_oof,
                     data.n_classes, data.decode, data.units, data.train_cfg.random_seed)
    rep["weights"] = dict(zip(names, [float(v) for v in w]))
    rep["in_stack"] = names
    reads_clusters = any(runs[n].component.block == "clusters" for n in names)
    stack = Stack([runs[n].component for n in names], w, known_reads(data.labelled),
                  data.n_classes, *(centres if reads_clusters else (None, "")))
    rep["oof"] = stack_oof
    return stack, rep


# ------------------------------------------------------------------------------- outputs
def outputs(data: FitInputs, encoder, model, history, run, stack, rep) -> ModelBundle:
    """The fitted model, with what it says about itself in ``extra``."""
    stack_oof = rep.pop("oof")
    ids = list(data.labelled.sample_ids)
    extra = {**run, "n_samples": data.labelled.n_samples, "n_features": data.labelled.n_features,
             "train_samples": ids, "validation_samples": ids,
             "folds": data.folds.tolist(), "cross_fitted_heads": head_count(data.model_cfg),
             "stack": rep, "pretrained_encoder": encoder is not None}
    extra["reads"] = known_reads(data.labelled)
    extra["validation"] = {"sample_ids": ids,
                           "true": (data.y if data.n_classes else data.decode(data.y)).tolist(),
                           "predicted": data.decode(stack_oof).tolist()}
    extra.pop("baselines", None)
    return ModelBundle(data.model_cfg, data.train_cfg, model.state_dict(), data.target,
                       data.levels, history, extra, stack)


def whole_model(data: FitInputs, encoder, dirs) -> ModelBundle:
    """The model trained whole (or heads on a validation split): one component, the heads."""
    cfg = dataclasses.replace(data.model_cfg, ensemble=1, stack=HEADS)
    model, history, run = run_training(data.labelled, cfg, data.train_cfg, data.task,
                                       data.run_inputs(encoder), dirs)
    run["pretrained_encoder"] = encoder is not None
    from ..stacked import Component
    stack = Stack([Component(HEADS, HEADS)], np.ones(1), known_reads(data.labelled),
                  data.n_classes)
    return ModelBundle(cfg, data.train_cfg, model.state_dict(), data.target, data.levels,
                       history, run, stack)

"""What the api's callers hand in, checked and made ready for training: the table (rarefied),
its distance sources (one or one per study), the model sizes that follow from the data, the
targets (encoded and decoded), the covariates (encoded) and the split of the samples."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .config import MIN_CLASSES, ModelConfig, TrainConfig
from .data import (MatrixDistances, SampleTable, align_distances, batch_unifrac,
                   check_distance_matrix, part_distances)
from .data.table import first_few, split_ids


@dataclass
class Options:
    """What a pretraining or a fit reads besides the table, its targets, groups and settings:
    distances (an (ids, matrix) pair, or a list of them, one per study) or a rooted tree (or
    a list), the UniFrac metric, a rarefaction depth, categorical covariates
    ({column: {sample: value}}), what to do with samples without a target ('error' /
    'ignore'), and where checkpoints and logs go."""
    distances: object = None
    tree: object = None
    metric: str = "unweighted"
    rarefaction_depth: int | None = None
    covariates: dict | None = None
    missing_samples: str = "error"
    checkpoint_dir: str | None = None
    log_dir: str | None = None

    @property
    def has_distances(self) -> bool:
        return self.distances is not None or self.tree is not None


def prepare_table(table: SampleTable, rarefaction_depth: int | None, seed: int) -> SampleTable:
    return table.rarefy(rarefaction_depth, seed) if rarefaction_depth else table


def as_list(x, pair: bool = False) -> list:
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
    matrices, trees = as_list(distances, pair=True), as_list(tree)
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


def split_samples(sample_ids, cfg: TrainConfig, groups):
    return split_ids(sample_ids, cfg.validation_fraction, cfg.random_seed, groups)


def fold_count(model_cfg: ModelConfig, frozen: bool, sample_ids, groups) -> int:
    """How many folds a fit cross-fits on: ``ensemble``, at most one per group (or sample);
    1 (no cross-fitting) for a model trained whole, whose shared base would see every fold."""
    if not frozen:
        return 1
    n = len({str(groups[s]) for s in sample_ids}) if groups is not None else len(sample_ids)
    k = min(model_cfg.ensemble, n)
    return k if k >= 2 else 1


def check_enough(n_train: int, cfg: TrainConfig):
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
    if len(classes) < MIN_CLASSES:
        raise ValueError(f"A classifier needs at least {MIN_CLASSES} classes; the target "
                         f"column has only {classes!r} among the table's samples.")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[l] for l in labels], dtype=np.int64)
    enc["classes"] = classes
    enc["priors"] = class_shares(y, range(len(classes)))
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


def class_shares(y, classes) -> list:
    """Each class's share of the labels y (the priors decide_classes reads)."""
    y = np.asarray(y)
    return [float(np.mean(y == c)) for c in classes]


def decide_classes(enc: dict, P, decision: str = "balanced") -> np.ndarray:
    """The predicted class index of each row of class probabilities P [n, classes]:
    'balanced' divides by the training share of each class first (ModelConfig.decision), so
    that a rare class is predicted where the model sees more of it than its base rate;
    'probable' (and a model that stored no shares) takes the most probable class."""
    P = np.asarray(P, dtype=np.float64)
    priors = enc.get("priors")
    if decision == "balanced" and priors is not None:
        P = P / np.maximum(np.asarray(priors, dtype=np.float64), 1e-12)
    return P.argmax(1)


def resolve_distances_of(table, keep, distances, tree, metric):
    """resolve_distances on the table cut to the samples ``keep`` (those with a target)."""
    if len(keep) < table.n_samples:
        table = table.subset(keep)
    return resolve_distances(table, distances, tree, metric)


def encode_covariates(covariates: dict | None, sample_ids, levels: dict | None = None):
    """{column: {sample: value}} -> (codes [n, K], levels {column: [values]}); unknown = 0.
    ``levels`` (a fitted model's) fixes the codes; without it they come from the values."""
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


def check_classes(y, classes, groups=None, sample_ids=None):
    """Before any training: every class needs two samples, or no fold can learn it and score
    it; a class in one group only is learnt from no other group (a warning)."""
    counts = np.bincount(y, minlength=len(classes))
    small = [f"{classes[c]!r} ({n} sample{'s' if n != 1 else ''})"
             for c, n in enumerate(counts) if n < 2]
    if small:
        raise ValueError(
            f"Class {', '.join(small)} has too few samples to be learnt and validated: every "
            "class needs at least 2 (a model cannot learn a class from a sample it is scored "
            "on). Remove the samples of that class from the table (qiime feature-table "
            "filter-samples), or merge it with a related class in the metadata.")
    if groups is not None and sample_ids is not None:
        lonely = [classes[c] for c in range(len(classes))
                  if len({str(groups[s]) for s, v in zip(sample_ids, y) if v == c}) < 2]
        if lonely:
            import warnings
            warnings.warn(f"Class(es) {first_few(lonely)} occur in one validation group only: "
                          "their out-of-fold predictions come from models that never saw "
                          "them, so their scores will be low.", stacklevel=3)

"""Plain-numpy metrics (the engine does not depend on scikit-learn)."""
from __future__ import annotations

import numpy as np


def r2_score(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    ss = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - p) ** 2).sum() / ss) if ss > 0 else float("nan")


def mae(y, p) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(p, float))))


def accuracy(y, p) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(p)))


def balanced_accuracy(y, p) -> float:
    """Mean per-class recall over the classes present in ``y``."""
    y, p = np.asarray(y), np.asarray(p)
    return float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)]))


def macro_f1(y, p, n_classes: int | None = None) -> float:
    y, p = np.asarray(y), np.asarray(p)
    classes = range(n_classes) if n_classes else np.unique(np.concatenate([y, p]))
    f1s = []
    for c in classes:
        tp = np.sum((p == c) & (y == c))
        fp, fn = np.sum((p == c) & (y != c)), np.sum((p != c) & (y == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


# distance scores, the encoder's calibration and its distance mix use at most this many
# samples (pairs grow as the square)
MAX_DISTANCE_ROWS = 512


def capped_rows(n: int, cap: int = MAX_DISTANCE_ROWS, seed: int = 0) -> np.ndarray:
    """Indices of at most ``cap`` of n items, sorted, the same every call."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def pair_distances(emb, offset: float = 0.0):
    """(i, j, d): the pairs i < j and the model's distances between those rows of emb
    (models.distance_head.pair_distances: the one formula; torch is loaded by then)."""
    from .models.distance_head import pair_distances as formula
    return formula(np.asarray(emb, float), offset)


def known_pairs(emb, dist, offset: float = 0.0):
    """(model distances, target distances) of the pairs i < j of ``emb``'s rows whose target
    in ``dist`` (a [n, n] block) is known: NaN marks two samples no distance source covers
    together (samples of studies with trees or matrices of their own)."""
    i, j, d = pair_distances(emb, offset)
    y = np.asarray(dist, float)[i, j]
    known = np.isfinite(y)
    return d[known], y[known]


def distance_r2(emb, dist, offset: float = 0.0) -> float:
    """R² of the model's distances (see pair_distances) against target distances, pairs i < j
    with a known target."""
    d, y = known_pairs(emb, dist, offset)
    return r2_score(y, d) if len(y) > 1 else float("nan")


def distance_scores(d_model, d_true) -> dict:
    """R², Pearson and Spearman of model distances against true (UniFrac) distances."""
    from scipy.stats import spearmanr
    d_model, d_true = np.asarray(d_model, float), np.asarray(d_true, float)
    if len(d_model) < 2:
        return {"r2": float("nan"), "pearson": float("nan"), "spearman": float("nan")}
    return {"r2": r2_score(d_true, d_model), "pearson": float(np.corrcoef(d_model, d_true)[0, 1]),
            "spearman": float(spearmanr(d_model, d_true)[0])}


def embedding_fit(full, learned, block, offset: float, learned_offset: float):
    """How well an encoder's distances fit UniFrac on some samples: (scores, model distances,
    UniFrac distances of the known pairs).  ``full``: the embeddings ``embed`` gives (offset
    ``offset``); ``learned``: their learned part (``learned_offset``), what pretraining fits;
    ``block``: the samples' [n, n] UniFrac block.  scores: R², Pearson and Spearman of the full
    embedding's distances, and 'learned_r2', the learned part's R²."""
    d, D = known_pairs(full, block, offset)
    dl, _ = known_pairs(learned, block, learned_offset)
    scores = distance_scores(d, D)
    scores["learned_r2"] = r2_score(D, dl) if len(D) > 1 else float("nan")
    return scores, d, D


def constant_fraction(pred, tolerance: float = 0.0) -> float:
    """Fraction of predictions equal to the most common one (within ``tolerance`` for
    numbers): 1.0 = the model predicts a constant."""
    pred = np.asarray(pred)
    if not len(pred):
        return float("nan")
    if tolerance > 0:
        mode = np.median(pred)
        return float(np.mean(np.abs(pred - mode) <= tolerance))
    _, counts = np.unique(pred, return_counts=True)
    return float(counts.max() / len(pred))


# regression predictions closer than this many target sds count as "the same value"
REGRESSION_TIE = 0.01


def prediction_scores(y, p, classify: bool) -> dict:
    """The scores every prediction is reported with (fits, summaries, benchmarks): accuracy,
    macro F1, balanced accuracy and the constant-prediction fraction for classes (y, p: the
    same labels or indices); MAE, R² and the constant-prediction fraction for values."""
    y, p = np.asarray(y), np.asarray(p)
    if classify:
        labels = {v: i for i, v in enumerate(sorted(set(y.tolist()) | set(p.tolist()), key=str))}
        yi = np.array([labels[v] for v in y.tolist()])
        pi = np.array([labels[v] for v in p.tolist()])
        return {"accuracy": accuracy(yi, pi), "macro_f1": macro_f1(yi, pi),
                "balanced_accuracy": balanced_accuracy(yi, pi), "const": constant_fraction(pi)}
    return {"mae": mae(y, p), "r2": r2_score(y, p),
            "const": constant_fraction(p, REGRESSION_TIE * float(np.std(np.asarray(y, float))))}


def group_interval(statistic, groups, confidence: float = 0.95, n_resamples: int = 1000,
                   seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of ``statistic(rows)`` that resamples whole groups
    (the independent units: subjects, cages, families), as scipy.stats.bootstrap draws them;
    rows = the indices of every sample of the drawn groups.  (nan, nan) with < 3 groups."""
    from scipy.stats import bootstrap
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < 3:
        return float("nan"), float("nan")
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]

    def stat(drawn):
        return statistic(np.concatenate([members[int(g)] for g in drawn]))
    with np.errstate(all="ignore"):
        res = bootstrap((np.arange(len(uniq)),), stat, vectorized=False, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile",
                        random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


# ------------------------------------------------------------- scores with intervals
N_RESAMPLES = 1000


def primary_metric(n_classes: int):
    """(name, higher is better, metric(y, p) on labels / values)."""
    if n_classes:
        return "macro_f1", True, lambda y, p: macro_f1(y, p, n_classes)
    return "mae", False, mae


def scores_with_interval(y, p, groups, n_classes: int, seed: int = 0) -> dict:
    """The scores of predictions p (labels / values) with the primary metric's interval."""
    name, _, metric = primary_metric(n_classes)
    s = prediction_scores(y, p, bool(n_classes))
    s["interval"] = list(group_interval(lambda r: metric(y[r], p[r]), groups,
                                        n_resamples=N_RESAMPLES, seed=seed))
    return s


def paired_difference(y, a, b, groups, n_classes: int, seed: int = 0) -> dict:
    """a's primary score minus b's (for MAE: b's minus a's, so > 0 is always 'a better'),
    with its interval over groups."""
    _, higher, metric = primary_metric(n_classes)
    sign = 1.0 if higher else -1.0
    d = lambda r: sign * (metric(y[r], a[r]) - metric(y[r], b[r]))
    return {"difference": float(d(np.arange(len(y)))),
            "interval": list(group_interval(d, groups, n_resamples=N_RESAMPLES, seed=seed))}

"""The stacker: how much each component's predictions count.

Non-negative weights that sum to 1, fitted to the components' out-of-fold predictions: the
Brier score of the weighted mean of class probabilities (a proper score that an
over-confident component, as a linear model on few groups often is, does not swamp the way
it swamps the log loss: bench/results/components-dev.md), the squared error of the weighted
mean of values.  ``cross_fitted_stack`` gives the stack's own out-of-fold predictions:
fold k's are weighted by weights fitted on the other folds, so the stack's score is as
honest as its components'.
"""
from __future__ import annotations

import numpy as np


def stack_loss(P, y, n_classes: int):
    """loss(w) of the weighted mean of predictions P [K, n(, C)] against y."""
    P = np.asarray(P, float)
    if n_classes:
        onehot = np.eye(n_classes)[np.asarray(y, np.int64)]
        return lambda w: float(np.mean(((np.tensordot(w, P, 1) - onehot) ** 2).sum(1)))
    return lambda w: float(np.mean((w @ P - y) ** 2))


def stack_weights(P, y, n_classes: int) -> np.ndarray:
    """Weights >= 0, summing to 1, minimising the stack's loss on (out-of-fold) P."""
    from scipy.optimize import minimize
    K = len(P)
    if K == 1:
        return np.ones(1)
    r = minimize(stack_loss(P, y, n_classes), np.full(K, 1 / K), method="SLSQP",
                 bounds=[(0, 1)] * K, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}])
    w = np.clip(r.x, 0, None)
    return w / w.sum() if w.sum() > 0 else np.full(K, 1 / K)


def combine(P, w) -> np.ndarray:
    """The weighted mean of the components' predictions."""
    return np.tensordot(np.asarray(w, float), np.asarray(P, float), 1)


def cross_fitted_stack(P, y, n_classes: int, folds) -> np.ndarray:
    """The stack's out-of-fold predictions: fold k weighted by weights fitted on the others."""
    P, folds = np.asarray(P, float), np.asarray(folds)
    out = np.zeros(P.shape[1:])
    for k in np.unique(folds):
        inside = folds == k
        w = stack_weights(P[:, ~inside], np.asarray(y)[~inside], n_classes)
        out[inside] = combine(P[:, inside], w)
    return out

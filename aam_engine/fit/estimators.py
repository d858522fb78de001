"""The learners of a fit, fitted with scikit-learn and kept as plain arrays
(aam_engine.learners): an L2-regularised linear model whose strength is chosen by inner
cross-validation on the training samples' own groups, and a random forest.

scikit-learn is needed to fit (QIIME 2 has it through q2-sample-classifier), never to predict.
"""
from __future__ import annotations

import numpy as np

from ..learners import Forest, Linear

L2_GRID = np.logspace(-3, 3, 7)          # C (classes); alpha = 100 x these (values)
INNER_FOLDS = 3
FOREST_TREES = 100                        # a fold forest (out-of-fold predictions only)


def inner_folds(y, groups, classify: bool, seed: int):
    """The folds that choose a learner's settings inside its training samples: whole groups
    where there are enough (GroupKFold), stratified by class otherwise, else plain K-fold."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
    n = np.zeros(len(y))
    if groups is not None and len(set(groups)) >= INNER_FOLDS:
        return list(GroupKFold(INNER_FOLDS).split(n, y, groups))
    if classify and min(np.unique(y, return_counts=True)[1]) >= INNER_FOLDS:
        return list(StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed).split(n, y))
    return list(KFold(min(INNER_FOLDS, len(y)), shuffle=True, random_state=seed).split(n))


def grid_search(model, grid, X, y, groups, classify: bool, seed: int):
    """GridSearchCV on the inner folds (macro F1 / MAE), refitted on all of X."""
    from sklearn.model_selection import GridSearchCV
    scoring = "f1_macro" if classify else "neg_mean_absolute_error"
    return GridSearchCV(model, grid, scoring=scoring, cv=inner_folds(y, groups, classify, seed),
                        n_jobs=1, error_score=np.nan).fit(X, y)


def constant(y, n_features: int, n_classes: int) -> Linear:
    """A learner that saw one class (or one value): it predicts it."""
    value = float(np.mean(y)) if not n_classes else 0.0
    classes = np.unique(y).astype(np.int64) if n_classes else np.zeros(0, np.int64)
    return Linear(np.zeros(n_features), np.ones(n_features), np.zeros((1, n_features)),
                  np.array([value]), classes, n_classes)


def linear_search(classify: bool):
    """(the L2 model on standardised features, the grid of its strength): logistic
    regression's C over L2_GRID for classes, ridge's alpha over 100 x L2_GRID for values."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if classify:
        model, grid = LogisticRegression(max_iter=5000), {"logisticregression__C": L2_GRID}
    else:
        model, grid = Ridge(), {"ridge__alpha": L2_GRID * 100}
    return make_pipeline(StandardScaler(), model), grid


def forest(classify: bool, trees: int, seed: int, n_jobs: int = 1):
    """The stack's random forest, unfitted: sqrt of the features per split for classes, a
    third for values."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls, mf = ((RandomForestClassifier, "sqrt") if classify else
               (RandomForestRegressor, 1 / 3))
    return cls(n_estimators=trees, max_features=mf, random_state=seed, n_jobs=n_jobs)


def fit_linear(X, y, n_classes: int, groups=None, seed: int = 0) -> Linear:
    """L2 logistic (n_classes > 0; y = class indices) or ridge regression on standardised X,
    its strength chosen on inner folds.  Returns the fitted arrays."""
    X = np.asarray(X, float)
    if n_classes and len(np.unique(y)) < 2:
        return constant(y, X.shape[1], n_classes)
    best = grid_search(*linear_search(bool(n_classes)), X, y, groups, bool(n_classes),
                       seed).best_estimator_
    sc, lm = best.steps[0][1], best.steps[1][1]
    coef = np.atleast_2d(lm.coef_).astype(float)
    classes = lm.classes_.astype(np.int64) if n_classes else np.zeros(0, np.int64)
    return Linear(sc.mean_.astype(float), sc.scale_.astype(float), coef,
                  np.atleast_1d(lm.intercept_).astype(float), classes, n_classes)


def fit_forest(X, y, n_classes: int, seed: int = 0, trees: int = FOREST_TREES) -> Forest:
    """The stack's random forest (``forest``), as node arrays."""
    X = np.asarray(X, float)
    if n_classes and len(np.unique(y)) < 2:
        return as_forest_constant(y, n_classes)
    return as_forest(forest(bool(n_classes), trees, seed).fit(X, y), n_classes)


def as_forest(rf, n_classes: int) -> Forest:
    """A fitted scikit-learn forest as one set of node arrays."""
    parts, start, offset = [], [], 0
    for est in rf.estimators_:
        t = est.tree_
        value = t.value[:, 0, :].astype(float)
        if n_classes:      # class fractions per node (scikit-learn stores counts or fractions)
            value = value / np.maximum(value.sum(1, keepdims=True), 1e-12)
        leaf = t.children_left < 0
        shift = lambda a: np.where(leaf, -1, a + offset)
        parts.append((t.feature.astype(np.int64), t.threshold.astype(float),
                      shift(t.children_left), shift(t.children_right), value))
        start.append(offset)
        offset += t.node_count
    cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    classes = rf.classes_.astype(np.int64) if n_classes else np.zeros(0, np.int64)
    return Forest(*cat, np.array(start, np.int64), classes, n_classes)


def as_forest_constant(y, n_classes: int) -> Forest:
    c = np.unique(y).astype(np.int64)
    return Forest(np.zeros(1, np.int64), np.zeros(1), np.full(1, -1, np.int64),
                  np.full(1, -1, np.int64), np.ones((1, 1)), np.zeros(1, np.int64), c,
                  n_classes)

"""The baselines every AAM number is compared with, on the very same training and test samples
(bench/ and, after every fit, `compare_with_baselines` for the user's own data):

  rf_tuned   RandomForest, 500 trees, max_features chosen by an inner cross-validation on the
             training part only (grouped by subject where the split is): the strong forest;
  l2_linear  L2-regularised logistic / ridge regression on CLR-transformed abundances
             (pseudocount 1), C / alpha chosen by the same inner cross-validation;
  rf_q2      RandomForest with q2-sample-classifier's defaults (100 trees), as it ships.

Each takes raw counts (samples x features) and returns test predictions.  Nothing is weakened:
all features are kept, the grids are the usual ones, the inner folds never see a test sample.
scikit-learn is needed here only (QIIME 2 has it through q2-sample-classifier); the rest of
the engine does not import it.
"""
from __future__ import annotations

import numpy as np

RF_MAX_FEATURES = ("sqrt", 0.05, 0.2)
L2_GRID = np.logspace(-3, 3, 7)
INNER_FOLDS = 3


def clr(X, pseudocount: float = 1.0):
    L = np.log(np.asarray(X, float) + pseudocount)
    return L - L.mean(1, keepdims=True)


def _cv(y, groups, classify, seed):
    """Inner folds: whole groups where given (GroupKFold), stratified for classes otherwise."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
    n_groups = len(set(groups)) if groups is not None else 0
    if groups is not None and n_groups >= INNER_FOLDS:
        return list(GroupKFold(INNER_FOLDS).split(np.zeros(len(y)), y, groups))
    if classify and min(np.unique(y, return_counts=True)[1]) >= INNER_FOLDS:
        return list(StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)
                    .split(np.zeros(len(y)), y))
    return list(KFold(INNER_FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def _search(model, grid, X, y, groups, classify, seed):
    from sklearn.model_selection import GridSearchCV
    scoring = "f1_macro" if classify else "neg_mean_absolute_error"
    return GridSearchCV(model, grid, scoring=scoring, cv=_cv(y, groups, classify, seed),
                        n_jobs=1, error_score=np.nan).fit(X, y)


def rf_tuned(Xtr, ytr, Xte, classify: bool, groups=None, seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    s = _search(cls(n_estimators=500, random_state=seed, n_jobs=1),
                {"max_features": list(RF_MAX_FEATURES)}, Xtr, ytr, groups, classify, seed)
    return s.predict(Xte), {"max_features": s.best_params_["max_features"]}


def l2_linear(Xtr, ytr, Xte, classify: bool, groups=None, seed: int = 0):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if classify:
        model, grid = LogisticRegression(max_iter=5000), {"logisticregression__C": L2_GRID}
    else:
        model, grid = Ridge(), {"ridge__alpha": L2_GRID * 100}
    s = _search(make_pipeline(StandardScaler(), model), grid, clr(Xtr), ytr, groups, classify,
                seed)
    return s.predict(clr(Xte)), {k.split("__")[1]: float(v) for k, v in s.best_params_.items()}


def rf_q2(Xtr, ytr, Xte, classify: bool, groups=None, seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    return cls(n_estimators=100, random_state=seed, n_jobs=1).fit(Xtr, ytr).predict(Xte), {}


BASELINES = {"rf_tuned": rf_tuned, "l2_linear": l2_linear, "rf_q2": rf_q2}
NAMES = {"rf_tuned": "RandomForest, tuned", "l2_linear": "L2 linear (CLR)",
         "rf_q2": "RandomForest, q2-sample-classifier defaults"}


def _scores(y, p, classify: bool) -> dict:
    from .metrics import accuracy, balanced_accuracy, constant_fraction, macro_f1, mae, r2_score
    y, p = np.asarray(y), np.asarray(p)
    if classify:
        return {"accuracy": accuracy(y, p), "macro_f1": macro_f1(y, p),
                "balanced_accuracy": balanced_accuracy(y, p), "const": constant_fraction(p)}
    return {"mae": mae(y, p), "r2": r2_score(y, p),
            "const": constant_fraction(p, 0.01 * float(np.std(y)))}


# what a fit compares itself with: both baselines, cheap enough to run after every fit
COMPARED = ("rf_q2", "l2_linear")
COMPARED_NAMES = {"rf_q2": "random forest", "l2_linear": "L2 linear model"}


def compare_with_baselines(X, y, classify: bool, val_mask, aam_pred, folds=None,
                           groups=None, seed: int = 0) -> dict:
    """AAM's validation predictions against a random forest and an L2 linear model fitted on
    the same training samples and scored on the same validation samples: with cross-fitted
    heads (``folds``), each baseline is cross-fitted on the same folds (every sample scored
    by the fit that did not see it); otherwise fitted on the rows outside ``val_mask`` and
    scored on those inside.  X: counts [n, features]; y: targets [n]; aam_pred: AAM's
    prediction for the validation rows, in order.  Returns metrics per model and a verdict."""
    y = np.asarray(y)
    val_rows = np.flatnonzero(val_mask)
    preds = {}
    for name in COMPARED:
        fn = BASELINES[name]
        if folds is not None:
            p = np.empty(len(y), dtype=y.dtype)
            for k in np.unique(folds):
                tr, te = folds != k, folds == k
                g = None if groups is None else np.asarray(groups)[tr]
                p[te] = fn(X[tr], y[tr], X[te], classify, g, seed)[0]
            preds[name] = p[val_rows]
        else:
            tr = ~np.asarray(val_mask)
            g = None if groups is None else np.asarray(groups)[tr]
            preds[name] = fn(X[tr], y[tr], X[val_rows], classify, g, seed)[0]
    truth = y[val_rows]
    out = {"samples": int(len(val_rows)), "cross_fitted": folds is not None,
           "aam": _scores(truth, aam_pred, classify),
           **{n: _scores(truth, p, classify) for n, p in preds.items()}}
    key, sign = ("macro_f1", 1) if classify else ("mae", -1)
    best = max(COMPARED, key=lambda n: sign * out[n][key])
    gap = sign * (out["aam"][key] - out[best][key])
    metric = "macro F1" if classify else "MAE"
    word = ("beats" if gap > 0.02 * (1 if classify else abs(out[best][key]) or 1)
            else "trails" if gap < -0.02 * (1 if classify else abs(out[best][key]) or 1)
            else "matches")
    out["verdict"] = (f"On these {len(val_rows)} validation samples AAM {word} the best baseline "
                      f"({COMPARED_NAMES[best]}): {metric} {out['aam'][key]:.3g} against "
                      f"{out[best][key]:.3g}.")
    return out

"""The baselines every benchmark compares AAM with, on the very same training and test
samples:

  rf_tuned   RandomForest, 500 trees, max_features chosen by an inner cross-validation on the
             training part only (grouped by the independent unit where the split is): the
             strong forest;
  l2_linear  L2-regularised logistic / ridge regression on CLR-transformed abundances
             (pseudocount 1), C / alpha chosen by the same inner cross-validation;
  rf_q2      RandomForest with q2-sample-classifier's defaults (100 trees), as it ships.

Each takes raw counts (samples x features) and returns (test predictions, the settings it
chose, and for classes the same fitted model's predictions by the balanced rule that AAM's
classifier uses by default: aam_engine.inputs.decide_classes; None for values).  Nothing is weakened:
all features are kept, the grids are the usual ones, the inner folds never see a test sample.
The inner folds and the L2 grid are the fit's own (aam_engine.fit.estimators): one home.
"""
from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aam_engine.features import clr  # noqa: E402
from aam_engine.fit.estimators import grid_search, linear_search  # noqa: E402

RF_MAX_FEATURES = ("sqrt", 0.05, 0.2)


def outputs(model, Xte, ytr, classify: bool, chosen: dict):
    """(most probable class or value, chosen settings, class by the balanced rule or None)."""
    if not classify:
        return model.predict(Xte), chosen, None
    from aam_engine.inputs import class_shares, decide_classes
    classes = model.classes_
    proba = model.predict_proba(Xte)
    return (model.predict(Xte), chosen,
            classes[decide_classes({"priors": class_shares(ytr, classes)}, proba)])


def rf_tuned(Xtr, ytr, Xte, classify: bool, groups=None, seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    s = grid_search(cls(n_estimators=500, random_state=seed, n_jobs=1),
                    {"max_features": list(RF_MAX_FEATURES)}, Xtr, ytr, groups, classify, seed)
    return outputs(s, Xte, ytr, classify, {"max_features": s.best_params_["max_features"]})


def l2_linear(Xtr, ytr, Xte, classify: bool, groups=None, seed: int = 0):
    s = grid_search(*linear_search(classify), clr(Xtr), ytr, groups, classify, seed)
    return outputs(s, clr(Xte), ytr, classify,
                   {k.split("__")[1]: float(v) for k, v in s.best_params_.items()})


def rf_q2(Xtr, ytr, Xte, classify: bool, groups=None, seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    return outputs(cls(n_estimators=100, random_state=seed, n_jobs=1).fit(Xtr, ytr), Xte, ytr,
                   classify, {})


BASELINES = {"rf_tuned": rf_tuned, "l2_linear": l2_linear, "rf_q2": rf_q2}
NAMES = {"rf_tuned": "RandomForest, tuned", "l2_linear": "L2 linear (CLR)",
         "rf_q2": "RandomForest, q2-sample-classifier defaults"}

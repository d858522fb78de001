"""The components of a stack, each cross-fitted on the same K folds of the training samples
(whole groups per fold): fold k's predictions come from a learner that never saw fold k,
and the component predicts as the mean of its K fold learners.

A component is named LEARNER:BLOCK (learners: linear, forest; blocks: aam_engine.features),
or 'heads' (the model's own prediction heads on the frozen encoder, aam_engine.fit.heads);
aam_engine.stacked.parse reads the names.
Every choice inside a component (an L2 model's strength) is made on inner folds of its own
training samples only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stacked import Component
from .estimators import fit_forest, fit_linear

LEARNERS = {"linear": fit_linear, "forest": fit_forest}


@dataclass
class CrossFit:
    """A component's out-of-fold predictions [n(, classes)] and its fold learners."""
    component: Component
    oof: np.ndarray


def cross_fit(learner: str, block: str, X, y, n_classes: int, folds, groups=None,
              seed: int = 0) -> CrossFit:
    """Fit ``learner`` on the samples outside each fold and predict the fold."""
    fit = LEARNERS[learner]
    oof = np.zeros((len(y), n_classes) if n_classes else len(y))
    models = []
    for k in range(int(folds.max()) + 1):
        out = folds == k
        g = None if groups is None else np.asarray(groups)[~out]
        args = (X[~out], y[~out], n_classes) + ((g, seed) if learner == "linear" else (seed,))
        m = fit(*args)
        oof[out] = m.predict(X[out])
        models.append(m)
    return CrossFit(Component(f"{learner}:{block}", learner, block, models), oof)

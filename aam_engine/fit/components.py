"""The components of a stack, each cross-fitted on the same K folds of the training samples
(whole groups per fold): fold k's predictions come from a learner that never saw fold k
(the out-of-fold predictions the stacker weighs and the report scores); the component then
predicts new samples with the same learner refitted on every training sample.  (Averaging
the K fold learners instead failed where the groups are few: with two cages, one per class,
each fold learner had seen one class and their mean predicted a constant.)

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
from .estimators import FOREST_TREES, fit_forest, fit_linear

LEARNERS = {"linear": fit_linear, "forest": fit_forest}
FINAL_TREES = 500          # the forest that predicts; the fold forests (out of fold) grow fewer


@dataclass
class CrossFit:
    """A component's out-of-fold predictions [n(, classes)] and the component, fitted."""
    component: Component
    oof: np.ndarray


def fit_learner(learner: str, X, y, n_classes: int, groups, seed: int, final: bool = False):
    """One learner on (X, y): a linear model chooses its strength on inner folds of
    ``groups``; a forest grows FINAL_TREES where it is the one that predicts (``final``)."""
    if learner == "linear":
        return LEARNERS["linear"](X, y, n_classes, groups, seed)
    return LEARNERS["forest"](X, y, n_classes, seed, FINAL_TREES if final else FOREST_TREES)


def cross_fit(learner: str, block: str, X, y, n_classes: int, folds, groups=None,
              seed: int = 0) -> CrossFit:
    """Fit ``learner`` on the samples outside each fold and predict the fold; then refit it
    on every sample (the learner the component predicts with)."""
    oof = np.zeros((len(y), n_classes) if n_classes else len(y))
    g = None if groups is None else np.asarray(groups)
    for k in range(int(folds.max()) + 1):
        out = folds == k
        m = fit_learner(learner, X[~out], y[~out], n_classes,
                        None if g is None else g[~out], seed)
        oof[out] = m.predict(X[out])
    final = fit_learner(learner, X, y, n_classes, g, seed, final=True)
    return CrossFit(Component(f"{learner}:{block}", learner, block, [final]), oof)

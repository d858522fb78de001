"""Fitted learners as plain arrays, and their predictions in numpy: what a saved model's stack
runs at prediction (no scikit-learn, no pickle, no training code).

    Linear   standardisation + a linear map: ridge values, or logistic / softmax probabilities
    Forest   decision trees as node arrays: the mean of the trees' leaf values

Each has ``arrays()`` (name -> numpy array, saved as tensors) and ``from_arrays``; a model's
config names the kind.  ``aam_engine.fit.learners`` makes them from scikit-learn estimators.
Classifiers return probabilities over ``n_classes`` columns in the model's class order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass
class Linear:
    mean: np.ndarray          # [p] standardisation of the inputs
    scale: np.ndarray         # [p]
    coef: np.ndarray          # [outputs, p]: 1 row for values and for two classes
    intercept: np.ndarray     # [outputs]
    classes: np.ndarray       # [outputs or 2] class indices the columns stand for; [] values
    n_classes: int = 0        # 0: regression

    kind = "linear"

    def predict(self, X) -> np.ndarray:
        z = ((np.asarray(X, float) - self.mean) / self.scale) @ self.coef.T + self.intercept
        if not self.n_classes:
            return z[:, 0]
        if len(self.classes) == 2 and z.shape[1] == 1:      # binary logistic
            p1 = 1 / (1 + np.exp(-np.clip(z[:, 0], -50, 50)))
            probs = np.stack([1 - p1, p1], 1)
        else:
            probs = softmax(z)
        return place(probs, self.classes, self.n_classes)

    def arrays(self) -> dict:
        return dict(mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept,
                    classes=self.classes)

    @classmethod
    def from_arrays(cls, a: dict, n_classes: int) -> "Linear":
        return cls(a["mean"], a["scale"], a["coef"], a["intercept"], a["classes"], n_classes)


@dataclass
class Forest:
    """Trees as node arrays, concatenated: ``start[t]`` is tree t's root; a node's children
    are absolute indices (-1 at a leaf); ``value`` [nodes, outputs] holds each node's class
    fractions (classifiers) or mean (regressors)."""
    feature: np.ndarray       # [nodes] int
    threshold: np.ndarray     # [nodes] float64: go left when x <= threshold (x as float32)
    left: np.ndarray          # [nodes] int, -1 at leaves
    right: np.ndarray         # [nodes]
    value: np.ndarray         # [nodes, outputs]
    start: np.ndarray         # [trees] int
    classes: np.ndarray       # class indices of value's columns; [] for values
    n_classes: int = 0

    kind = "forest"

    def predict(self, X) -> np.ndarray:
        # the trees compare float32 inputs with float64 thresholds, as scikit-learn does
        X = np.asarray(X, np.float32)
        n = len(X)
        rows = np.arange(n)
        total = np.zeros((n, self.value.shape[1]))
        for root in self.start:
            node = np.full(n, root, dtype=np.int64)
            while True:
                inner = self.left[node] >= 0
                if not inner.any():
                    break
                i = node[inner]
                go_left = X[rows[inner], self.feature[i]] <= self.threshold[i]
                node[inner] = np.where(go_left, self.left[i], self.right[i])
            total += self.value[node]
        mean = total / len(self.start)
        if not self.n_classes:
            return mean[:, 0]
        return place(mean, self.classes, self.n_classes)

    def arrays(self) -> dict:
        return dict(feature=self.feature, threshold=self.threshold, left=self.left,
                    right=self.right, value=self.value, start=self.start, classes=self.classes)

    @classmethod
    def from_arrays(cls, a: dict, n_classes: int) -> "Forest":
        return cls(a["feature"], a["threshold"], a["left"], a["right"], a["value"], a["start"],
                   a["classes"], n_classes)


def place(probs, classes, n_classes: int) -> np.ndarray:
    """Probabilities over the classes a learner saw -> over all the model's classes (a fold
    that missed a class gives it probability 0)."""
    out = np.zeros((len(probs), n_classes))
    out[:, np.asarray(classes, dtype=np.int64)] = probs
    return out


KINDS = {"linear": Linear, "forest": Forest}

"""A fitted stack: what a regressor / classifier predicts with.

Each component is a learner reading one block of features (aam_engine.features), or the
model's own prediction heads; it was cross-fitted on K folds of the training samples (the
out-of-fold predictions the stacker was fitted on) and predicts with the learner refitted on
every training sample (the heads: the mean of the K heads, each trained without its fold).
The stack's prediction is the weighted mean of its components' predictions: class
probabilities, or (normalised) values.

Saved as JSON (``spec``) + tensors (``tensors``: ``stack.<component>.<model>.<array>``, and
``stack.clusters``: the centres of the clusters block, where a component reads it), read back
by ``Stack.load``; nothing here trains or imports scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .features import BLOCKS
from .learners import KINDS

HEADS = "heads"            # the component that is the model's own prediction heads
PREFIX = "stack."
CENTRES = PREFIX + "clusters"   # the clusters block's centres [K, D]
# the blocks that read no encoder: the components on them are the baselines a stack is
# compared with
ABUNDANCE_BLOCKS = ("clr", "relative")


def parse(names) -> list[tuple[str, str]]:
    """'linear:clr,heads' or a list -> [(learner, block)], checked."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        learner, _, block = n.partition(":")
        if n == HEADS:
            out.append((HEADS, ""))
        elif learner in KINDS and block in BLOCKS:
            out.append((learner, block))
        else:
            raise ValueError(
                f"Unknown stack component {n!r}: give LEARNER:BLOCK with a learner of "
                f"{', '.join(KINDS)} and a block of {', '.join(BLOCKS)}, or 'heads'.")
    if not out:
        raise ValueError("The stack needs at least one component.")
    if len(set(out)) < len(out):
        raise ValueError(f"A stack component is named twice in {', '.join(names)}.")
    return out


def reads_encoder(learner: str, block: str) -> bool:
    return learner == HEADS or block not in ABUNDANCE_BLOCKS


@dataclass
class Component:
    name: str                  # e.g. "linear:clr"
    learner: str               # "linear" | "forest" | "heads"
    block: str = ""            # the feature block it reads ("" for the heads)
    models: list = field(default_factory=list)   # the fitted learner(s) (none for the heads)

    def predict(self, feats: dict) -> np.ndarray:
        return np.mean([m.predict(feats[self.block]) for m in self.models], 0)


@dataclass
class Stack:
    components: list
    weights: np.ndarray
    columns: list              # the training reads: the abundance blocks' columns
    n_classes: int = 0         # 0: values
    centres: np.ndarray = None   # the clusters block's centres [K, D] (None: no such block)
    centres_from: str = ""       # where they came from (the encoder's reads or the table's)

    @property
    def blocks(self) -> list[str]:
        return sorted({c.block for c in self.components if c.block})

    @property
    def uses_heads(self) -> bool:
        return any(c.learner == HEADS for c in self.components)

    def component_predictions(self, feats: dict, heads=None) -> list:
        """Each component's predictions ([n] values or [n, classes] probabilities); ``heads``:
        the model's heads' prediction, where a component is the heads."""
        return [heads if c.learner == HEADS else c.predict(feats) for c in self.components]

    def predict(self, feats: dict, heads=None) -> np.ndarray:
        P = self.component_predictions(feats, heads)
        return np.tensordot(np.asarray(self.weights, float), np.asarray(P, float), 1)

    # ---------------------------------------------------------------- saving
    def spec(self) -> dict:
        return {"components": [{"name": c.name, "learner": c.learner, "block": c.block,
                                "models": len(c.models)} for c in self.components],
                "weights": [float(w) for w in self.weights], "columns": list(self.columns),
                "n_classes": int(self.n_classes),
                **({"clusters": {"k": int(len(self.centres)), "from": self.centres_from}}
                   if self.centres is not None else {})}

    def tensors(self) -> dict:
        out = {}
        for i, c in enumerate(self.components):
            for k, m in enumerate(c.models):
                for name, a in m.arrays().items():
                    out[f"{PREFIX}{i}.{k}.{name}"] = np.ascontiguousarray(a)
        if self.centres is not None:
            out[CENTRES] = np.ascontiguousarray(self.centres, np.float32)
        return out

    @classmethod
    def load(cls, spec: dict, tensors: dict) -> "Stack":
        n_classes = int(spec["n_classes"])
        comps = []
        for i, c in enumerate(spec["components"]):
            models = []
            if c["learner"] != HEADS:
                for k in range(int(c["models"])):
                    head = f"{PREFIX}{i}.{k}."
                    arrays = {n[len(head):]: np.asarray(v) for n, v in tensors.items()
                              if n.startswith(head)}
                    models.append(KINDS[c["learner"]].from_arrays(arrays, n_classes))
            comps.append(Component(c["name"], c["learner"], c.get("block", ""), models))
        centres = tensors.get(CENTRES) if "clusters" in spec else None
        if centres is not None and not np.isfinite(np.asarray(centres, float)).all():
            raise ValueError("the stack's cluster centres are not all finite numbers")
        return cls(comps, np.asarray(spec["weights"], float), list(spec["columns"]), n_classes,
                   None if centres is None else np.asarray(centres, np.float64),
                   spec.get("clusters", {}).get("from", ""))


def split_tensors(state: dict) -> tuple[dict, dict]:
    """(the model's own tensors, the stack's) of a saved model's tensors."""
    mine = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    return mine, {k: v for k, v in state.items() if k.startswith(PREFIX)}

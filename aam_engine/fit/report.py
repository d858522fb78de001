"""What a fit says about itself, from out-of-fold predictions only: each component's score
and the stack's, with 95% intervals that resample whole validation groups; the stack against
the best model that reads no encoder (a component, or a baseline a user would fit, on the
same folds); and the encoder's
contribution, the stack against the same stack without its encoder components.  A verdict
says "beats" only when the interval of the difference excludes zero."""
from __future__ import annotations

import numpy as np

from ..metrics import paired_difference, primary_metric, scores_with_interval
from ..stacked import ABUNDANCE_BLOCKS


def word(diff: dict) -> str:
    lo, hi = diff["interval"]
    if np.isfinite(lo) and lo > 0:
        return "beats"
    if np.isfinite(hi) and hi < 0:
        return "trails"
    return "matches"


def fit_report(y, oof: dict, stack_oof, plain_oof, n_classes: int, decode, groups,
               seed: int = 0) -> dict:
    """``oof``: {component: out-of-fold predictions}; ``stack_oof`` / ``plain_oof``: the
    stack's and the stack without encoder components' (None when it has no such part).
    y: class indices or normalised values; ``decode`` turns predictions (and normalised
    values) into what the user reads: class indices by the model's decision rule, or values
    in the target's units; groups: one label per sample."""
    y_out = y if n_classes else decode(y)
    groups = np.asarray(groups)
    P = {n: decode(p) for n, p in oof.items()}
    stack = decode(stack_oof)
    plain = None if plain_oof is None else decode(plain_oof)
    name, higher = primary_metric(n_classes)[:2]
    scores = lambda p: scores_with_interval(y_out, p, groups, n_classes, seed)
    rep = {"metric": name, "samples": int(len(y)), "groups": int(len(set(groups.tolist()))),
           "components": {n: scores(p) for n, p in P.items()}, "stack": scores(stack)}
    base = [n for n in oof if n.split(":")[-1] in ABUNDANCE_BLOCKS]
    if base:
        best = (max if higher else min)(base, key=lambda n: rep["components"][n][name])
        rep["best_baseline"] = best
        rep["versus_best_baseline"] = paired_difference(y_out, stack, P[best], groups,
                                                        n_classes, seed)
    if plain is not None:
        rep["without_encoder"] = scores(plain)
        rep["encoder_contribution"] = paired_difference(y_out, stack, plain, groups,
                                                        n_classes, seed)
    rep["verdict"] = verdict(rep)
    return rep


def signed(x: float, digits: int) -> str:
    """A difference as people read it: fixed decimals, no -0 or 1e-09 noise."""
    x = round(float(x), digits)
    return f"{x + 0.0:+.{digits}f}" if np.isfinite(x) else "nan"


def verdict(rep: dict) -> str:
    metric = "macro F1" if rep["metric"] == "macro_f1" else "MAE"
    digits = 3 if rep["metric"] == "macro_f1" else 2
    sign = lambda x: signed(x, digits)
    fmt = lambda s: f"{s[rep['metric']]:.3g}"
    lines = []
    if "versus_best_baseline" in rep:
        vs, best = rep["versus_best_baseline"], rep["best_baseline"]
        lo, hi = vs["interval"]
        lines.append(
            f"Out of fold, on {rep['samples']} samples in {rep['groups']} groups, the stack "
            f"{word(vs)} the best model that reads no encoder ({best}, fitted on the same "
            f"folds): {metric} "
            f"{fmt(rep['stack'])} against {fmt(rep['components'][best])} (the stack's gain "
            f"{sign(vs['difference'])}, 95% interval {sign(lo)} to {sign(hi)} over "
            "groups).")
    if "encoder_contribution" in rep:
        ec = rep["encoder_contribution"]
        lo, hi = ec["interval"]
        lines.append(f"The encoder's contribution (the stack against the same stack without "
                     f"its encoder components, {metric} {fmt(rep['without_encoder'])}): "
                     f"{sign(ec['difference'])} (95% interval {sign(lo)} to {sign(hi)}).")
    return " ".join(lines) or (f"Out of fold, {metric} {fmt(rep['stack'])} on "
                               f"{rep['samples']} samples.")

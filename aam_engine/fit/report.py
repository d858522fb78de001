"""What a fit says about itself, from out-of-fold predictions only: each component's score
and the stack's, with 95% intervals that resample whole validation groups; the stack against
its best component that reads no encoder (the baseline a user would fit); and the encoder's
contribution, the stack against the same stack without its encoder components.  A verdict
says "beats" only when the interval of the difference excludes zero."""
from __future__ import annotations

import numpy as np

from ..metrics import group_interval, macro_f1, mae, prediction_scores

N_RESAMPLES = 1000


def primary(n_classes: int):
    """(name, higher is better, metric(y, p) on labels / values)."""
    if n_classes:
        return "macro_f1", True, lambda y, p: macro_f1(y, p, n_classes)
    return "mae", False, mae


def as_outputs(P, n_classes: int, decode):
    """Predictions as the user reads them: class indices, or values in the target's units."""
    P = np.asarray(P, float)
    return P.argmax(1) if n_classes else decode(P)


def scored(y, p, groups, n_classes: int, seed: int) -> dict:
    """The scores of predictions p (labels / values) with the primary metric's interval."""
    name, _, metric = primary(n_classes)
    s = prediction_scores(y, p, bool(n_classes))
    s["interval"] = list(group_interval(lambda r: metric(y[r], p[r]), groups,
                                        n_resamples=N_RESAMPLES, seed=seed))
    return s


def difference(y, a, b, groups, n_classes: int, seed: int) -> dict:
    """a's primary score minus b's (for MAE: b's minus a's, so > 0 is always 'a better'),
    with its interval over groups."""
    _, higher, metric = primary(n_classes)
    sign = 1.0 if higher else -1.0
    d = lambda r: sign * (metric(y[r], a[r]) - metric(y[r], b[r]))
    return {"difference": float(d(np.arange(len(y)))),
            "interval": list(group_interval(d, groups, n_resamples=N_RESAMPLES, seed=seed))}


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
    y: class indices or normalised values (decoded here); groups: one label per sample."""
    y_out = y if n_classes else decode(y)
    groups = np.asarray(groups)
    out = lambda P: as_outputs(P, n_classes, decode)
    comps = {n: scored(y_out, out(P), groups, n_classes, seed) for n, P in oof.items()}
    rep = {"metric": primary(n_classes)[0], "samples": int(len(y)),
           "groups": int(len(set(groups.tolist()))), "components": comps,
           "stack": scored(y_out, out(stack_oof), groups, n_classes, seed)}
    base = [n for n in oof if n.split(":")[-1] in ("clr", "relative")]
    if base:
        name, higher, _ = primary(n_classes)
        best = (max if higher else min)(base, key=lambda n: comps[n][name])
        rep["best_baseline"] = best
        rep["versus_best_baseline"] = difference(y_out, out(stack_oof), out(oof[best]),
                                                 groups, n_classes, seed)
    if plain_oof is not None:
        rep["without_encoder"] = scored(y_out, out(plain_oof), groups, n_classes, seed)
        rep["encoder_contribution"] = difference(y_out, out(stack_oof), out(plain_oof),
                                                 groups, n_classes, seed)
    rep["verdict"] = verdict(rep)
    return rep


def signed(x: float) -> str:
    """A difference as people read it: 3 significant digits, no -0 or 1e-09 noise."""
    x = round(float(x), 6)
    return f"{x + 0.0:+.3g}" if np.isfinite(x) else "nan"


def verdict(rep: dict) -> str:
    metric = "macro F1" if rep["metric"] == "macro_f1" else "MAE"
    fmt = lambda s: f"{s[rep['metric']]:.3g}"
    lines = []
    if "versus_best_baseline" in rep:
        vs, best = rep["versus_best_baseline"], rep["best_baseline"]
        lo, hi = vs["interval"]
        lines.append(
            f"Out of fold, on {rep['samples']} samples in {rep['groups']} groups, the stack "
            f"{word(vs)} its best component without the encoder ({best}): {metric} "
            f"{fmt(rep['stack'])} against {fmt(rep['components'][best])} (difference "
            f"{signed(vs['difference'])}, 95% interval {signed(lo)} to {signed(hi)} over "
            "groups).")
    if "encoder_contribution" in rep:
        ec = rep["encoder_contribution"]
        lo, hi = ec["interval"]
        lines.append(f"The encoder's contribution (the stack against the same stack without "
                     f"its encoder components, {metric} {fmt(rep['without_encoder'])}): "
                     f"{signed(ec['difference'])} (95% interval {signed(lo)} to {signed(hi)}).")
    return " ".join(lines) or (f"Out of fold, {metric} {fmt(rep['stack'])} on "
                               f"{rep['samples']} samples.")

"""What every benchmark's table is made of, in one place: mean ± sd, a paired difference
with its interval, the commit that ran, and a --set override of one engine setting."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ms(vals, digits: int = 3) -> str:
    """mean ± sd (ddof 1) of the values given (None left out)."""
    vals = np.array([v for v in vals if v is not None], float)
    if not len(vals):
        return ""
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{vals.mean():.{digits}f} ± {vals.std(ddof=1):.{digits}f}"


def t_interval(vals, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): a t-interval of the mean over the values (splits)."""
    from scipy.stats import t
    v = np.asarray(vals, float)
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    h = float(t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - h, m + h


def interval_cell(vals, digits: int = 3) -> str:
    """'+0.012 [-0.030, +0.054]' and a word: 'ahead' / 'behind' only when the interval
    excludes zero."""
    m, lo, hi = t_interval(vals)
    word = " ahead" if lo > 0 else " behind" if hi < 0 else ""
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{word}"


def commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                       text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return (r.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def parse_sets(items):
    """--set KEY=VALUE (engine settings) -> (model overrides, training overrides)."""
    from aam_engine.config import ModelConfig, TrainConfig
    model, train = {}, {}
    for item in items:
        k, _, v = item.partition("=")
        for cfg, out in ((ModelConfig, model), (TrainConfig, train)):
            if k in cfg.__dataclass_fields__:
                typ = type(cfg.__dataclass_fields__[k].default)
                out[k] = (v.lower() in ("1", "true", "yes")) if typ is bool else typ(v)
                break
        else:
            sys.exit(f"--set {item}: {k!r} is not an engine setting")
    return model, train

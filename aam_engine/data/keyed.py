"""Keyed random numbers: a pure function of (key, indices), with no generator state.

Why: a distributed rank builds only its own samples of a global batch, yet every random choice
about a sample (the ASVs it keeps under asv_selection='sample') or an ASV (its masked
nucleotides) must equal what one process building the whole global batch would draw.  A
sequential generator's draws depend on everything drawn before them; these depend only on the
step's key and on the sample / feature / position they are for, so any split of a batch over
processes draws the same numbers.  The hash is the splitmix64 output function applied once per
key element and index (plenty for masking and subsampling, not for cryptography).
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

# stream tags: the same key gives unrelated numbers to different uses
SELECT, MASK, TRIM = 1, 2, 3


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def as_key(rng) -> tuple[int, ...] | None:
    """A key from an int, a sequence of ints, or a numpy Generator (one draw from it, so a
    caller that passes its generator still gets new numbers each call); None stays None."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return (int(rng.integers(2 ** 63)),)
    if isinstance(rng, (int, np.integer)):
        return (int(rng),)
    return tuple(int(k) for k in rng)


def uniform(key, *index) -> np.ndarray:
    """Floats in (0, 1), one per element of the broadcast ``index`` arrays (non-negative ints),
    fixed by ``key`` (a sequence of ints) and by each element's indices alone."""
    with np.errstate(over="ignore"):
        h = np.zeros((), np.uint64)
        for k in key:
            h = _mix(h + _GOLDEN * np.uint64(int(k) % 2 ** 64))
        for i in index:
            h = _mix(h + _GOLDEN * (np.asarray(i).astype(np.uint64) + np.uint64(1)))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53

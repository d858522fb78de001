"""Reads of other trims: a table's reads matched to the reads a model was trained on.

The same amplicon comes out of different pipelines as different reads: another primer trim
starts it a few bases later, another truncation length ends it earlier (Deblur at 100, 120 or
150 nt).  A read of a new table that agrees base for base with one of the model's training
reads over their whole overlap (at least ``MIN_OVERLAP`` of the shorter read) is the same ASV
read differently; the model reads it as that training read, whose vector its heads learned
on.  A read that overlaps no training read this way (a new ASV, or a known one with a base
changed) is read as it is, by the encoder.

Exact overlap only: a single differing base in the overlap means another ASV.  Among several
training reads that contain a read (its trimmed bases told them apart), the longest overlap
wins, then the read of closest length, then the most abundant in training.
"""
from __future__ import annotations

import numpy as np

from .table import SampleTable

ANCHOR = 20          # k-mer length of the anchors that find candidate overlaps
MIN_OVERLAP = 0.8    # the overlap must cover this fraction of the shorter read


def known_reads(table: SampleTable) -> list[str]:
    """The table's distinct reads, most abundant first (the order breaks ties in matching);
    what a fitted model keeps to recognise other trims of its training reads."""
    totals = {}
    for s, c in zip(table.sequences, np.asarray(table.counts.sum(axis=0)).ravel()):
        totals[s] = totals.get(s, 0.0) + float(c)
    return sorted(totals, key=lambda s: (-totals[s], s))


def match_reads(reads: list[str], known: list[str], min_overlap: float = MIN_OVERLAP,
                anchor: int = ANCHOR) -> list[int | None]:
    """For each read, the index in ``known`` of the training read it is another trim of (its
    own index when it is a training read), or None."""
    index = {}
    for i, t in enumerate(known):
        index.setdefault(t, i)
    out = [index.get(r) for r in reads]
    anchors = {}                          # k-mer -> [(read, position in the read)]
    for j, r in enumerate(reads):
        if out[j] is None and len(r) >= anchor:
            for p in sorted({0, (len(r) - anchor) // 2, len(r) - anchor}):
                anchors.setdefault(r[p:p + anchor], []).append((j, p))
    if not anchors:
        return out
    best, tried = {}, set()
    for i, t in enumerate(known):
        for q in range(len(t) - anchor + 1):
            hits = anchors.get(t[q:q + anchor])
            if not hits:
                continue
            for j, p in hits:
                off = q - p                   # where read j starts in training read i
                if (j, i, off) in tried:
                    continue
                tried.add((j, i, off))
                r = reads[j]
                a, b = max(0, -off), min(len(r), len(t) - off)
                n = b - a
                if n < min_overlap * min(len(r), len(t)) or r[a:b] != t[a + off:b + off]:
                    continue
                score = (n, -abs(len(t) - len(r)), -i)
                if j not in best or score > best[j][0]:
                    best[j] = (score, i)
    for j, (_, i) in best.items():
        out[j] = i
    return out


def as_known_reads(table: SampleTable, known: list[str]) -> tuple[SampleTable, int]:
    """(the table with every read that is another trim of a training read replaced by that
    read, how many features were replaced).  Feature IDs and counts stay as they are."""
    match = match_reads(table.sequences, known)
    seqs = [s if m is None else known[m] for s, m in zip(table.sequences, match)]
    n = sum(a != b for a, b in zip(seqs, table.sequences))
    if not n:
        return table, 0
    return SampleTable(table.counts, table.sample_ids, table.feature_ids, seqs), n

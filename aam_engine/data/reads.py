"""Reads of other trims: a table's reads matched to the reads a model was trained on.

The same amplicon comes out of different pipelines as different reads: another primer trim
starts it a few bases later, another truncation length ends it earlier (Deblur at 100, 120 or
150 nt), primers left on make it longer.  A read of a new table that CONTAINS one of the
model's training reads, or is contained in one (base for base, the shorter at least
``MIN_CONTAINED`` of the longer's length), is the same ASV read differently; the model reads
it as that training read.  Where several training reads qualify, the longest overlap wins;
a tie between training reads that differ is AMBIGUOUS (the read could be either ASV): such a
read is read as it is, and counted.  Any other read (a new ASV, a known one with one base
changed, or one that runs past a training read's end: its unchecked bases could differ) is
read as it is, by the encoder.

``match_reads`` says what happened to every read; its ``summary()`` is the line prediction,
embedding and feature importance report.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .table import SampleTable

ANCHOR = 20            # k-mer length of the anchors that find candidate containments
MIN_CONTAINED = 0.5    # the contained read is at least this fraction of the other's length


@dataclass
class ReadMatch:
    """Per read of a table: the index of the training read it is read as (None: as it is),
    and the counts of reads that are training reads, other trims of one, ambiguous, new."""
    index: list
    same: int = 0
    trimmed: int = 0
    ambiguous: int = 0
    new: int = 0

    def summary(self) -> str:
        n = len(self.index)
        return (f"reads: {n} in the table: {self.same} training reads, {self.trimmed} other "
                f"trims of a training read (read as that read), {self.ambiguous} ambiguous "
                f"(inside several training reads: read as they are), {self.new} new (read "
                "as they are by the encoder)")

    def counts(self) -> dict:
        return {"reads": len(self.index), "same": self.same, "trimmed": self.trimmed,
                "ambiguous": self.ambiguous, "new": self.new}


def known_reads(table: SampleTable) -> list[str]:
    """The table's distinct reads, most abundant first; what a fitted model keeps to
    recognise other trims of its training reads."""
    totals = {}
    for s, c in zip(table.sequences, np.asarray(table.counts.sum(axis=0)).ravel()):
        totals[s] = totals.get(s, 0.0) + float(c)
    return sorted(totals, key=lambda s: (-totals[s], s))


def kmer_index(seqs) -> dict:
    """ANCHOR-mer -> [(sequence index, position)] over every position of every sequence."""
    index = {}
    for i, s in enumerate(seqs):
        for p in range(len(s) - ANCHOR + 1):
            index.setdefault(s[p:p + ANCHOR], []).append((i, p))
    return index


def _long_enough(a: str, b: str) -> bool:
    return min(len(a), len(b)) >= MIN_CONTAINED * max(len(a), len(b))


def containments(reads, known, todo) -> dict:
    """{read index: {training read index: overlap}} for the reads ``todo``: each training
    read that contains the read, or that the read contains."""
    found = {j: {} for j in todo}
    known_index = kmer_index(known)
    for j in todo:                                 # the read inside a training read
        r = reads[j]
        if len(r) < ANCHOR:
            continue
        for i, p in known_index.get(r[:ANCHOR], []):
            if known[i][p:p + len(r)] == r and _long_enough(r, known[i]):
                found[j][i] = len(r)
    read_index = kmer_index([reads[j] for j in todo])
    for i, t in enumerate(known):                  # a training read inside the read
        if len(t) < ANCHOR:
            continue
        for jj, p in read_index.get(t[:ANCHOR], []):
            j = todo[jj]
            if reads[j][p:p + len(t)] == t and _long_enough(t, reads[j]):
                found[j][i] = max(found[j].get(i, 0), len(t))
    return found


def match_reads(reads: list[str], known: list[str]) -> ReadMatch:
    """What each of ``reads`` is read as: the index in ``known`` of its training read (itself,
    or the one it is another trim of), or None."""
    first = {}
    for i, t in enumerate(known):
        first.setdefault(t, i)
    out = ReadMatch([first.get(r) for r in reads])
    out.same = sum(i is not None for i in out.index)
    todo = [j for j, i in enumerate(out.index) if i is None]
    for j, cands in containments(reads, known, todo).items():
        if not cands:
            out.new += 1
            continue
        best = max(cands.values())
        top = sorted(i for i, n in cands.items() if n == best)
        if len({known[i] for i in top}) > 1:
            out.ambiguous += 1
        else:
            out.index[j] = top[0]
            out.trimmed += 1
    return out


def as_known_reads(table: SampleTable, known: list[str]) -> tuple[SampleTable, ReadMatch]:
    """(the table with every read that is another trim of a training read replaced by that
    read, what matching found for the reads its samples hold).  Feature IDs and counts stay
    as they are."""
    present = np.flatnonzero(np.asarray(table.counts.sum(axis=0)).ravel() > 0)
    match = match_reads([table.sequences[j] for j in present], known)
    if not match.trimmed:
        return table, match
    seqs = list(table.sequences)
    for j, m in zip(present, match.index):
        if m is not None:
            seqs[j] = known[m]
    return SampleTable(table.counts, table.sample_ids, table.feature_ids, seqs), match

"""Reads of other trims matched to a model's training reads (aam_engine.data.reads)."""
import numpy as np
import pytest

from aam_engine.data import SampleTable
from aam_engine.data.reads import as_known_reads, known_reads, match_reads


def random_reads(n, length=120, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def test_other_trims_find_their_training_read():
    known = random_reads(50)
    later_shorter = [k[1:91] for k in known[:10]]              # another primer trim and length
    primers_kept = ["GTGCCAGCAGCCGCGGTAA" + k[:100] for k in known[10:20]]   # longer at the start
    tails = [k[5:] + "ACGTACGT" for k in known[20:30]]         # starts later, ends later
    assert match_reads(later_shorter + primers_kept + tails, known) == list(range(30))
    # a training read is itself
    assert match_reads(known[40:45], known) == list(range(40, 45))


def test_new_asvs_stay_new():
    known = random_reads(50)
    snp = list(known[3][1:91])
    snp[45] = "A" if snp[45] != "A" else "C"                   # one base differs: another ASV
    short_overlap = known[7][100:] + "A" * 60                  # 20 shared bases of 80: too few
    new = random_reads(5, seed=1)
    assert match_reads(["".join(snp), short_overlap] + new, known) == [None] * 7


def test_ties_go_to_the_longest_overlap_then_the_most_abundant_read():
    base = random_reads(1, 100)[0]
    known = [base + "AAAA", base + "CCCC", base[:-10]]        # most abundant first
    assert match_reads([base], known) == [0]                   # both contain it: the first
    assert match_reads([base[:-5]], known) == [0]              # not the 90 nt one: shorter overlap
    assert match_reads([base[:-10]], known) == [2]             # itself


def test_known_reads_and_the_table_as_the_model_reads_it():
    known_seqs = random_reads(4)
    t = SampleTable.from_arrays(np.array([[5, 0, 1, 0], [1, 9, 0, 2]]), ["s1", "s2"],
                                known_seqs)
    assert known_reads(t) == [known_seqs[1], known_seqs[0], known_seqs[3], known_seqs[2]]
    new = SampleTable.from_arrays(np.array([[3, 4], [0, 1]]), ["a", "b"],
                                  [known_seqs[2][2:100], random_reads(1, seed=9)[0]])
    mapped, n = as_known_reads(new, known_reads(t))
    assert n == 1 and mapped.sequences == [known_seqs[2], new.sequences[1]]
    assert mapped.feature_ids == new.feature_ids
    assert (mapped.counts != new.counts).nnz == 0
    same, n = as_known_reads(t, known_reads(t))
    assert n == 0 and same is t


@pytest.mark.parametrize("n", [0, 1])
def test_nothing_to_match(n):
    assert match_reads(random_reads(n), []) == [None] * n
    assert match_reads([], random_reads(3)) == []

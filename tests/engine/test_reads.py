"""Reads of other trims matched to a model's training reads (aam_engine.data.reads): one read
contained in the other, ties between different training reads ambiguous, and every read
counted."""
import numpy as np
import pytest

from aam_engine.data import SampleTable
from aam_engine.data.reads import as_known_reads, known_reads, match_reads
from ..conftest import shared_data


def random_reads(n, length=120, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def test_other_trims_find_their_training_read():
    known = random_reads(50)
    later_shorter = [k[1:91] for k in known[:10]]              # another primer trim and length
    primers_kept = ["GTGCCAGCAGCCGCGGTAA" + k for k in known[10:20]]   # longer at the start
    longer = [k + "ACGTACGTAC" for k in known[20:30]]          # a longer truncation
    m = match_reads(later_shorter + primers_kept + longer, known)
    assert m.index == list(range(30))
    assert (m.same, m.trimmed, m.ambiguous, m.new) == (0, 30, 0, 0)
    same = match_reads(known[40:45], known)                    # a training read is itself
    assert same.index == list(range(40, 45)) and same.same == 5


def test_new_asvs_and_unchecked_ends_stay_new():
    known = random_reads(50)
    snp = list(known[3][1:91])
    snp[45] = "A" if snp[45] != "A" else "C"                   # one base differs: another ASV
    past_the_end = known[7][5:] + "ACGTACGT"                   # starts later AND runs past the
    #                                                            end: its last bases are unchecked
    too_short = known[9][10:50]                                # 40 of 120 bases: not a trim
    new = random_reads(5, seed=1)
    m = match_reads(["".join(snp), past_the_end, too_short] + new, known)
    assert m.index == [None] * 8 and m.new == 8 and m.trimmed == 0


def test_the_longest_containment_wins_and_a_tie_between_reads_is_ambiguous():
    base = random_reads(1, 100)[0]
    known = [base + "AAAA", base + "CCCC", base[:-10]]        # most abundant first
    m = match_reads([base, base[:-5], base[:-10], base + "CCCCGG"], known)
    # base and base[:-5] sit in both 104-nt reads: either ASV; base[:-10] is itself;
    # base + CCCCGG contains base + CCCC (104 bases) and base[:-10] (90): the longer wins
    assert m.index == [None, None, 2, 1]
    assert (m.same, m.trimmed, m.ambiguous, m.new) == (1, 1, 2, 0)
    assert "2 ambiguous" in m.summary()


def test_known_reads_and_the_table_as_the_model_reads_it():
    known_seqs = random_reads(4)
    t = SampleTable.from_arrays(np.array([[5, 0, 1, 0], [1, 9, 0, 2]]), ["s1", "s2"],
                                known_seqs)
    assert known_reads(t) == [known_seqs[1], known_seqs[0], known_seqs[3], known_seqs[2]]
    absent = random_reads(1, seed=7)[0]                         # a feature no sample holds
    new = SampleTable.from_arrays(np.array([[3, 4, 0], [0, 1, 0]]), ["a", "b"],
                                  [known_seqs[2][2:100], random_reads(1, seed=9)[0], absent],
                                  allow_empty_samples=True)
    mapped, m = as_known_reads(new, known_reads(t))
    assert m.counts() == {"reads": 2, "same": 0, "trimmed": 1, "ambiguous": 0, "new": 1}
    assert mapped.sequences == [known_seqs[2], new.sequences[1], absent]
    assert mapped.feature_ids == new.feature_ids
    assert (mapped.counts != new.counts).nnz == 0
    same, m = as_known_reads(t, known_reads(t))
    assert m.same == 4 and same is t


@pytest.mark.parametrize("n", [0, 1])
def test_nothing_to_match(n):
    assert match_reads(random_reads(n), []).index == [None] * n
    assert match_reads([], random_reads(3)).index == []


def test_real_reads_trimmed_to_90_nt_collide_and_are_counted():
    """sleep-apnea's 1,298 Deblur reads (100 nt), each cut one base later and to 90 nt (another
    primer and length): a cut read that sits inside one training read only is read as it;
    where the cut removed the bases that told two training reads apart, it is ambiguous,
    read as it is and counted, never given to one of them."""
    from aam_engine.data import load_biom
    t = load_biom(shared_data("sleep-apnea") / "table.biom")
    known = known_reads(t)
    cut = [s[1:91] for s in t.sequences]
    m = match_reads(cut, known)
    assert m.same == 0 and m.trimmed + m.ambiguous + m.new == len(cut) and m.new == 0
    assert 50 < m.ambiguous < 300           # reads that differ only in their cut bases
    for read, i in zip(cut, m.index):
        if i is not None:
            assert read in known[i]
    # every read that no other training read also contains maps back to its own read
    unique = [j for j, r in enumerate(cut) if sum(r in k for k in known) == 1]
    assert all(known[m.index[j]] == t.sequences[j] for j in unique)
    assert len(unique) == m.trimmed

"""The datasets every benchmark scores, in one place: where each lies, how deep it is rarefied,
its targets, and its INDEPENDENT UNIT, the group a split keeps whole (the thing that would leak
if it sat on both sides: a cage whose mice share a microbiome and one exposure, a family,
a subject sampled over time, a house).

    unit(name, md) -> {sample: unit}

Development datasets (DEV) are the ones defaults may be chosen on (their development seeds
only); the report datasets (REPORT_ONLY) were never looked at while choosing anything.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("AAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPUS = ROOT / "build" / "corpus"        # `make corpus`: the corpus studies with V4 reads
RESULTS = ROOT / "bench" / "results"
# split seeds: development (every bench that chooses reads these: bench/components.py all
# eight, bench/accuracy.py --splits dev the first three) and report (from REPORT_FIRST up,
# the first REPORT_SPLITS distinct test parts that no development seed drew: report_splits)
DEV_SEEDS = tuple(range(8))
REPORT_FIRST, REPORT_SPLITS, REPORT_SEARCH = 100, 5, 100


def ibd_family(md) -> dict:
    """ibd-2538's independent unit: a family for the controls (relatives of one another:
    father, mother, sibling / twin, whose subject IDs run in blocks of four hundred:
    s1000100-s1000300, s1000500-s1000700, ...; checked against index_or_family below),
    the subject for the Crohn's patients (one index patient per family, none related to a
    control)."""
    out = {}
    for s, subj, ibd in zip(md.index, md["host_subject_id"], md["ibd"]):
        n = int(str(subj).lstrip("s"))
        out[s] = f"family{(n - 1000100) // 400}" if ibd == "Control" else str(subj)
    fam = {}
    for s, u in out.items():
        if u.startswith("family"):
            fam.setdefault(u, set()).add(md.at[s, "index_or_family"])
    for u, roles in fam.items():       # each block: one father, one mother, one sibling
        if not ({"father", "mother"} <= roles and len(roles) == 3):
            raise ValueError(f"ibd-2538: {u} is not one family ({sorted(roles)})")
    return out


# name: where, files, depth, unit (a column, or a function of the metadata), targets,
# how splits are drawn ('grouped' = a seeded quarter of the units; 'one unit out' = each unit
# in turn, where there are two), and what a reader must know about the labels
DATASETS = {
    "ibd-2538": dict(dir=DATA / "ibd-2538", table="table.qza", sequences=None,
                     tree="tree-pruned.nwk", depth=5000, unit=ibd_family, unit_name="family",
                     targets=[("ibd", True), ("age", False)],
                     caveat="Crohn's samples were collected in 2013-14, controls in 2012: "
                            "collection year is confounded with the label"),
    "sleep-apnea": dict(dir=DATA / "sleep-apnea", table="table.biom", sequences=None,
                        tree="tree.nwk", depth=1000, unit="cage_number", unit_name="cage",
                        folds=2,     # four cages, two per exposure: one of each held out
                        targets=[("exposure_type", True)],
                        caveat="exposure is by cage (two cages each): a held-out cage is "
                               "a held-out exposure group",
                        no_report="its four cages, two per exposure, allow four splits with "
                                  "both exposures in the test part, and development used all "
                                  "four"),
    "moving-pictures-dada2": dict(dir=DATA / "moving-pictures-dada2", table="table.biom",
                                  sequences="seqs.fasta", tree="tree.nwk", depth=1100,
                                  unit="subject", unit_name="person",
                                  targets=[("body-site", True)], splits="one unit out",
                                  no_report="two people: both splits (each person held out "
                                            "once) were used in development"),
    "pd-mice": dict(dir=DATA / "pd-mice", table="table.biom", sequences="seqs.fasta",
                    tree="tree.nwk", depth=1000, unit="cage_id", unit_name="cage",
                    targets=[("genotype", True)]),
    # report only: nobody chose anything on these; the shipped encoder never saw them
    "mlrepo-kostic": dict(dir=CORPUS / "mlrepo-kostic", table="table.biom",
                          sequences="../sequences.fasta", tree="../tree.nwk", depth=1000,
                          unit="subject", unit_name="subject", targets=[("tissue", True)]),
    "mlrepo-ravel": dict(dir=CORPUS / "mlrepo-ravel", table="table.biom",
                         sequences="../sequences.fasta", tree="../tree.nwk", depth=1000,
                         unit="subject", unit_name="woman", targets=[("nugent_category", True)]),
    "mlrepo-turnbaugh": dict(dir=CORPUS / "mlrepo-turnbaugh", table="table.biom",
                             sequences="../sequences.fasta", tree="../tree.nwk", depth=1000,
                             unit="family", unit_name="family", targets=[("obesity", True)]),
    "multi-omics-10333": dict(dir=DATA / "corpus" / "multi-omics-10333", table="table.biom",
                              sequences=None, tree=None, depth=1000, unit="house",
                              unit_name="house", targets=[("room", True), ("village", True)]),
}
DEV = ("ibd-2538", "sleep-apnea", "moving-pictures-dada2", "pd-mice")
REPORT_ONLY = ("mlrepo-kostic", "mlrepo-ravel", "mlrepo-turnbaugh", "multi-omics-10333")


def read_metadata(path):
    """Sample-indexed DataFrame of strings, None where missing (the engine's reader:
    aam_engine.data.metadata, the one the engine CLI uses)."""
    import pandas as pd
    from aam_engine.data.metadata import read_metadata as read
    return pd.DataFrame(read(path), dtype=object)


def usable(v, conv) -> bool:
    """A real value: not missing (aam_engine.data.metadata.missing), and convertible."""
    from aam_engine.data.metadata import missing
    if missing(v):
        return False
    try:
        conv(v)
        return True
    except ValueError:
        return False


def unit(name: str, md) -> dict:
    u = DATASETS[name]["unit"]
    return u(md) if callable(u) else {s: str(v) for s, v in md[u].items()}


def load(name: str, rarefy: bool = True):
    """(table, metadata rows of its samples): samples with metadata, rarefied to the
    dataset's depth (seed 0; samples below it dropped)."""
    from aam_engine.data import load_biom, read_fasta
    spec = DATASETS[name]
    d = spec["dir"]
    if not d.exists():
        sys.exit(f"{d} not found" + (" (run `make corpus`)" if CORPUS in d.parents else ""))
    warnings.simplefilter("ignore")
    seqs = read_fasta(d / spec["sequences"]) if spec["sequences"] else None
    table = load_biom(d / spec["table"], seqs)
    md = read_metadata(d / "metadata.tsv")
    table = table.subset([s for s in table.sample_ids if s in md.index])
    if rarefy:
        table = table.rarefy(spec["depth"], seed=0)
    return table, md.loc[table.sample_ids]


def splits(name: str, table, md, seeds, test_size: float = 0.25):
    """[(seed, train ids, test ids)]: whole units on one side.  'one unit out' datasets give
    one split per unit, whatever the seeds (seed k holds out unit k)."""
    from aam_engine.data import split_ids
    units = unit(name, md)
    if DATASETS[name].get("splits") == "one unit out":
        uniq = sorted(set(units.values()))
        out = []
        for k in seeds:
            if k < len(uniq):
                held = uniq[k]
                out.append((k, [s for s in table.sample_ids if units[s] != held],
                            [s for s in table.sample_ids if units[s] == held]))
        return out
    target, classify = DATASETS[name]["targets"][0]
    k = DATASETS[name].get("folds", round(1 / test_size))
    ids = np.array(table.sample_ids)
    if not classify:
        return [(s, *split_ids(table.sample_ids, test_size, s, units)) for s in seeds]
    from sklearn.model_selection import StratifiedGroupKFold
    y = [md.at[s, target] for s in ids]
    out = []
    for s in seeds:
        folds = StratifiedGroupKFold(k, shuffle=True, random_state=s).split(
            ids, y, [units[i] for i in ids])
        fold = test_with_every_class(name, md, ids, list(folds))
        if fold is None:
            print(f"{name}: split seed {s} left out: no fold's test part holds every class "
                  f"of {target}", file=sys.stderr)
            continue
        out.append((s, ids[fold[0]].tolist(), ids[fold[1]].tolist()))
    return out


def report_splits(name: str, table, md, seeds=None):
    """(the report splits [(seed, train, test)], how many seeds were passed over): from
    REPORT_FIRST up (or the ``seeds`` given), each split whose test part no development seed
    (DEV_SEEDS, on a development dataset) and no earlier report seed drew, until there are
    REPORT_SPLITS (or REPORT_SEARCH seeds were tried).  A dataset with few units (pd-mice:
    twelve distinct splits) repeats splits often; a repeat of a split defaults were chosen on
    would not be held out."""
    seen = ({frozenset(te) for _, _, te in splits(name, table, md, DEV_SEEDS)}
            if name in DEV else set())
    todo = (list(seeds) if seeds is not None else
            range(REPORT_FIRST, REPORT_FIRST + REPORT_SEARCH))
    out, passed = [], 0
    for s in todo:
        got = splits(name, table, md, [s])
        if not got:
            continue
        if frozenset(got[0][2]) in seen:
            passed += 1
            continue
        seen.add(frozenset(got[0][2]))
        out.append(got[0])
        if seeds is None and len(out) == REPORT_SPLITS:
            break
    return out, passed


def test_with_every_class(name, md, ids, folds):
    """The first fold of a seeded stratified grouped K-fold whose test part holds every class
    of every classification target (else of the first): stratification does not promise it
    where units are few and carry one class each (ibd-2538: one Crohn's patient per unit, the
    controls in families), and a test part of one class makes macro F1 meaningless."""
    targets = [t for t, classify in DATASETS[name]["targets"] if classify]
    every = {t: set(labelled(md, t, True, ids)[1]) for t in targets}
    has_all = lambda te, t: set(labelled(md, t, True, ids[te])[1]) == every[t]
    for wanted in (targets, targets[:1]):
        for tr, te in folds:
            if all(has_all(te, t) for t in wanted):
                return tr, te
    return None


def test_key(test) -> str:
    """Which samples a split tests, in 12 characters: a stored run is reused only for the very
    same test part (a change to how splits are drawn reruns the splits it changed)."""
    import hashlib
    return hashlib.sha1("\n".join(sorted(map(str, test))).encode()).hexdigest()[:12]


def n_units(name, md, ids) -> int:
    u = unit(name, md)
    return len({u[s] for s in ids})


def labelled(md, target, classify, ids):
    """(ids with a usable value, their values)."""
    conv = (lambda v: v) if classify else float
    col = md[target]
    ok = [s for s in ids if usable(col[s], conv)]
    return ok, np.array([conv(col[s]) for s in ok], dtype=object if classify else float)


def counts_on(table, known: list[str], mapped: bool) -> np.ndarray:
    """The table's counts in the columns of ``known`` reads (dense [n, len(known)]): each
    read placed by identity, or (``mapped``) by the model's own matching of other trims
    (aam_engine.data.reads); reads with no column dropped.  How a forest on IDs is given the
    careful analyst's best case on a table of other reads."""
    from aam_engine.data.reads import match_reads
    column = {s: i for i, s in enumerate(known)}
    idx = (match_reads(table.sequences, known).index if mapped else
           [column.get(s) for s in table.sequences])
    X = np.zeros((table.n_samples, len(known)))
    dense = table.counts.toarray()
    for j, i in enumerate(idx):
        if i is not None:
            X[:, i] += dense[:, j]
    return X

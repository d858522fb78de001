"""Across studies, where a forest on IDs cannot start: fit on one study, predict another whose
reads come from another pipeline.

Body site: fitted on the Personal Genome Project's samples (corpus `pgp`: Greengenes 97% OTUs
read as their V4 sequence after the 515F primer; stool, mouth, left and right palm), scored
on moving-pictures (shared data: DADA2 ASVs of the same V4 region, 110 nt; gut, tongue, left
and right palm): sites as gut / oral / palm.  No feature ID is shared.  Each seed fits on a
random 80% of the PGP subjects (whole subjects); the test set is all of moving-pictures.
  aam          the default fit (the stack on the shipped encoder); moving-pictures' reads that
               are other trims of PGP reads are read as them, the rest by the encoder;
  rf_tuned / l2_linear   the baselines on the PGP reads, given moving-pictures' reads mapped
               to them by the same matching (the careful analyst's best case), each also
               predicting by AAM's balanced decision rule;
  rf_ids       the tuned forest given moving-pictures' reads as they are (no shared read).
PGP was part of the shipped encoder's corpus; moving-pictures, the study scored, never was.

    python bench/cross_study.py [--seeds 0,1,2]

Needs build/corpus (`make corpus`).  Writes bench/results/cross-study.md (+ .runs.jsonl).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import BALANCED, RUN_LAYOUT, default_fit, shipped_id  # noqa: E402
from baselines import BASELINES  # noqa: E402
from datasets import CORPUS, DATA, RESULTS, counts_on, read_metadata  # noqa: E402
from tables import commit, interval_cell, ms  # noqa: E402

SOURCE_SITES = {"stool": "gut", "mouth": "oral", "left palm": "palm", "right palm": "palm"}
TARGET_SITES = {"gut": "gut", "tongue": "oral", "left palm": "palm", "right palm": "palm"}
LOG = RESULTS / "cross-study.runs.jsonl"


def load_pair():
    from aam_engine.data import load_biom, read_fasta
    if not (CORPUS / "pgp").exists():
        sys.exit(f"{CORPUS / 'pgp'} not found (run `make corpus`)")
    src = load_biom(CORPUS / "pgp" / "table.biom", read_fasta(CORPUS / "sequences.fasta"))
    smd = read_metadata(CORPUS / "pgp" / "metadata.tsv")
    keep = [s for s in src.sample_ids if smd.at[s, "body_site"] in SOURCE_SITES]
    src = src.subset(keep).rarefy(1000, seed=0)
    d = DATA / "moving-pictures-dada2"
    dst = load_biom(d / "table.biom", read_fasta(d / "seqs.fasta"))
    dmd = read_metadata(d / "metadata.tsv")
    dst = dst.subset([s for s in dst.sample_ids if dmd.at[s, "body-site"] in TARGET_SITES])
    dst = dst.rarefy(1000, seed=0)
    y_src = {s: SOURCE_SITES[smd.at[s, "body_site"]] for s in src.sample_ids}
    y_dst = np.array([TARGET_SITES[dmd.at[s, "body-site"]] for s in dst.sample_ids])
    subjects = {s: smd.at[s, "subject"] or s for s in src.sample_ids}
    return src, y_src, subjects, dst, y_dst


def run_seed(seed, src, y_src, subjects, dst, y_dst) -> dict:
    from aam_engine import api
    from aam_engine.data.reads import known_reads
    from aam_engine.metrics import prediction_scores
    rng = np.random.default_rng(seed)
    subj = sorted(set(subjects.values()))
    chosen = set(rng.choice(subj, int(0.8 * len(subj)), replace=False))
    tr = [s for s in src.sample_ids if subjects[s] in chosen]
    ytr = np.array([y_src[s] for s in tr])
    train = src.subset(tr)
    score = lambda p: prediction_scores(y_dst, np.asarray(p), True)
    t0 = time.time()
    m = default_fit(src, tr, ytr, True, subjects, seed)
    rec = {"seed": seed, "n_train": len(tr), "subjects": len(chosen), "n_test": dst.n_samples,
           "aam": score(api.predict(m, dst)[1]), "aam_minutes": (time.time() - t0) / 60}
    known = known_reads(train)
    Xtr, g = counts_on(train, known, False), np.array([subjects[s] for s in tr])
    Xmapped, Xids = counts_on(dst, known, True), counts_on(dst, known, False)
    rec["reads_mapped"] = int((Xmapped.sum(0) > 0).sum())
    for b in ("rf_tuned", "l2_linear"):
        pred, _, balanced = BASELINES[b](Xtr, ytr, Xmapped, True, g, seed)
        rec[b], rec[b + BALANCED] = score(pred), score(balanced)
    rec["rf_ids"] = score(BASELINES["rf_tuned"](Xtr, ytr, Xids, True, g, seed)[0])
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    done = {}
    if LOG.exists():
        done = {r["seed"]: r for r in map(json.loads, LOG.read_text().splitlines())
                if r.get("layout") == RUN_LAYOUT and r.get("encoder") == shipped_id()}
    data = load_pair()
    for seed in [int(s) for s in args.seeds.split(",")]:
        if seed not in done:
            rec = run_seed(seed, *data)
            rec.update(commit=commit(), layout=RUN_LAYOUT, encoder=shipped_id())
            with open(LOG, "a") as f:
                f.write(json.dumps(rec) + "\n")
            done[seed] = rec
            print(json.dumps(rec)[:300], file=sys.stderr, flush=True)
    text = table(list(done.values()))
    (RESULTS / "cross-study.md").write_text(text)
    print(text)


def table(runs) -> str:
    rows = [("AAM, the default fit (reads of other trims read as PGP reads, the rest by the "
             "encoder)", "aam"),
            ("RandomForest (tuned) on PGP reads, moving-pictures reads mapped to them", "rf_tuned"),
            ("L2 linear (CLR) on PGP reads, moving-pictures reads mapped to them", "l2_linear"),
            ("the same tuned forest predicting by AAM's balanced rule", "rf_tuned" + BALANCED),
            ("the same L2 model predicting by AAM's balanced rule", "l2_linear" + BALANCED),
            ("RandomForest (tuned), moving-pictures reads as they are", "rf_ids")]
    mapped = [k for _, k in rows if k not in ("aam", "rf_ids")]
    best = max(mapped, key=lambda b: np.mean([r[b]["macro_f1"] for r in runs]))
    diff = [r["aam"]["macro_f1"] - r[best]["macro_f1"] for r in runs]
    lines = [
        "# Across studies: body site, fitted on PGP, scored on moving-pictures", "",
        f"`python bench/cross_study.py`, commit {', '.join(sorted({r['commit'] for r in runs}))}"
        f"; {len(runs)} seeds, each fitted on 80% of PGP's subjects "
        f"({runs[0]['n_train']} samples), all {runs[0]['n_test']} moving-pictures samples "
        "(2 people) scored; gut / oral / palm. AAM predicts the class that stands highest "
        "against its training share (its default decision); the baselines both ways. "
        "Mean ± sd (ddof 1) over seeds; the seeds vary "
        "the training subjects only, so the interval below is about the fit, not the test "
        f"people. Moving-pictures reads mapped to a PGP read: {ms([r['reads_mapped'] for r in runs], 0)}.",
        "", "| model | macro F1 | accuracy | const |", "|---|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {ms([r[key]['macro_f1'] for r in runs])} | "
                     f"{ms([r[key]['accuracy'] for r in runs])} | "
                     f"{ms([r[key]['const'] for r in runs])} |")
    lines += ["", f"AAM − best baseline ({best}), macro F1: {interval_cell(diff)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

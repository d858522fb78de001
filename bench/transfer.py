"""Does the shipped encoder carry to studies it never saw, and to reads of another trim?

Leave-one-study-out: each study below was never part of the shipped encoder's pretraining
(the shared datasets are not in the corpus; the corpus studies are the encoder's held-out
studies, HELD_OUT_STUDIES of pretrained/build_encoder.py).  On grouped splits of each (whole
subjects / families in the test set), fitted on the training part, scored on the test part:
  aam_corpus   heads on the shipped encoder (the plugin's default without an encoder);
  aam_scratch  an encoder pretrained on the training part's own UniFrac (10 epochs, CPU size,
               the study's tree), then heads on it: what the plugin did before;
  rf_tuned, l2_linear, rf_q2   the baselines of bench/baselines.py, same samples.
Re-trim (ibd-2538, its test subjects): the same fitted models predict the test samples with
every ASV read one base later and ten bases shorter (90 nt, as another primer / trim gives),
against the test samples as they are; a random forest on IDs cannot match such a table at
all, its best case is a forest fitted on training ASVs cut to the common region.

    python bench/transfer.py [--studies ibd-2538,...] [--seeds 0,1,2] [--aam aam_corpus]

Re-trimmed reads are predicted twice: as the plugin does (``match_reads``: a read that is
another trim of a training read is read as that read; aam_engine.data.reads) and read as they
are (``match_reads=False``).

Needs build/corpus (`make corpus`) for the corpus studies.  Every finished split is appended
to bench/results/transfer.runs.jsonl (a rerun skips it); the tables are written to
bench/results/leave-one-study-out.md and bench/results/retrim.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from accuracy import CPU_SIZE, DATA, RESULTS, read_metadata, scores, usable  # noqa: E402
from baselines import BASELINES, NAMES  # noqa: E402

CORPUS = ROOT / "build" / "corpus"
# name: where, table, sequences, tree, depth, group column, target, classify
STUDIES = {
    "ibd-2538": dict(dir=DATA / "ibd-2538", table="table.qza", sequences=None,
                     tree="tree-pruned.nwk", depth=5000, group="host_subject_id", target="ibd"),
    "sleep-apnea": dict(dir=DATA / "sleep-apnea", table="table.biom", sequences=None,
                        tree="tree.nwk", depth=1000, group="host_subject_id",
                        target="exposure_type"),
    "mlrepo-kostic": dict(dir=CORPUS / "mlrepo-kostic", table="table.biom",
                          sequences="../sequences.fasta", tree="../tree.nwk", depth=1000,
                          group="subject", target="tissue"),
    "mlrepo-ravel": dict(dir=CORPUS / "mlrepo-ravel", table="table.biom",
                         sequences="../sequences.fasta", tree="../tree.nwk", depth=1000,
                         group="subject", target="nugent_category"),
    "mlrepo-turnbaugh": dict(dir=CORPUS / "mlrepo-turnbaugh", table="table.biom",
                             sequences="../sequences.fasta", tree="../tree.nwk", depth=1000,
                             group="family", target="obesity"),
}
RETRIM = dict(start=1, length=90, study="ibd-2538")
AAM_MODELS = ("aam_corpus", "aam_scratch")
MODELS = AAM_MODELS + tuple(BASELINES)
LABEL = {"aam_corpus": "AAM, heads on the shipped encoder",
         "aam_scratch": "AAM, encoder pretrained on the study itself", **NAMES}


def load(name):
    from aam_engine.data import load_biom, read_fasta
    spec = STUDIES[name]
    d = spec["dir"]
    if not d.exists():
        sys.exit(f"{d} not found" + (" (run `make corpus`)" if CORPUS in d.parents else ""))
    seqs = read_fasta(d / spec["sequences"]) if spec["sequences"] else None
    table = load_biom(d / spec["table"], seqs)
    md = read_metadata(d / "metadata.tsv")
    table = table.subset([s for s in table.sample_ids if s in md.index
                          and usable(md.at[s, spec["target"]], str)])
    return table.rarefy(spec["depth"], seed=0), md


def matrix(tables, rows_of):
    """Counts of several tables' samples over the union of their features (IDs as given)."""
    feats = sorted(set().union(*(t.feature_ids for t in tables)))
    col = {f: i for i, f in enumerate(feats)}
    out = []
    for t, ids in zip(tables, rows_of):
        X = np.zeros((len(ids), len(feats)))
        sub = t.counts[t.index_of(ids)].toarray()
        X[:, [col[f] for f in t.feature_ids]] = sub
        out.append(X)
    return out


def run_split(name, table, md, seed, shipped, aam=AAM_MODELS):
    from aam_engine import api
    from aam_engine.data import split_ids
    spec = STUDIES[name]
    # a sample without a group value is a group of its own
    groups = {s: md.at[s, spec["group"]] if usable(md.at[s, spec["group"]], str) else s
              for s in table.sample_ids}
    train, test = split_ids(table.sample_ids, 0.25, seed, groups)
    y = {s: md.at[s, spec["target"]] for s in table.sample_ids}
    tr_t, te_t = table.subset(train), table.subset(test)
    g_tr = {s: groups[s] for s in train}
    rec = {"study": name, "seed": seed, "n_train": len(train), "n_test": len(test),
           "n_test_groups": len({groups[s] for s in test}), "models": {}, "minutes": {}}
    # the baselines are fitted below on the test split itself (compare_baselines: the validation)
    tc = dict(random_seed=seed, progress=False, compare_baselines=False)
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.time()
        fitted["aam_corpus"] = api.fit(tr_t, y, "classification", api.ModelConfig(),
                                       api.TrainConfig(**tc), encoder=shipped, groups=g_tr)
        rec["minutes"]["aam_corpus"] = (time.time() - t0) / 60
        if "aam_scratch" in aam:
            t0 = time.time()
            enc = api.pretrain(tr_t, api.ModelConfig(**CPU_SIZE),
                               api.TrainConfig(epochs=10, **tc), tree=spec["dir"] / spec["tree"],
                               groups=g_tr)
            fitted["aam_scratch"] = api.fit(tr_t, y, "classification", api.ModelConfig(),
                                            api.TrainConfig(**tc), encoder=enc, groups=g_tr)
            rec["minutes"]["aam_scratch"] = (time.time() - t0) / 60
    y_te = [y[s] for s in test]
    for m, model in fitted.items():
        ids, labels, _, _ = api.predict(model, te_t)
        rec["models"][m] = scores([y[s] for s in ids], list(labels), True)
    Xtr, Xte = matrix([tr_t, te_t], [train, test])
    y_tr = np.array([y[s] for s in train])
    g = np.array([groups[s] for s in train])
    for m, fn in BASELINES.items():
        t0 = time.time()
        pred, chosen = fn(Xtr, y_tr, Xte, True, g, seed)
        rec["models"][m] = {**scores(y_te, list(pred), True), **chosen}
        rec["minutes"][m] = (time.time() - t0) / 60
    if name == RETRIM["study"]:
        rt = te_t.trimmed(RETRIM["start"], RETRIM["length"])
        rec["retrim"], rec["retrim_as_is"] = {}, {}
        for m, model in fitted.items():
            ids, labels, _, _ = api.predict(model, rt)
            rec["retrim"][m] = scores([y[s] for s in ids], list(labels), True)
            ids, labels, _, _ = api.predict(model, rt, match_reads=False)
            rec["retrim_as_is"][m] = scores([y[s] for s in ids], list(labels), True)
        # a forest on raw IDs: no ASV of the re-trimmed table is a training feature
        Xtr_raw, Xte_raw = matrix([tr_t, rt], [train, test])
        pred, _ = BASELINES["rf_tuned"](Xtr_raw, y_tr, Xte_raw, True, g, seed)
        rec["retrim"]["rf_tuned_raw_ids"] = scores(y_te, list(pred), True)
        # its best case: training ASVs cut to the common region too
        Xtr_c, Xte_c = matrix([tr_t.trimmed(RETRIM["start"], RETRIM["length"]), rt],
                              [train, test])
        pred, _ = BASELINES["rf_tuned"](Xtr_c, y_tr, Xte_c, True, g, seed)
        rec["retrim"]["rf_tuned_common_region"] = scores(y_te, list(pred), True)
    return rec


def mean_sd(values):
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def tables(runs, header):
    by = {}
    for r in runs:
        by.setdefault(r["study"], []).append(r)
    lines = [header, "",
             "| study (target) | splits (n) | test groups | model | macro F1 | balanced acc. | "
             "const | AAM (shipped encoder) − best baseline |", "|---|---|---|---|---|---|---|---|"]
    for study, rs in by.items():
        target = STUDIES[study]["target"]
        best = max(BASELINES, key=lambda m: np.mean([r["models"][m]["macro_f1"] for r in rs]))
        gap = np.array([r["models"]["aam_corpus"]["macro_f1"] - r["models"][best]["macro_f1"]
                        for r in rs])
        for m in [m for m in MODELS if all(m in r["models"] for r in rs)]:
            f1 = [r["models"][m]["macro_f1"] for r in rs]
            lines.append(
                f"| {study} ({target}) | {len(rs)} (seeds {','.join(str(r['seed']) for r in rs)}) "
                f"| {mean_sd([r['n_test_groups'] for r in rs])} | {LABEL[m]} | {mean_sd(f1)} | "
                f"{mean_sd([r['models'][m]['balanced_accuracy'] for r in rs])} | "
                f"{mean_sd([r['models'][m]['const'] for r in rs])} | "
                + (f"{mean_sd(gap)} (vs {LABEL[best]})" if m == "aam_corpus" else "") + " |")
    lines += ["", "Macro F1 per split (seed: the AAM models / best of the baselines):", ""]
    for study, rs in by.items():
        lines.append(f"- {study}: " + "; ".join(
            f"{r['seed']}: " + " / ".join(f"{r['models'][m]['macro_f1']:.3f}"
                                         for m in AAM_MODELS if m in r["models"])
            + f" / {max(r['models'][m]['macro_f1'] for m in BASELINES):.3f}" for r in rs))
    rt = [r for r in runs if "retrim" in r]
    rlines = []
    if rt:
        rlines = [header.replace("Leave-one-study-out", "Re-trimmed reads"), "",
                  f"{RETRIM['study']} test subjects, every read cut to {RETRIM['length']} nt "
                  f"from base {RETRIM['start'] + 1} (one base later, ten shorter), predicted by "
                  "the models fitted on the reads as they are; macro F1, mean ± sd over "
                  f"{len(rt)} grouped splits.", "",
                  "| model | reads as they are | re-trimmed reads | re-trimmed, const |",
                  "|---|---|---|---|"]
        f1 = lambda part, m: mean_sd([r[part][m]["macro_f1"] for r in rt])
        const = lambda part, m: mean_sd([r[part][m]["const"] for r in rt])
        for m in [m for m in AAM_MODELS if all(m in r["models"] for r in rt)]:
            rlines.append(f"| {LABEL[m]} (the plugin: other trims read as the training reads) "
                          f"| {f1('models', m)} | {f1('retrim', m)} | {const('retrim', m)} |")
            if all("retrim_as_is" in r for r in rt):
                rlines.append(f"| {LABEL[m]}, every read as it is (match_reads=False) | – | "
                              f"{f1('retrim_as_is', m)} | {const('retrim_as_is', m)} |")
        rlines.append(f"| RandomForest, tuned, on ASV IDs | {f1('models', 'rf_tuned')} | "
                      f"{f1('retrim', 'rf_tuned_raw_ids')} (no shared feature) | "
                      f"{const('retrim', 'rf_tuned_raw_ids')} |")
        rlines.append("| RandomForest, tuned, on IDs cut to the common region (its best case) "
                      f"| – | {f1('retrim', 'rf_tuned_common_region')} | "
                      f"{const('retrim', 'rf_tuned_common_region')} |")
    return "\n".join(lines) + "\n", "\n".join(rlines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default=",".join(STUDIES))
    ap.add_argument("--seeds", default="0,1,2", help="development split seeds")
    ap.add_argument("--aam", default=",".join(AAM_MODELS),
                    help="AAM models to fit (aam_scratch pretrains on each split: the slow one)")
    args = ap.parse_args()
    aam = tuple(args.aam.split(","))
    import torch
    from aam_engine import pretrained
    shipped = pretrained.default_encoder()
    card = pretrained.card()
    log = RESULTS / "transfer.runs.jsonl"
    import subprocess
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    key = card["weights_sha256"]
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if r.get("encoder_sha256") == key and all(m in r["models"] for m in aam):
                done[(r["study"], r["seed"])] = r
    runs = []
    t0 = time.time()
    for name in args.studies.split(","):
        table, md = load(name)
        for seed in map(int, args.seeds.split(",")):
            r = done.get((name, seed))
            if r is None:
                r = run_split(name, table, md, seed, shipped, aam)
                r["encoder_sha256"], r["commit"] = key, commit
                with open(log, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
                print(f"{name} seed {seed}: " + ", ".join(
                    f"{m} {v['macro_f1']:.3f}" for m, v in r["models"].items()), file=sys.stderr)
            runs.append(r)
    header = (f"Leave-one-study-out, {time.strftime('%Y-%m-%d')}, {platform.platform()}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads; shipped encoder "
              f"{key[:12]} (built at commit {card['commit'][:10]}); engine at commit "
              f"{', '.join(sorted({r.get('commit', '?') for r in runs}))}; "
              f"`python bench/transfer.py --studies {args.studies} --seeds {args.seeds}"
              + (f" --aam {args.aam}" if aam != AAM_MODELS else "")
              + "`; development splits (grouped, "
              f"test size 0.25), held-out samples only; mean ± sd (ddof 1) over splits; const = "
              "fraction of test predictions equal to the most common one")
    loso, rt = tables(runs, header)
    (RESULTS / "leave-one-study-out.md").write_text(loso)
    if rt.strip():
        (RESULTS / "retrim.md").write_text(rt)
    print(loso + "\n" + rt)
    print(f"{(time.time() - t0) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Accuracy: AAM against scikit-learn's RandomForest on every shared dataset with a usable
target, on the same held-out samples of the same (rarefied) tables.

For each dataset and split: pretrain an encoder on the training samples' UniFrac, then fine-tune
a head for each target with the plugin's defaults (only the model size is CPU-sized).  Rows:
  AAM       the fine-tuned model (engine defaults = plugin defaults);
  probe     logistic / ridge regression on the frozen encoder's standardised embeddings
            (their learned part: without the sketch of the ASV set, see set_sketch);
  baselines the random forest tuned by inner grouped CV, the L2 linear model on CLR abundances
            and q2-sample-classifier's random forest (bench/baselines.py), on the raw counts.
Metrics on held-out samples only; the fraction of test predictions equal to the most common
one ('const') sits beside every classifier; the encoder's held-out UniFrac fit (R², Pearson,
Spearman) and optimizer steps / wall time beside AAM.  Splits are grouped by subject wherever
subjects repeat (several seeds; with two subjects, each one held out in turn), plus plain
random splits on ibd-2538 to show the leakage.

    python bench/accuracy.py                                  # development splits (3 seeds)
    python bench/accuracy.py --splits report --tag report     # report splits (5 seeds)
    python bench/accuracy.py --datasets sleep-apnea --seeds 0 # quick look
    python bench/accuracy.py --datasets sleep-apnea --set nuc_penalty=1 --tag nuc1   # ablation

``--set key=value`` overrides one engine default (model or training setting) for AAM, so an
ablation row differs from the default row in exactly one setting.

Two sets of split seeds: the development seeds (DEV_SEEDS; ablations and default choices may
look at them) and the report seeds (REPORT_SEEDS; run only to publish a release's numbers,
never to choose anything).  The defaults were chosen on the development splits of these same
datasets.  Results go to
bench/results/accuracy[-TAG].json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import BASELINES, NAMES as BASELINE_NAMES  # noqa: E402
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("AAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"

# name: files, rarefaction depth, subject column, targets (column, classify), random split too
DATASETS = {
    "ibd-2538": dict(table="table.qza", sequences=None, tree="tree-pruned.nwk", depth=5000,
                     group="host_subject_id", targets=[("ibd", True), ("age", False)],
                     random_split=True),
    "sleep-apnea": dict(table="table.biom", sequences=None, tree="tree.nwk", depth=1000,
                        group="host_subject_id", targets=[("exposure_type", True)]),
    # two people: seed s holds out person s mod 2 (a seeded random pick of the test subject
    # held out the same one for seeds 0, 1 and 2, so three seeds were one split)
    "moving-pictures-dada2": dict(table="table.biom", sequences="seqs.fasta", tree="tree.nwk",
                                  depth=1100, group="subject", targets=[("body-site", True)],
                                  grouped="one subject out"),
    # two donors: donor_status is donor identity, not disease; left out of the default run
    "pd-mice": dict(table="table.biom", sequences="seqs.fasta", tree="tree.nwk", depth=1000,
                    group="mouse_id", targets=[("donor_status", True)]),
}
DEFAULT_DATASETS = ("ibd-2538", "sleep-apnea", "moving-pictures-dada2")
DEV_SEEDS, REPORT_SEEDS = "0,1,2", "100,101,102,103,104"
# CPU-sized model: the only settings that differ from the plugin's defaults (plus epochs)
CPU_SIZE = dict(embedding_dim=64, attention_heads=4, attention_layers=2, token_limit=256)


def read_metadata(path):
    """Sample-indexed DataFrame of strings (QIIME 2 metadata: '#q2:types' row skipped)."""
    import pandas as pd
    md = pd.read_csv(path, sep="\t", dtype=str, comment=None)
    md = md[~md.iloc[:, 0].astype(str).str.startswith("#")]
    return md.set_index(md.columns[0])


def load(name):
    from aam_engine.data import compute_unifrac, load_biom, read_fasta
    spec, d = DATASETS[name], DATA / name
    warnings.simplefilter("ignore")
    seqs = read_fasta(d / spec["sequences"]) if spec["sequences"] else None
    table = load_biom(d / spec["table"], seqs)
    md = read_metadata(d / "metadata.tsv")
    table = table.subset([s for s in table.sample_ids if s in md.index])
    table = table.rarefy(spec["depth"], seed=0)
    table, dist = compute_unifrac(table, d / spec["tree"])
    return table, dist, md.loc[table.sample_ids]


def usable(v, conv) -> bool:
    """A real value: not missing, not a 'Missing: ...' / 'not applicable' placeholder."""
    if not isinstance(v, str) or not v or v.startswith(("Missing", "not ", "Not ")):
        return False
    try:
        conv(v)
        return True
    except ValueError:
        return False


def scores(y, p, classify):
    from aam_engine.metrics import (accuracy, balanced_accuracy, constant_fraction, macro_f1,
                                    mae, r2_score)
    if classify:
        labels = sorted(set(y) | set(p))
        yi, pi = np.array([labels.index(v) for v in y]), np.array([labels.index(v) for v in p])
        return {"accuracy": accuracy(yi, pi), "macro_f1": macro_f1(yi, pi),
                "balanced_accuracy": balanced_accuracy(yi, pi), "const": constant_fraction(pi)}
    return {"mae": mae(y, p), "r2": r2_score(y, p)}


def probe(emb_tr, y_tr, emb_te, classify: bool):
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.preprocessing import StandardScaler
    sc = StandardScaler().fit(emb_tr)
    m = (LogisticRegression(max_iter=5000) if classify else
         RidgeCV(alphas=np.logspace(-2, 4, 13)))
    return m.fit(sc.transform(emb_tr), y_tr).predict(sc.transform(emb_te))


def distance_fit(emb, D, offset=0.0):
    from aam_engine.metrics import distance_scores, pair_distances
    i, j, d = pair_distances(emb, offset)
    return distance_scores(d, D[i, j])


def jaccard_fit(table, dist, train, test):
    """Reference for the encoder: UniFrac predicted as a + b * (Jaccard distance of the two
    samples' ASV sets), a and b fitted on the training pairs; its fit on the test pairs.  It
    needs both samples' ASVs (no embedding), and it shows what sample-level ASV sharing alone
    says about unweighted UniFrac."""
    from scipy.spatial.distance import pdist
    X = table.counts.toarray() > 0

    def pairs(ids):
        ix = table.index_of(ids)
        i, j = np.triu_indices(len(ix), 1)
        return pdist(X[ix], "jaccard"), dist[np.ix_(ix, ix)][i, j]
    b, a = np.polyfit(*pairs(train), 1)
    jt, dt = pairs(test)
    from aam_engine.metrics import distance_scores
    return distance_scores(a + b * jt, dt)


def parse_sets(items):
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


def split(name, table, md, kind, seed, test_size):
    """(train ids, test ids, the groups the fit is given: None on a random split or where
    one training subject is left)."""
    from aam_engine.data import split_ids
    # the random split is the analyst who ignores subjects: its validation split ignores them too
    groups = md[DATASETS[name]["group"]].to_dict() if kind != "random" else None
    if kind == "one subject out":         # the subjects in turn, whatever test_size says
        held = sorted(set(groups.values()))
        held = held[seed % len(held)]
        train = [s for s in table.sample_ids if groups[s] != held]
        test = [s for s in table.sample_ids if groups[s] == held]
    else:
        train, test = split_ids(table.sample_ids, test_size, seed, groups)
    if groups and len({groups[s] for s in train}) < 2:   # one subject left: ungrouped validation
        groups = None
    return train, test, groups


def labelled(md, target, classify, train, test):
    """(value converter, training ids with a usable value, their values, test ids with one)."""
    conv = (lambda v: v) if classify else float
    col = md[target]
    tr_ok = [s for s in train if usable(col[s], conv)]
    return (conv, tr_ok, [conv(col[s]) for s in tr_ok],
            [s for s in test if usable(col[s], conv)])


def run_split(name, table, dist, md, kind, seed, args, model_over, train_over):
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    spec = DATASETS[name]
    train, test, groups = split(name, table, md, kind, seed, args.test_size)
    tr_t, te_t = table.subset(train), table.subset(test)
    itr, ite = table.index_of(train), table.index_of(test)
    mcfg = ModelConfig(**{**CPU_SIZE, **model_over})
    # the model's seed (initialisation, batch order, validation folds); the split's is `seed`
    # (the baselines are fitted below, on the test split: no comparison inside the fit)
    tc = dict(random_seed=seed + args.model_seed_offset, progress=False, compare_baselines=False,
              **train_over)
    pre_cfg = TrainConfig(epochs=args.pretrain_epochs, **tc)
    t0 = time.time()
    enc = api.pretrain(tr_t, mcfg, pre_cfg, distances=(train, dist[np.ix_(itr, itr)]),
                       groups=groups)
    pre_min = (time.time() - t0) / 60
    _, emb_te = api.embed(enc, te_t)
    _, emb_tr = api.embed(enc, tr_t)
    rec = {"dataset": name, "split": kind, "seed": seed, "n_train": len(train),
           "n_test": len(test), "encoder": distance_fit(emb_te, dist[np.ix_(ite, ite)],
                                                                api.distance_offset(enc)),
           "pretrain_steps": enc.extra.get("optimizer_steps"), "pretrain_minutes": pre_min,
           "targets": {}}
    K = enc.model_config.set_sketch
    if K:   # the learned part alone (what the encoder learned; the probe reads it)
        mix = enc.extra["sketch_mix"]
        emb_te, emb_tr = (e[:, :-K] / mix["learned_scale"] for e in (emb_te, emb_tr))
        rec["encoder_learned"] = distance_fit(
            emb_te, dist[np.ix_(ite, ite)], api.distance_offset(enc, learned=True))
        rec["sketch_mix"] = mix
    X = table.counts.toarray()
    for target, classify in spec["targets"]:
        conv, tr_ok, y_tr, te_ok = labelled(md, target, classify, train, test)
        col = md[target]
        t1 = time.time()
        model = api.fit(tr_t.subset(tr_ok), dict(zip(tr_ok, y_tr)),
                        "classification" if classify else "regression", mcfg,
                        TrainConfig(epochs=args.epochs, **tc), encoder=enc, groups=groups)
        out = api.predict(model, te_t.subset(te_ok))
        y_te = [conv(col[s]) for s in out[0]]
        pos_tr = {s: i for i, s in enumerate(train)}
        pos_te = {s: i for i, s in enumerate(test)}
        rec["targets"][target] = {
            "aam": {**scores(y_te, list(out[1]), classify),
                    "steps": model.extra.get("optimizer_steps"),
                    # 0 where the heads do not read the k-mer spectrum (chosen or grouped)
                    "head_kmer_size": model.model_config.head_kmer_size,
                    "minutes": pre_min + (time.time() - t1) / 60},
            "probe": scores(y_te, list(probe(emb_tr[[pos_tr[s] for s in tr_ok]], y_tr,
                                             emb_te[[pos_te[s] for s in out[0]]], classify)),
                            classify),
        }
        g_tr = None if groups is None else np.array([groups[s] for s in tr_ok])
        for b, fn in BASELINES.items():
            pred, chosen = fn(X[table.index_of(tr_ok)], np.array(y_tr),
                              X[table.index_of(out[0])], classify, g_tr, seed)
            rec["targets"][target][b] = {**scores(y_te, list(pred), classify), **chosen}
    rec["minutes"] = (time.time() - t0) / 60
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DEFAULT_DATASETS))
    ap.add_argument("--splits", choices=("dev", "report"), default="dev",
                    help="development seeds (%s) or report seeds (%s; publishing only)"
                         % (DEV_SEEDS, REPORT_SEEDS))
    ap.add_argument("--seeds", help="split seeds (default: those of --splits)")
    ap.add_argument("--random-split", type=int, default=3,
                    help="also this many random splits (seeds 0, 1, ...) where the dataset "
                         "asks for them (ibd-2538)")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=100, help="fine-tuning epochs (most)")
    ap.add_argument("--test-size", type=float, default=0.25)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one engine default for AAM (ablation)")
    ap.add_argument("--model-seed-offset", type=int, default=0,
                    help="train AAM with seed + this on each split (the same splits, RF "
                         "unchanged): how much AAM's scores move with its own seed alone")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--compare", metavar="TAG,TAG,...",
                    help="no training: one table of AAM's scores from earlier result files "
                         "('' = the default run), on the splits they share (ablations)")
    args = ap.parse_args()
    if args.compare is not None:
        text = compare(args.compare.split(","))
        name = "-".join(t or "defaults" for t in args.compare.split(","))
        (RESULTS / f"ablations-{name}.md").write_text(text)
        print(text)
        return
    import torch
    model_over, train_over = parse_sets(args.set)
    if args.seeds is None:
        args.seeds = DEV_SEEDS if args.splits == "dev" else REPORT_SEEDS
    if args.splits == "report":      # random splits are a development diagnostic
        args.random_split = 0
    stem = "accuracy" + (f"-{args.tag}" if args.tag else "")
    # every finished split is appended here; a rerun with the same settings skips it (resume)
    settings = {"set": args.set, "pretrain_epochs": args.pretrain_epochs, "epochs": args.epochs,
                "test_size": args.test_size}
    if args.model_seed_offset:       # absent at 0, so earlier records still resume
        settings["model_seed_offset"] = args.model_seed_offset
    log = RESULTS / f"{stem}.runs.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("settings") == settings:
                done[(rec["dataset"], rec["split"], rec["seed"])] = rec
    runs = []
    for name in args.datasets.split(","):
        if not (DATA / name).exists():
            sys.exit(f"{DATA / name} not found: the benchmark needs ../shared/data/{name}")
        table, dist, md = load(name)
        seeds = [int(s) for s in args.seeds.split(",")]
        if DATASETS[name].get("grouped") == "one subject out":   # as many splits as subjects
            n = len(set(md[DATASETS[name]["group"]]))
            seeds = [s for k, s in enumerate(seeds) if k < n]
        splits = [(DATASETS[name].get("grouped", "grouped"), s) for s in seeds]
        if DATASETS[name].get("random_split"):
            splits += [("random", s) for s in range(args.random_split)]
        for kind, seed in splits:
            rec = done.get((name, kind, seed))
            if rec is None:
                rec = run_split(name, table, dist, md, kind, seed, args, model_over, train_over)
                rec["settings"] = settings
                with open(log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if "jaccard" not in rec:   # no training: computed for resumed splits too
                train, test, _ = split(name, table, md, kind, seed, args.test_size)
                rec["jaccard"] = jaccard_fit(table, dist, train, test)
            runs.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)
    meta = {"command": " ".join(["python", "bench/accuracy.py"] + sys.argv[1:]),
            "machine": platform.platform(), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            # summed over splits, so a resumed benchmark reports its whole cost
            "minutes": sum(r["minutes"] for r in runs),
            "date": time.strftime("%Y-%m-%d"), "model": CPU_SIZE, "set": args.set,
            "splits": args.splits, "commit": _commit(),
            "pretrain_epochs": args.pretrain_epochs, "epochs": args.epochs,
            "unifrac": "unweighted"}
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    text = report(meta, runs)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


def _commit() -> str:
    import subprocess
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                       text=True)
    return r.stdout.strip() or "unknown"


def ms(vals) -> str:
    """mean ± sd (ddof 1) of the values given."""
    vals = np.array([v for v in vals if v is not None], float)
    if not len(vals):
        return ""
    return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else f"{vals.mean():.3f}"


def compare(tags) -> str:
    """AAM's macro-F1 (classifiers) / MAE (regressors) and the encoder's held-out UniFrac R²,
    one row per result file, over the (dataset, split, seed) runs that all files share."""
    loaded = {}
    for tag in tags:   # the per-split logs (committed; the .json files are not)
        log = RESULTS / f"accuracy{'-' + tag if tag else ''}.runs.jsonl"
        runs = [json.loads(line) for line in log.read_text().splitlines()]
        loaded[tag] = (runs[0]["settings"], {(r["dataset"], r["split"], r["seed"]): r
                                             for r in runs})
    shared = sorted(set.intersection(*(set(runs) for _, runs in loaded.values())))
    cols = []
    for ds in dict.fromkeys(k[0] for k in shared):
        cols += [(ds, t, c) for t, c in DATASETS[ds]["targets"]] + [(ds, None, None)]
    head = " | ".join(f"{ds} {t} {'macro F1' if c else 'MAE'}" if t else f"{ds} UniFrac R²"
                      for ds, t, c in cols)
    lines = ["AAM on the same splits, one setting changed per row (mean ± sd over seeds); "
             "`python bench/accuracy.py --compare " + ",".join(tags) + "`", "",
             f"| setting | {head} |", "|---|" + "---|" * len(cols)]
    for tag, (meta, runs) in loaded.items():
        cells = []
        for ds, t, c in cols:
            rs = [runs[k] for k in shared if k[0] == ds]
            cells.append(ms([r["targets"][t]["aam"]["macro_f1" if c else "mae"] for r in rs])
                         if t else ms([r["encoder"]["r2"] for r in rs]))
        label = ", ".join(meta["set"] + ([f"model seed + {meta['model_seed_offset']}"]
                                         if meta.get("model_seed_offset") else []))
        label = label or ("defaults" if not tag else f"defaults of `{tag}`")
        lines.append(f"| {label} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(meta, runs) -> str:
    which = ("report splits (published numbers; nothing was chosen on them)"
             if meta.get("splits") == "report" else
             "development splits (the defaults were chosen on these)")
    lines = [f"AAM vs baselines, {which}, {meta['date']}, commit {meta.get('commit', '?')}, "
             f"{meta['machine']}, {meta['threads']} threads, {meta['minutes']:.0f} min; "
             f"`{meta['command']}`", "",
             "Classification (held-out samples; mean ± sd (ddof 1) over n splits; const = "
             "fraction of test predictions equal to the most common one; last column: AAM's "
             "macro F1 minus the best baseline's, per split):", "",
             "| dataset | target | split (n) | n train/test | model | accuracy | macro F1 | "
             "balanced acc. | const | AAM − best baseline |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    reg = ["", "Regression (last column: AAM's MAE minus the best baseline's; negative = AAM "
           "better):", "",
           "| dataset | target | split (n) | n train/test | model | MAE | R² | AAM − best "
           "baseline |", "|---|---|---|---|---|---|---|---|"]
    enc = ["", "Encoder (held-out UniFrac fit of the embedding `embed` gives; learned part "
           "alone = without the sketch of the ASV set (set_sketch); Jaccard-linear = UniFrac as "
           "a + b x the Jaccard "
           "distance of two samples' ASV sets, fitted on the training pairs: a reference that "
           "reads both samples' ASVs, not an embedding) and cost of one pretrain + fine-tune:",
           "",
           "| dataset | split | UniFrac R² | Pearson | Spearman | learned part alone R² | "
           "Jaccard-linear R² (reference) | "
           "pretrain steps | fine-tune steps | minutes (pretrain + one fine-tune) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in runs:
        if (r["dataset"], r["split"]) not in keys:
            keys.append((r["dataset"], r["split"]))
    for ds, kind in keys:
        rs = [r for r in runs if r["dataset"] == ds and r["split"] == kind]
        label = f"{kind} (n={len(rs)})"
        n = ", ".join(dict.fromkeys(f"{r['n_train']}/{r['n_test']}" for r in rs))
        for target, classify in DATASETS[ds]["targets"]:
            key, better = ("macro_f1", max) if classify else ("mae", min)
            models = [m for m in ("aam", "probe", "rf_tuned", "l2_linear", "rf_q2", "rf")
                      if m in rs[0]["targets"][target]]
            base = [m for m in models if m not in ("aam", "probe")]
            best = better(base, key=lambda m: np.mean([r["targets"][target][m][key] for r in rs]))
            gap = ms([r["targets"][target]["aam"][key] - r["targets"][target][best][key]
                      for r in rs]) + f" (vs {best})"
            for m in models:
                shown = {"aam": "AAM", "probe": "AAM embedding probe",
                         "rf": "RandomForest (q2 defaults)", **BASELINE_NAMES}[m]
                v = lambda k: ms([r["targets"][target][m].get(k) for r in rs])
                g = gap if m == "aam" else ""
                if classify:
                    lines.append(f"| {ds} | {target} | {label} | {n} | {shown} | {v('accuracy')} "
                                 f"| {v('macro_f1')} | {v('balanced_accuracy')} | {v('const')} "
                                 f"| {g} |")
                else:
                    reg.append(f"| {ds} | {target} | {label} | {n} | {shown} | {v('mae')} "
                               f"| {v('r2')} | {g} |")
        first = DATASETS[ds]["targets"][0][0]
        enc.append(f"| {ds} | {label} | {ms([r['encoder']['r2'] for r in rs])} | "
                   f"{ms([r['encoder']['pearson'] for r in rs])} | "
                   f"{ms([r['encoder']['spearman'] for r in rs])} | "
                   f"{ms([r.get('encoder_learned', {}).get('r2') for r in rs])} | "
                   f"{ms([r.get('jaccard', {}).get('r2') for r in rs])} | "
                   f"{ms([r['pretrain_steps'] for r in rs])} | "
                   f"{ms([r['targets'][first]['aam']['steps'] for r in rs])} | "
                   f"{ms([r['targets'][first]['aam']['minutes'] for r in rs])} |")
    return "\n".join(lines + (reg if len(reg) > 5 else []) + enc) + "\n"


if __name__ == "__main__":
    main()

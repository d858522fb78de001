"""Accuracy: the default fit against the baselines a user would fit instead, on held-out
independent units (cages, families, subjects, houses) of every shared dataset.

For each dataset and split (bench/datasets.py: whole units on one side), fitted on the
training part, scored on the test part:
  aam        the plugin's default fit: the stack on the shipped encoder (no tree given);
  aam_plain  the same stack without its encoder components (aam_engine.stacked
             ABUNDANCE_BLOCKS): AAM minus this row is the encoder's contribution;
  rf_tuned, l2_linear, rf_q2   the baselines of bench/baselines.py, on the same samples.

    python bench/accuracy.py                                  # development splits
    python bench/accuracy.py --splits report                  # report splits (publishing only)
    python bench/accuracy.py --datasets sleep-apnea --seeds 0 # quick look
    python bench/accuracy.py --set stack=heads --tag heads    # one setting changed (ablation)
    python bench/accuracy.py --encoder build/candidate-encoder --only-aam --tag candidate
                                                # another encoder in place of the shipped one

Two sets of split seeds (bench/datasets.py): development (the first three of DEV_SEEDS, on
the development datasets: defaults may be chosen on them; bench/components.py reads all
eight) and report (report_splits: on every dataset, run only to publish, seeds from 100 up
whose test part no development seed and no earlier report seed drew, five of them).  Every
finished split is appended to bench/results/accuracy[-TAG]-<splits>.runs.jsonl (a rerun with
the same settings resumes); the table goes to the .md beside it.
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import BASELINES, NAMES as BASELINE_NAMES  # noqa: E402
from datasets import (DATASETS, DEV, DEV_SEEDS, REPORT_ONLY, RESULTS, labelled, load,  # noqa
                      n_units, report_splits, splits, test_key, unit)
from tables import commit, interval_cell, ms, parse_sets  # noqa: E402

ACCURACY_DEV_SEEDS = DEV_SEEDS[:3]      # the end-to-end development splits
PLAIN = "linear:relative,forest:relative"
BALANCED = "_balanced"      # a baseline predicting by the balanced rule, as AAM does
MODELS = (("aam", "aam_plain") + tuple(BASELINES)
          + tuple(b + BALANCED for b in BASELINES))
LABEL = {"aam": "AAM (default fit: the stack on the shipped encoder)",
         "aam_plain": "the same stack without its encoder components", **BASELINE_NAMES,
         **{b + BALANCED: f"{n}, balanced decision" for b, n in BASELINE_NAMES.items()}}
# what a stored run holds: 3 = the default stack on the encoder's clusters; 2 = AAM with its
# decision rule, the baselines both ways (runs of an older layout are not resumed)
RUN_LAYOUT = 3


def default_fit(table, ids, y, classify, units, seed, over=({}, {}), encoder=None, tree=None):
    """The fit every benchmark scores: the plugin's defaults (settings in ``over``: model,
    training overrides) on the samples ``ids`` of ``table`` with targets ``y``, folds keeping
    each of ``units`` whole, quiet and without the baselines' report.  ``encoder`` / ``tree``
    as api.fit takes them (a tree: an encoder is pretrained on these samples first)."""
    from aam_engine import api
    return api.fit(table.subset(ids), dict(zip(ids, y)),
                   "classification" if classify else "regression", api.ModelConfig(**over[0]),
                   api.TrainConfig(progress=False, compare_baselines=False, random_seed=seed,
                                   **over[1]),
                   encoder=encoder, groups={s: units[s] for s in ids},
                   options=api.Options(tree=tree))


def fit_aam(table, tr, ytr, te, classify, groups, seed, over, tree=None, encoder=None):
    """The default fit on the training part (given the study's tree: an encoder is
    pretrained on the training part first) and its predictions for the test part."""
    from aam_engine import api
    t0 = time.time()
    m = default_fit(table, tr, ytr, classify, groups, seed, over, encoder=encoder, tree=tree)
    minutes = (time.time() - t0) / 60
    out = api.predict(m, table.subset(te))
    return np.asarray(out[1]), {"minutes": minutes,
                                "weights": m.extra.get("stack", {}).get("weights")}


def run_split(name, table, md, seed, train, test, over, tree_epochs: int = 0,
              only_aam: bool = False, encoder=None) -> dict:
    from aam_engine.metrics import prediction_scores
    units = unit(name, md)
    X = table.counts.toarray()
    rec = {"dataset": name, "seed": seed,
           "units": [n_units(name, md, train), n_units(name, md, test)],
           "test_units": sorted({units[s] for s in test}), "targets": {}}
    for target, classify in DATASETS[name]["targets"]:
        tr, ytr = labelled(md, target, classify, train)
        te, yte = labelled(md, target, classify, test)
        if classify and len(set(ytr)) < 2:
            continue
        res = {"n": [len(tr), len(te)]}
        spec = DATASETS[name]
        tree = str(spec["dir"] / spec["tree"]) if tree_epochs else None
        train_over = dict(over[1], **({"epochs": tree_epochs} if tree_epochs else {}))
        for model, stack in (("aam", None),) + ((("aam_plain", PLAIN),) if not only_aam else ()):
            mo = dict(over[0], **({"stack": stack} if stack else {}))
            pred, info = fit_aam(table, tr, ytr, te, classify, units, seed, (mo, train_over),
                                 tree, encoder)
            res[model] = {**prediction_scores(yte, pred, classify), **info}
        g = np.array([units[s] for s in tr])
        for b, fn in ({} if only_aam else BASELINES).items():
            pred, chosen, balanced = fn(X[table.index_of(tr)], ytr, X[table.index_of(te)],
                                        classify, g, seed)
            res[b] = {**prediction_scores(yte, pred, classify), **chosen}
            if balanced is not None:
                res[b + BALANCED] = {**prediction_scores(yte, balanced, classify), **chosen}
        rec["targets"][target] = res
        print(name, seed, target, {m: round(res[m]["macro_f1" if classify else "mae"], 3)
                                   for m in MODELS if m in res}, file=sys.stderr, flush=True)
    return rec


def encoder_id(path) -> str:
    """An encoder directory named by its weights (runs with other weights are not resumed)."""
    import hashlib
    return hashlib.sha256((Path(path) / "weights.safetensors").read_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def shipped_id() -> str:
    """The shipped encoder's weights id: part of every stored run's settings, so that a run of
    another shipped encoder is never resumed as this one's (hashed once per process: callers
    check it per stored run)."""
    from aam_engine.pretrained import DEFAULT_DIR
    return encoder_id(DEFAULT_DIR)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", choices=("dev", "report"), default="dev")
    ap.add_argument("--datasets", help="default: the development datasets (dev), every "
                                       "dataset (report)")
    ap.add_argument("--seeds", help="split seeds (default: those of --splits)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change one engine default for AAM (ablation)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--tree-epochs", type=int, default=0,
                    help="give the fit the study's tree: an encoder is pretrained on the "
                         "training part for this many epochs first (0: the shipped encoder)")
    ap.add_argument("--encoder", help="an encoder's model directory in place of the shipped "
                                      "one (e.g. a candidate of shipped_encoder/)")
    ap.add_argument("--only-aam", action="store_true",
                    help="only AAM's default fit (an ablation beside a full run's baselines)")
    ap.add_argument("--compare", metavar="TAG,TAG,...",
                    help="no training: AAM of earlier runs (\"\" = the untagged run) on the "
                         "splits they share, each against the first -> ablation-TAGS.md")
    args = ap.parse_args()
    if args.compare is not None:
        return compare(args.compare.split(","), args.splits)
    datasets = (args.datasets.split(",") if args.datasets else
                list(DEV) + (list(REPORT_ONLY) if args.splits == "report" else []))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    over = parse_sets(args.set)
    stem = f"accuracy{'-' + args.tag if args.tag else ''}-{args.splits}"
    log = RESULTS / f"{stem}.runs.jsonl"
    encoder = None
    if args.encoder and args.tree_epochs:
        ap.error("--encoder and --tree-epochs exclude each other: a fit given an encoder does "
                 "not pretrain one")
    if args.encoder:
        from aam_engine.io import read_model_dir
        encoder = read_model_dir(args.encoder)
    settings = {"set": args.set, "layout": RUN_LAYOUT,
                "encoder": encoder_id(args.encoder) if args.encoder else shipped_id(),
                **({"tree_epochs": args.tree_epochs} if args.tree_epochs
                                    else {}), **({"only_aam": True} if args.only_aam else {})}
    done = {(r["dataset"], r["seed"]): r for r in stored_runs(args.splits, args.tag, settings)}
    warnings.simplefilter("ignore")
    runs, dropped = [], {}
    for name in datasets:
        if args.splits == "report" and DATASETS[name].get("no_report"):
            dropped[name] = DATASETS[name]["no_report"]
            continue
        table, md = load(name)
        if args.splits == "report":     # every split a development seed drew is passed over
            todo, passed = report_splits(name, table, md, seeds)
            if passed:
                dropped[name] = passed
        else:
            todo = splits(name, table, md, seeds or ACCURACY_DEV_SEEDS)
        for seed, train, test in todo:
            rec = done.get((name, seed))
            if rec is None or rec.get("test_key") != test_key(test):
                t0 = time.time()
                rec = run_split(name, table, md, seed, train, test, over, args.tree_epochs,
                                args.only_aam, encoder)
                rec.update(settings=settings, minutes=(time.time() - t0) / 60, commit=commit(),
                           test_key=test_key(test))
                with open(log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            runs.append(rec)
    import torch
    meta = {"command": " ".join(["python", "bench/accuracy.py"] + sys.argv[1:]),
            "machine": platform.platform(), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"), "commits": sorted({r["commit"] for r in runs}),
            "minutes": sum(r["minutes"] for r in runs), "splits": args.splits,
            "dropped": dropped}
    if args.only_aam:       # no baselines, no table: `--compare` sets its runs side by side
        print(f"{len(runs)} runs in {log}; compare them with --compare")
        return
    text = report(meta, runs)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


def report(meta, runs) -> str:
    which = ("report splits (run to publish; nothing was chosen on them)"
             if meta["splits"] == "report" else
             "development splits (the defaults were chosen on these)")
    lines = [f"# The default fit against the baselines, {which}", "",
             f"`{meta['command']}`: {meta['date']}, commit {', '.join(meta['commits'])}, "
             f"{meta['machine']}, {meta['threads']} threads, {meta['minutes']:.0f} min. "
             "Held-out samples only; whole independent units in the test part; mean ± sd "
             "(ddof 1) over n splits. AAM − best baseline: the paired difference per split "
             "(macro F1: AAM minus the baseline; MAE: the baseline minus AAM, so > 0 is AAM "
             "better), its mean and a 95% t-interval over splits (splits share training "
             "units, so read it as optimistic); the best baseline is the one with the best "
             "mean here, chosen after the fact. AAM's classifier predicts by the balanced "
             "rule (the class whose probability stands highest against its training share; "
             "ModelConfig.decision); the baselines predict their most probable class, as "
             "they ship, and the rows 'balanced decision' are the same fitted baselines "
             "predicting by AAM's rule: the column 'either decision' compares AAM with the "
             "best of all six. const = fraction of test predictions equal to the most "
             "common one.", ""]
    if meta.get("dropped"):
        lines += ["Not reported, or fewer splits: " + "; ".join(
            f"{k}: {v if isinstance(v, str) else f'{v} seed(s) passed over (their split was drawn by a development seed or an earlier report seed)'}"
            for k, v in meta["dropped"].items()) + ".", ""]
    lines += ["| dataset: target | units train/test | n | model | score | R² | const | "
              "AAM − best baseline | AAM − best baseline, either decision | "
              "encoder's contribution |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in runs):
        rs = [r for r in runs if r["dataset"] == name]
        for target, classify in DATASETS[name]["targets"]:
            rt = [r["targets"][target] for r in rs if target in r["targets"]]
            if not rt or "rf_q2" not in rt[0]:          # an AAM-only run: see --compare
                continue
            lines += table_rows(name, target, classify, rs, rt)
    notes = [f"- {n}: {DATASETS[n]['caveat']}." for n in dict.fromkeys(r["dataset"] for r in runs)
             if DATASETS[n].get("caveat")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def compare(tags, splits_kind) -> None:
    """AAM's score in each tagged run, on the (dataset, seed) splits every run has, and its
    paired difference from the first run's (> 0: better), with a 95% t-interval.  A tag's
    runs are those with the settings of its latest run (another encoder's, or an older
    layout's, are left out)."""
    runs, settings = {}, {}
    for tag in tags:
        log = RESULTS / f"accuracy{'-' + tag if tag else ''}-{splits_kind}.runs.jsonl"
        recs = [json.loads(line) for line in log.read_text().splitlines()]
        settings[tag] = recs[-1].get("settings")
        runs[tag] = {(r["dataset"], r["seed"]): r for r in recs
                     if r.get("settings") == settings[tag]}
    shared = sorted(set.intersection(*(set(r) for r in runs.values())))
    label = lambda t: t or "default"
    lines = [f"# AAM, one change per row, {splits_kind} splits", "",
             f"`python bench/accuracy.py --splits {splits_kind} --compare {','.join(tags)}`; "
             "mean ± sd (ddof 1) over the splits all runs share; difference from "
             f"`{label(tags[0])}`: mean and 95% t-interval over splits (> 0: better). "
             "Settings: " + "; ".join(f"{label(t)} {json.dumps(settings[t])}" for t in tags)
             + ".", "",
             "| dataset: target | n | " + " | ".join(label(t) for t in tags) + " | "
             + " | ".join(f"{label(t)} − {label(tags[0])}" for t in tags[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(tags) - 1)]
    for name in dict.fromkeys(k[0] for k in shared):
        for target, classify in DATASETS[name]["targets"]:
            key, sign = ("macro_f1", 1) if classify else ("mae", -1)
            keys = [k for k in shared if k[0] == name and all(
                target in runs[t][k]["targets"] for t in tags)]
            vals = {t: [runs[t][k]["targets"][target]["aam"][key] for k in keys] for t in tags}
            diffs = [interval_cell([sign * (a - b) for a, b in zip(vals[t], vals[tags[0]])])
                     for t in tags[1:]]
            lines.append(f"| {name}: {target} ({key}) | {len(keys)} | "
                         + " | ".join(ms(vals[t]) for t in tags) + " | " + " | ".join(diffs)
                         + " |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"ablation-{'-'.join(label(t) for t in tags)}-{splits_kind}.md").write_text(text)
    print(text)


def table_rows(name, target, classify, rs, rt) -> list[str]:
    key = "macro_f1" if classify else "mae"
    sign = 1 if classify else -1
    versus = lambda b: interval_cell([sign * (t["aam"][key] - t[b][key]) for t in rt])
    best = best_baseline(rt, key, sign)
    both = [m for m in MODELS[2:] if all(m in t for t in rt)]
    strict = best_baseline(rt, key, sign, both)
    contrib = [sign * (t["aam"][key] - t["aam_plain"][key]) for t in rt]
    units = ", ".join(dict.fromkeys(f"{r['units'][0]}/{r['units'][1]}" for r in rs))
    metric = "macro F1" if classify else "MAE"
    out = []
    for m in (m for m in MODELS if all(m in t for t in rt)):
        v = lambda k: ms([t[m].get(k) for t in rt])
        last = ((f"{versus(best)} (vs {best})",
                 f"{versus(strict)} (vs {strict})" if classify else "",
                 interval_cell(contrib)) if m == "aam" else ("", "", ""))
        out.append(f"| {name}: {target} ({metric}) | {units} | {len(rt)} | {LABEL[m]} | "
                   f"{v(key)} | {'' if classify else v('r2')} | {v('const')} | "
                   + " | ".join(last) + " |")
    return out


def stored_runs(splits_kind: str = "report", tag: str = "", settings=None) -> list[dict]:
    """The stored runs of the untagged default fit (or ``tag``) in today's layout: the last
    one of each (dataset, seed)."""
    log = RESULTS / f"accuracy{'-' + tag if tag else ''}-{splits_kind}.runs.jsonl"
    settings = settings or {"set": [], "layout": RUN_LAYOUT, "encoder": shipped_id()}
    runs = {}
    for line in (log.read_text().splitlines() if log.exists() else []):
        r = json.loads(line)
        if r.get("settings") == settings:
            runs[(r["dataset"], r["seed"])] = r
    return list(runs.values())


def best_baseline(rt, key: str, sign: int, among=tuple(BASELINES)) -> str:
    """The baseline with the best mean score over the splits rt (chosen after the fact)."""
    return max(among, key=lambda b: sign * np.mean([t[b][key] for t in rt]))


if __name__ == "__main__":
    main()

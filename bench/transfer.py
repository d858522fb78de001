"""Does the shipped encoder carry to studies it never saw, and to reads of another trim?

Leave-one-study-out: every study here was never part of the shipped encoder's pretraining
(the shared datasets are not in its corpus; the mlrepo-* studies are the ones it held out).
On the report splits of each (bench/datasets.py: whole independent units in the test part),
the runs of `python bench/accuracy.py --splits report` (the default fit on the shipped
encoder, the stack without its encoder components, the baselines), beside
  aam_own    the same stack on an encoder pretrained (OWN_EPOCHS) on the training part's own
             UniFrac (the study's tree): what a fit given a tree does (first OWN_SEEDS seeds).
Re-trim (ibd-2538, development splits): the test part with every read one base later and ten
bases shorter (90 nt, as another primer and length give), predicted by the same fitted models
with reads of other trims read as their training reads (the default), and read as they are;
the tuned forest on the training reads, given the test reads mapped the same way (its best
case), and given them as they are (no shared feature).

    python bench/transfer.py                    # both parts (after accuracy.py --splits report)
    python bench/transfer.py --part retrim --seeds 0

Needs build/corpus (`make corpus`) for the mlrepo studies.  Runs are appended to
bench/results/transfer.runs.jsonl (a rerun resumes); tables: leave-one-study-out.md, retrim.md.
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
from accuracy import (BASELINE_NAMES, BASELINES, LABEL, MODELS, RUN_LAYOUT,  # noqa
                      best_baseline, default_fit, shipped_id, stored_runs)
from datasets import (DATASETS, RESULTS, counts_on, labelled, load, report_splits, splits,  # noqa
                      test_key, unit)
from tables import commit, interval_cell, ms  # noqa: E402

# every study with report splits (bench/datasets.py: sleep-apnea and moving-pictures have
# none that development did not use)
# (the slowest to pretrain on last)
LOSO = ("pd-mice", "mlrepo-kostic", "mlrepo-turnbaugh", "multi-omics-10333", "mlrepo-ravel",
        "ibd-2538")
RETRIM = dict(start=1, length=90, study="ibd-2538")
OWN_EPOCHS = 10
OWN_SEEDS = 3
LOG = RESULTS / "transfer.runs.jsonl"


def own_encoder(name, table, train, groups, seed):
    """An encoder pretrained on the training part's UniFrac (the study's own tree)."""
    from aam_engine import api
    spec = DATASETS[name]
    enc = api.pretrain(table.subset(train), api.ModelConfig(preset="cpu"),
                       api.TrainConfig(epochs=OWN_EPOCHS, progress=False, random_seed=seed),
                       tree=str(spec["dir"] / spec["tree"]),
                       groups={s: groups[s] for s in train})
    return enc


def own_split(name, table, md, seed, train, test) -> dict:
    """The default stack on an encoder pretrained on the training part itself (studies with
    a tree; a study without one has no such row)."""
    from aam_engine import api
    from aam_engine.metrics import prediction_scores
    groups = unit(name, md)
    if DATASETS[name]["tree"] is None:
        return {"test_units": sorted({groups[s] for s in test})}
    enc = own_encoder(name, table, train, groups, seed)
    target, classify = DATASETS[name]["targets"][0]
    tr, ytr = labelled(md, target, classify, train)
    te, yte = labelled(md, target, classify, test)
    if classify and len(set(ytr)) < 2:          # as accuracy.run_split: nothing to learn
        return {"test_units": sorted({groups[s] for s in test})}
    m = default_fit(table, tr, ytr, classify, groups, seed, encoder=enc)
    pred = np.asarray(api.predict(m, table.subset(te))[1])
    return {"aam_own": prediction_scores(yte, pred, classify), "test_units":
            sorted({groups[s] for s in test})}


def retrim_split(table, md, seed, train, test) -> dict:
    from aam_engine import api
    from aam_engine.data.reads import known_reads
    from aam_engine.metrics import prediction_scores
    name = RETRIM["study"]
    target, classify = DATASETS[name]["targets"][0]
    units = unit(name, md)
    tr, ytr = labelled(md, target, classify, train)
    te, yte = labelled(md, target, classify, test)
    test_t = table.subset(te)
    cut = test_t.trimmed(RETRIM["start"], RETRIM["length"])
    m = default_fit(table, tr, ytr, True, units, seed)
    score = lambda p: prediction_scores(yte, np.asarray(p), True)
    rec = {"seed": seed, "aam": score(api.predict(m, test_t)[1]),
           "aam_retrimmed": score(api.predict(m, cut)[1]),
           "aam_retrimmed_as_is": score(api.predict(m, cut, match_reads=False)[1])}
    # the forest on the training reads: the test reads as they are, re-trimmed and mapped by
    # the same matching the model uses, and re-trimmed as they are (nothing shared)
    train_t = table.subset(tr)
    known = known_reads(train_t)
    on_known = lambda t, mapped: counts_on(t, known, mapped)
    Xtr = on_known(train_t, False)
    g = np.array([units[s] for s in tr])
    fit = lambda X: BASELINES["rf_tuned"](Xtr, ytr, X, True, g, seed)[0]
    rec.update(forest=score(fit(on_known(test_t, False))),
               forest_retrimmed_mapped=score(fit(on_known(cut, True))),
               forest_retrimmed_as_is=score(fit(on_known(cut, False))))
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("loso", "retrim", "both"), default="both")
    ap.add_argument("--studies", default=",".join(LOSO))
    ap.add_argument("--seeds", default="0,1,2", help="re-trim: development split seeds")
    args = ap.parse_args()
    done = {}
    if LOG.exists():
        for line in LOG.read_text().splitlines():
            r = json.loads(line)
            done[(r["part"], r["dataset"], r["seed"])] = r
    warnings.simplefilter("ignore")
    todo = []
    if args.part in ("retrim", "both"):
        todo.append(("retrim", RETRIM["study"], [int(s) for s in args.seeds.split(",")]))
    if args.part in ("loso", "both"):       # the first report splits (accuracy.py's)
        for name in args.studies.split(","):
            todo.append(("loso", name, None))
    reports = {}        # study: its report splits (accuracy.py's)
    for part, name, seeds in todo:
        table, md = load(name)
        if seeds is None:
            reports[name] = report_splits(name, table, md)[0]
        for seed, train, test in (splits(name, table, md, seeds) if seeds is not None
                                  else reports[name][:OWN_SEEDS]):
            rec = done.get((part, name, seed), {})
            if (rec.get("test_key") == test_key(test) and rec.get("layout") == RUN_LAYOUT
                    and (part == "loso" or rec.get("encoder") == shipped_id())):
                continue
            t0 = time.time()
            rec = (own_split(name, table, md, seed, train, test) if part == "loso"
                   else retrim_split(table, md, seed, train, test))
            rec.update(part=part, dataset=name, seed=seed, commit=commit(), layout=RUN_LAYOUT,
                       encoder=shipped_id(),
                       test_key=test_key(test), minutes=(time.time() - t0) / 60)
            with open(LOG, "a") as f:
                f.write(json.dumps(rec) + "\n")
            done[(part, name, seed)] = rec
            print(json.dumps(rec)[:300], file=sys.stderr, flush=True)
    runs = list(done.values())
    tables = ()
    if args.part != "retrim":       # the stored report runs of today's report splits
        for name in set(LOSO) - set(reports):       # studies this run did not train on
            reports[name] = report_splits(name, *load(name))[0]
        reported = {(name, seed, test_key(test)) for name in LOSO
                    for seed, _, test in reports[name]}
        report = [r for r in stored_runs("report")
                  if (r["dataset"], r["seed"], r.get("test_key")) in reported]
        tables += (("leave-one-study-out.md", loso_table(runs, report)),)
    tables += (("retrim.md", retrim_table(runs)),) if args.part != "loso" else ()
    for file, text in tables:
        (RESULTS / file).write_text(text)
        print(text)


def header(runs, what) -> list[str]:
    commits = sorted({r["commit"] for r in runs})
    minutes = sum(r["minutes"] for r in runs)
    return [f"# {what}", "", f"`python bench/transfer.py` (development splits), commit "
            f"{', '.join(commits)}, {minutes:.0f} min on this project's 2-core CPU machine. "
            "Held-out units only; mean ± sd (ddof 1) over splits; differences: mean and 95% "
            "t-interval over splits (> 0: AAM better).", ""]


def loso_table(runs, report) -> str:
    own = {(r["dataset"], r["seed"]): r for r in runs if r["part"] == "loso"}
    report = [r for r in report if r["dataset"] in LOSO]
    if not report:
        return ""
    commits = sorted({r["commit"] for r in report} | {r["commit"] for r in own.values()})
    lines = ["# Studies the shipped encoder never saw (leave-one-study-out)", "",
             "The report splits of `python bench/accuracy.py --splits report` (every column but "
             f"one), and `python bench/transfer.py --part loso` (the encoder pretrained on the "
             f"study: its first {OWN_SEEDS} report splits); commits {', '.join(commits)}. "
             "Held-out independent units only; mean ± sd (ddof 1) over splits; AAM − best "
             "baseline: mean and 95% t-interval over splits (> 0: AAM better); 'either "
             "decision': against the best of the baselines as they ship and the same baselines "
             "predicting by AAM's balanced rule (bench/results/accuracy-report.md).", "",
             "| study: target (metric) | units train/test | n | AAM (shipped encoder) | AAM "
             "(encoder pretrained on the study) | AAM without encoder components | best "
             "baseline | AAM − best baseline | AAM − best baseline, either decision |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in report):
        rs = [r for r in report if r["dataset"] == name]
        target, classify = DATASETS[name]["targets"][0]
        rt = [r["targets"][target] for r in rs if target in r["targets"]]
        key, sign = ("macro_f1", 1) if classify else ("mae", -1)
        best = best_baseline(rt, key, sign)
        strict = best_baseline(rt, key, sign, [m for m in MODELS[2:] if all(m in t for t in rt)])
        v = lambda m: ms([t[m][key] for t in rt])
        owned = [own[(name, r["seed"])]["aam_own"][key] for r in rs
                 if "aam_own" in own.get((name, r["seed"]), {})]
        mine = f"{ms(owned)} (n={len(owned)})" if owned else "not run"
        units = ", ".join(dict.fromkeys(f"{r['units'][0]}/{r['units'][1]}" for r in rs))
        diff = lambda b: interval_cell([sign * (t["aam"][key] - t[b][key]) for t in rt])
        lines.append(f"| {name}: {target} ({'macro F1' if classify else 'MAE'}) | {units} | "
                     f"{len(rt)} | {v('aam')} | {mine} | {v('aam_plain')} | "
                     f"{v(best)} ({BASELINE_NAMES[best]}) | {diff(best)} | "
                     f"{diff(strict)} (vs {LABEL[strict]}) |")
    return "\n".join(lines) + "\n"


def retrim_table(runs) -> str:
    runs = [r for r in runs if r["part"] == "retrim"]
    if not runs:
        return ""
    rows = [("AAM, the default fit (other trims read as their training reads)", "aam",
             "aam_retrimmed"),
            ("the same model, every read as it is (--p-no-match-reads)", None,
             "aam_retrimmed_as_is"),
            ("RandomForest (tuned) on the training reads, test reads mapped to them the same "
             "way (its best case)", "forest", "forest_retrimmed_mapped"),
            ("the same forest, test reads as they are (no read shared)", None,
             "forest_retrimmed_as_is")]
    lines = header(runs, f"Reads of another trim ({RETRIM['study']}: the test units' reads "
                         f"from base {RETRIM['start'] + 1}, {RETRIM['length']} nt)") + [
        "macro F1 on the held-out units, the reads as sequenced and re-trimmed:", "",
        "| model | reads as they are | re-trimmed |", "|---|---|---|"]
    for label, a, b in rows:
        lines.append(f"| {label} | {ms([r[a]['macro_f1'] for r in runs]) if a else '–'} | "
                     f"{ms([r[b]['macro_f1'] for r in runs])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

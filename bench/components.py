"""Which features of the shipped encoder carry signal, and which learners use it: the
frozen-encoder cached path, seconds per split (development splits only).

For each dataset, the shipped encoder's per-sample features are computed once (cached in
build/features-<dataset>.npz); on each grouped split (whole units in the test part), every
learner x feature set is fitted on the training part and scored on the test part.

    python bench/components.py --datasets sleep-apnea --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import DATASETS, DEV, ROOT, RESULTS, labelled, load, n_units, splits, unit  # noqa

CACHE = ROOT / "build"


def encoder_features(name):
    path = CACHE / f"features-{name}.npz"
    table, md = load(name)
    if path.exists():
        z = np.load(path, allow_pickle=False)
        if list(z["ids"]) == list(table.sample_ids):
            return table, md, dict(z)
    import torch
    from aam_engine.data import BatchBuilder
    from aam_engine.features import composition
    from aam_engine.pretrained import default_encoder
    from aam_engine.inference import run_model
    enc = default_encoder()
    model = enc.build_model()
    mc = enc.model_config
    b = BatchBuilder(table, mc.token_limit, mc.max_bp)
    with torch.no_grad():
        V = model.asv_vectors(b.token_tensor()).numpy()
    sample, learned = run_model(model, b, np.arange(table.n_samples), "cpu", None,
                                ("sample_vec", "learned_embedding"))
    feats = dict(ids=np.array(table.sample_ids), comp_rel=composition(table.counts, V),
                 comp_log=composition(table.counts, V, "log"),
                 comp_pres=composition(table.counts, V, "presence"), sample=sample,
                 learned=learned)
    CACHE.mkdir(exist_ok=True)
    np.savez(path, **feats)
    return table, md, feats


def block(feats, table, rows, spec):
    from aam_engine.features import clr
    parts = []
    for name in spec.split("+"):
        parts.append(clr(table.counts[rows]) if name == "clr" else
                     np.asarray(table.counts[rows].toarray()) / np.maximum(
                         np.asarray(table.counts[rows].sum(1)), 1) if name == "rel" else
                     feats[name][rows])
    return np.hstack(parts)


def l2(Xtr, ytr, Xte, classify, groups, seed):
    from aam_engine.baselines import _search, L2_GRID
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if classify:
        model, grid = LogisticRegression(max_iter=5000), {"logisticregression__C": L2_GRID}
    else:
        model, grid = Ridge(), {"ridge__alpha": L2_GRID * 100}
    s = _search(make_pipeline(StandardScaler(), model), grid, Xtr, ytr, groups, classify, seed)
    return (s.predict_proba(Xte) if classify else s.predict(Xte))


def rf(Xtr, ytr, Xte, classify, groups, seed):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    m = cls(n_estimators=500, max_features="sqrt", random_state=seed, n_jobs=2).fit(Xtr, ytr)
    return m.predict_proba(Xte) if classify else m.predict(Xte)


LEARNERS = {"l2": l2, "rf": rf}


def score(y, p, classes, classify):
    from aam_engine.metrics import constant_fraction, macro_f1, mae, r2_score
    if classify:
        pred = np.asarray(classes)[np.argmax(p, 1)]
        yi = np.searchsorted(classes, y)
        pi = np.searchsorted(classes, pred)
        return {"macro_f1": macro_f1(yi, pi, len(classes)), "const": constant_fraction(pi)}
    return {"mae": mae(y, p), "r2": r2_score(y, p)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(DEV))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sets", default="clr,rel,comp_rel,sample,comp_rel+sample,clr+comp_rel,"
                                      "clr+comp_rel+sample")
    ap.add_argument("--learners", default="l2,rf")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    out = RESULTS / f"components{'-' + args.tag if args.tag else ''}.runs.jsonl"
    for name in args.datasets.split(","):
        table, md, feats = encoder_features(name)
        units = unit(name, md)
        for seed, train, test in splits(name, table, md, [int(s) for s in args.seeds.split(",")]):
            for target, classify in DATASETS[name]["targets"]:
                tr, ytr = labelled(md, target, classify, train)
                te, yte = labelled(md, target, classify, test)
                classes = np.unique(ytr) if classify else None
                g = np.array([units[s] for s in tr])
                itr, ite = table.index_of(tr), table.index_of(te)
                rec = {"dataset": name, "seed": seed, "target": target,
                       "units": [n_units(name, md, tr), n_units(name, md, te)],
                       "n": [len(tr), len(te)], "scores": {}}
                for spec in args.sets.split(","):
                    Xtr, Xte = block(feats, table, itr, spec), block(feats, table, ite, spec)
                    for lname in args.learners.split(","):
                        t0 = time.time()
                        p = LEARNERS[lname](Xtr, ytr, Xte, classify, g, seed)
                        s = score(yte, p, classes, classify)
                        s["seconds"] = round(time.time() - t0, 1)
                        rec["scores"][f"{lname}:{spec}"] = s
                        print(name, seed, target, lname, spec, s, flush=True)
                with open(out, "a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__" and sys.argv[1:2] not in (["predict"], ["combine"]):
    main()


# ---------------------------------------------------------------- stacking
def heads(tr_table, ytr, te_table, classify, groups, seed):
    """The AAM heads on the shipped encoder (the fit's defaults before the stack)."""
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    ids = tr_table.sample_ids
    m = api.fit(tr_table, dict(zip(ids, ytr)), "classification" if classify else "regression",
                ModelConfig(), TrainConfig(progress=False, compare_baselines=False,
                                           random_seed=seed),
                groups=None if groups is None else dict(zip(ids, groups)))
    out = api.predict(m, te_table)
    return out[2] if classify else np.asarray(out[1])


def cross_fit(fn, X, y, classify, g, folds, seed, classes):
    """Out-of-fold predictions of learner fn (whole units per fold); X may be a table."""
    oof = np.zeros((len(y), len(classes))) if classify else np.zeros(len(y))
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        Xtr = X.subset([X.sample_ids[i] for i in np.flatnonzero(tr)]) if hasattr(X, "subset") else X[tr]
        Xte = X.subset([X.sample_ids[i] for i in np.flatnonzero(te)]) if hasattr(X, "subset") else X[te]
        seen = np.unique(y[tr])
        if classify and len(seen) < 2:
            p = np.ones((te.sum(), 1))
        else:
            p = fn(Xtr, y[tr], Xte, classify, g[tr], seed)
        if classify:      # a fold may miss a class: place columns by class
            full = np.zeros((te.sum(), len(classes)))
            full[:, np.searchsorted(classes, seen)] = p
            p = full
        oof[te] = p
    return oof


PREDS = ROOT / "build" / "component-preds"


def predict_main(argv):
    """Every component's out-of-fold (training part) and test predictions, cached."""
    from aam_engine.data.table import fold_ids
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(DEV))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--components", default="l2:clr,l2:rel,rf:rel,rf:clr,l2:comp_rel,"
                    "rf:comp_rel,l2:comp_log,rf:comp_log,l2:sample,rf:sample,"
                    "l2:comp_rel+sample,rf:comp_rel+sample,l2:clr+comp_rel,rf:rel+comp_rel")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)
    PREDS.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        table, md, feats = encoder_features(name)
        units = unit(name, md)
        for seed, train, test in splits(name, table, md, [int(s) for s in args.seeds.split(",")]):
            for target, classify in DATASETS[name]["targets"]:
                tr, ytr = labelled(md, target, classify, train)
                te, yte = labelled(md, target, classify, test)
                classes = np.unique(ytr) if classify else None
                g = np.array([units[s] for s in tr])
                if len(set(g)) < 2:     # one unit left in training: fold its samples
                    g = np.array(tr)
                folds = fold_ids(tr, min(args.folds, len(set(g))), seed, dict(zip(tr, g)))
                itr, ite = table.index_of(tr), table.index_of(te)
                for comp in args.components.split(","):
                    path = PREDS / f"{name}.{target}.{seed}.{comp}.npz"
                    if path.exists():
                        continue
                    t0 = time.time()
                    lname, _, spec = comp.partition(":")
                    if lname == "heads":
                        Xtr, Xte, fn = table.subset(tr), table.subset(te), heads
                    else:
                        Xtr, Xte = block(feats, table, itr, spec), block(feats, table, ite, spec)
                        fn = LEARNERS[lname]
                    oof = cross_fit(fn, Xtr, ytr, classify, g, folds, seed, classes)
                    test_p = fn(Xtr, ytr, Xte, classify, g, seed)
                    np.savez(path, oof=oof, test=test_p, ytr=ytr.astype(str) if classify else ytr,
                             yte=yte.astype(str) if classify else yte, folds=folds,
                             seconds=time.time() - t0)
                    print(name, target, seed, comp, score(yte, test_p, classes, classify),
                          f"{time.time() - t0:.1f}s", flush=True)


def simplex_weights(P, y, classify, classes=None, objective="logloss"):
    """Non-negative weights summing to 1 that minimise the log loss (classes) or the squared
    error (values) of the weighted mean of the components' out-of-fold predictions."""
    from scipy.optimize import minimize
    K = len(P)
    if classify and objective == "brier":
        yi = np.searchsorted(classes, y)
        onehot = np.eye(len(classes))[yi]
        def loss(w):
            m = sum(wk * p for wk, p in zip(w, P))
            return np.mean(((m - onehot) ** 2).sum(1))
    elif classify:
        yi = np.searchsorted(classes, y)
        def loss(w):
            m = sum(wk * p for wk, p in zip(w, P))
            return -np.mean(np.log(np.clip(m[np.arange(len(y)), yi], 1e-6, None)))
    else:
        def loss(w):
            return np.mean((sum(wk * p for wk, p in zip(w, P)) - y) ** 2)
    r = minimize(loss, np.full(K, 1 / K), method="SLSQP", bounds=[(0, 1)] * K,
                 constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}])
    w = np.clip(r.x, 0, None)
    return w / w.sum()


def combine_main(argv):
    """Stacks of cached components, scored on the test parts."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", required=True, help="name=comp+comp;name=...")
    ap.add_argument("--stacker", default="simplex", choices=("simplex", "brier", "mean"))
    ap.add_argument("--datasets", default=",".join(DEV))
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    stacks = dict(s.split("=") for s in args.stacks.split(";"))
    rows = {}
    for name in args.datasets.split(","):
        for target, classify in DATASETS[name]["targets"]:
            key = "macro_f1" if classify else "mae"
            for seed in [int(s) for s in args.seeds.split(",")]:
                for sname, comps in stacks.items():
                    paths = [PREDS / f"{name}.{target}.{seed}.{c}.npz" for c in comps.split("+")]
                    if not all(p.exists() for p in paths):
                        continue
                    z = [np.load(p) for p in paths]
                    ytr, yte = z[0]["ytr"], z[0]["yte"]
                    classes = np.unique(ytr) if classify else None
                    P = [d["oof"] for d in z]
                    w = (np.full(len(P), 1 / len(P)) if args.stacker == "mean" else
                         simplex_weights(P, ytr, classify, classes,
                                         "brier" if args.stacker == "brier" else "logloss"))
                    p = sum(wk * d["test"] for wk, d in zip(w, z))
                    rows.setdefault((name, target, key), {}).setdefault(sname, []).append(
                        score(yte, p, classes, classify)[key])
    for (name, target, key), d in rows.items():
        print(name, target, key)
        for sname, v in d.items():
            print(f"   {sname:24s} {np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
                  f"  {np.round(v, 3)}")


if __name__ == "__main__" and sys.argv[1:2] == ["predict"]:
    predict_main(sys.argv[2:])
elif __name__ == "__main__" and sys.argv[1:2] == ["combine"]:
    combine_main(sys.argv[2:])

"""How the default stack was chosen (development splits only): which per-sample features of
the shipped encoder carry signal, which learners use them, and how the stacker weighs them.
The frozen-encoder cached path: seconds per split.

    python bench/components.py predict            # every candidate component, cached
    python bench/components.py combine            # candidate stacks -> components-dev.md
    python bench/components.py predict --encoder cand=build/candidate-encoder \
        --components l2:comp_rel,rf:comp_rel      # another encoder's components: l2:comp_rel@cand

``predict``: for each development dataset and grouped split (bench/datasets.py), every
candidate component (LEARNER:FEATURES) is cross-fitted on 5 grouped folds of the training
part (out-of-fold predictions) and fitted on all of it (test predictions); cached in
build/component-preds/.  Features: clr / rel (CLR / relative abundances), comp_rel /
comp_log (the shipped encoder's ASV vectors weighted by relative / log1p abundance),
sample (its sample vector), heads (AAM's heads on it, fitted with the plugin's defaults
before the stack).  ``combine``: candidate stacks weighed on the out-of-fold predictions
(Brier score, as aam_engine.fit.stack; 'logloss' and a plain mean as the alternatives),
scored on the test parts, classes decided as the fit decides them (the balanced rule;
``--decision probable`` for the most probable class, as the tables before 2026-12-06 were).
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import (DATASETS, DEV, DEV_SEEDS, RESULTS, ROOT, labelled, load, splits,  # noqa
                      test_key, unit)
from baselines import RF_MAX_FEATURES  # noqa: E402
from tables import commit, interval_cell, ms  # noqa: E402

SEEDS = ",".join(map(str, DEV_SEEDS))      # --seeds: every development seed
CACHE = ROOT / "build"
PREDS = CACHE / "component-preds"
CANDIDATES = ("l2:clr,l2:rel,rf:rel,rf:clr,l2:comp_rel,rf:comp_rel,l2:comp_log,rf:comp_log,"
              "l2:sample,rf:sample,l2:comp_rel+sample,rf:comp_rel+sample,heads")
STACKS = ("abundances=l2:rel+rf:rel;"
          "default=l2:rel+rf:rel+l2:comp_rel+rf:comp_rel;"
          "baselines=l2:clr+rf:rel;"
          "with_clr=l2:clr+rf:rel+l2:comp_rel+rf:comp_rel;"
          "encoder_only=l2:comp_rel+rf:comp_rel;"
          "log_weights=l2:rel+rf:rel+l2:comp_log+rf:comp_log;"
          "with_heads=l2:rel+rf:rel+l2:comp_rel+rf:comp_rel+heads;"
          "tuned_forests=l2:rel+rft:rel+l2:comp_rel+rft:comp_rel;"
          "tuned_abundance_forest=l2:rel+rft:rel+l2:comp_rel+rf:comp_rel;"
          "side_by_side=l2:relcomp+rf:relcomp;"
          "side_by_side_and_apart=l2:rel+rf:rel+l2:relcomp+rf:relcomp")


def encoder_features(name, encoder=None):
    """(table, metadata, {block: [n, D]}) of the shipped encoder, cached per dataset; or of
    ``encoder`` = (tag, model directory), cached under the tag.  The cache holds the weights'
    id: features of other weights are recomputed, and where they change, the components
    cached on them (this dataset, this tag) are dropped."""
    from aam_engine.pretrained import DEFAULT_DIR
    path = CACHE / (f"features-{name}@{encoder[0]}.npz" if encoder else f"features-{name}.npz")
    wid = weights_id(encoder[1] if encoder else DEFAULT_DIR)
    table, md = load(name)
    old = None
    if path.exists():
        z = np.load(path, allow_pickle=False)
        old = dict(z) if list(z["ids"]) == list(table.sample_ids) else None
        if (old is not None and str(old.get("encoder", "")) == wid
                and all(f"clus{k}" in old for k in CLUSTERS) and "vectors" in old
                and "clusters" in old):
            return table, md, old
    feats = compute_features(table, encoder[1] if encoder else None)
    # a block the cache lacks is new, not changed: components on the others stay
    if old is None or any(not np.allclose(old[k], v, atol=1e-6)
                          for k, v in feats.items() if k != "ids" and k in old):
        suffix = f"@{encoder[0]}" if encoder else ""
        for q in PREDS.glob(f"{name}.*.npz"):
            comp = q.name[:-4].split(".", 4)[-1]
            if reads_encoder(comp) and comp.endswith(suffix) and (suffix or "@" not in comp):
                q.unlink()
    CACHE.mkdir(exist_ok=True)
    np.savez(path, encoder=np.array(wid), **feats)
    return table, md, feats


def compute_features(table, directory=None) -> dict:
    """The encoder's per-sample blocks of ``table`` (the shipped encoder, or the model
    directory given)."""
    import scipy.sparse as sp
    from aam_engine.data import BatchBuilder
    from aam_engine.features import clusters as cluster_shares, composition, encoder_centres
    from aam_engine.inference import encoder_vectors, run_model
    from aam_engine.io import read_model_dir
    from aam_engine.pretrained import default_encoder
    bundle = read_model_dir(directory) if directory else default_encoder()
    model = bundle.build_model()
    V = encoder_vectors(model, table)
    b = BatchBuilder(table, model.cfg.token_limit, model.cfg.max_bp)
    logc = sp.csr_matrix(table.counts, copy=True)
    logc.data = np.log1p(logc.data)
    # abundances summed over the corpus's clusters of ASV vectors (candidates), and the
    # product's block: the encoder's own clusters
    clusters = {f"clus{k}": cluster_shares(table.counts, V, corpus_centres(model, k, directory))
                for k in CLUSTERS}
    own = encoder_centres(bundle)
    if own is not None:
        clusters["clusters"] = cluster_shares(table.counts, V, own)
    return dict(ids=np.array(table.sample_ids), vectors=V, comp_rel=composition(table.counts, V),
                comp_log=composition(logc, V),
                sample=run_model(model, b, np.arange(table.n_samples), "cpu", key="sample_vec"),
                **clusters)


CLUSTERS = (64, 256)


def table_clusters(feats, table, train_rows, spec: str) -> dict:
    """Blocks 'tclusK' of ``spec``: abundances summed over k-means clusters (K, seed 0) of the
    encoder's vectors of the reads the training rows hold (no label, no test sample seen);
    every read falls into its nearest centre."""
    from sklearn.cluster import KMeans
    from aam_engine.features import clusters as cluster_shares
    out = {}
    for name in spec.split("+"):
        if not name.startswith("tclus"):
            continue
        k, V = int(name[5:]), feats["vectors"]
        seen = np.flatnonzero(np.asarray(table.counts[train_rows].sum(0)).ravel() > 0)
        C = KMeans(k, n_init=3, random_state=0).fit(V[seen]).cluster_centers_
        out[name] = cluster_shares(table.counts, V, C)
    return out


def corpus_centres(model, k: int, directory=None) -> np.ndarray:
    """k-means centres (k, seed 0) of the encoder's vectors of every read of the pretraining
    corpus (build/corpus, `make corpus`): a clustering of reads learned without any label or
    benchmark study, which any table's reads fall into by their nearest centre."""
    from aam_engine.data import read_fasta
    from aam_engine.data.tokenizer import tokenize
    from aam_engine.pretrained import DEFAULT_DIR
    wid = weights_id(directory or DEFAULT_DIR)[:12]
    path = CACHE / f"centres-{k}-{wid}.npy"
    if path.exists():
        return np.load(path)
    import torch
    from sklearn.cluster import KMeans
    fasta = ROOT / "build" / "corpus" / "sequences.fasta"
    if not fasta.exists():
        raise SystemExit(f"{fasta} is missing: `make corpus` builds it")
    tokens = tokenize(list(read_fasta(fasta).values()), model.cfg.max_bp, np.uint8)
    with torch.no_grad():
        V = np.concatenate([model.asv_vectors(torch.from_numpy(tokens[i:i + 2048])).float()
                            .numpy() for i in range(0, len(tokens), 2048)])
    centres = KMeans(k, n_init=3, random_state=0).fit(V).cluster_centers_
    np.save(path, centres)
    return centres


def weights_id(directory) -> str:
    import hashlib
    return hashlib.sha256((Path(directory) / "weights.safetensors").read_bytes()).hexdigest()


def reads_encoder(comp: str) -> bool:
    return comp == "heads" or any(f in comp for f in ("comp_", "sample", "relcomp", "clus"))


def cached(name, target, seed, test, comp) -> Path:
    """Where a component's predictions on one split are kept: keyed by the split's test part,
    so a change to how splits are drawn recomputes the splits it changed.  A component on
    the shipped encoder is read only while the dataset's features are of today's shipped
    weights (``predict`` refreshes them and drops the components of other weights)."""
    if reads_encoder(comp) and "@" not in comp:
        check_shipped_features(name)
    return PREDS / f"{name}.{target}.{seed}.{test_key(test)}.{comp}.npz"


@functools.lru_cache(maxsize=None)
def check_shipped_features(name) -> None:
    from aam_engine.pretrained import DEFAULT_DIR
    path = CACHE / f"features-{name}.npz"
    if path.exists() and str(np.load(path)["encoder"]) != weights_id(DEFAULT_DIR):
        sys.exit(f"{path} and the components cached on it are of another shipped encoder: "
                 f"run `python bench/components.py predict --datasets {name}` first")


def block(feats, table, rows, spec):
    from aam_engine.features import clr
    parts = []
    for name in spec.replace("relcomp", "rel+comp_rel").split("+"):   # relcomp: one learner
        # on relative abundances and the composition side by side
        C = table.counts[rows]
        parts.append(clr(C) if name == "clr" else
                     C.toarray() / np.maximum(np.asarray(C.sum(1)), 1) if name == "rel" else
                     feats[name][rows])
    return np.hstack(parts)


def l2(Xtr, ytr, Xte, classify, groups, seed):
    from aam_engine.fit.estimators import grid_search, linear_search
    s = grid_search(*linear_search(classify), Xtr, ytr, groups, classify, seed)
    return s.predict_proba(Xte) if classify else s.predict(Xte)


def rf(Xtr, ytr, Xte, classify, groups, seed):
    """500 trees, sqrt of the features per split.  For values the stack's forest takes a
    third (aam_engine.fit.estimators.forest): the age rows of components-dev.md were
    measured with this one (a third is several times slower on ibd-2538's 4,713 ASVs)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    m = cls(n_estimators=500, max_features="sqrt", random_state=seed, n_jobs=2).fit(Xtr, ytr)
    return m.predict_proba(Xte) if classify else m.predict(Xte)


def rft(Xtr, ytr, Xte, classify, groups, seed):
    """The forest with its max_features chosen on inner grouped folds (100 trees while
    choosing, 500 refitted with the choice)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from aam_engine.fit.estimators import grid_search
    cls = RandomForestClassifier if classify else RandomForestRegressor
    s = grid_search(cls(n_estimators=100, random_state=seed, n_jobs=2),
                    {"max_features": list(RF_MAX_FEATURES)}, Xtr, ytr, groups, classify, seed)
    m = cls(n_estimators=500, random_state=seed, n_jobs=2,
            max_features=s.best_params_["max_features"]).fit(Xtr, ytr)
    return m.predict_proba(Xte) if classify else m.predict(Xte)


def heads(tr_table, ytr, te_table, classify, groups, seed):
    """AAM's heads on the shipped encoder (the plugin's default fit before the stack)."""
    from aam_engine import api
    ids = tr_table.sample_ids
    m = api.fit(tr_table, dict(zip(ids, ytr)), "classification" if classify else "regression",
                api.ModelConfig(stack="heads"),
                api.TrainConfig(progress=False, compare_baselines=False, random_seed=seed),
                groups=None if groups is None else dict(zip(ids, groups)))
    out = api.predict(m, te_table)
    return out[2] if classify else np.asarray(out[1])


LEARNERS = {"l2": l2, "rf": rf, "rft": rft, "heads": heads}


def score(y, p, classes, classify, ytr=None, rule: str = "balanced"):
    """Test scores of predictions p; classes are decided as the fit decides them
    (aam_engine.inputs.decide_classes: by default the balanced rule, against the training
    shares of ``ytr``; 'probable', or no ytr, the most probable class)."""
    from aam_engine.inputs import class_shares, decide_classes
    from aam_engine.metrics import constant_fraction, macro_f1, mae, r2_score
    if classify:
        yi = np.searchsorted(classes, y)
        pi = (np.argmax(p, 1) if ytr is None or rule == "probable" else
              decide_classes({"priors": class_shares(ytr, classes)}, p, rule))
        return {"macro_f1": macro_f1(yi, pi, len(classes)), "const": constant_fraction(pi)}
    return {"mae": mae(y, p), "r2": r2_score(y, p)}


def cross_fit(fn, X, y, classify, g, folds, seed, classes):
    """Out-of-fold predictions of learner fn (whole units per fold); X may be a table."""
    oof = np.zeros((len(y), len(classes))) if classify else np.zeros(len(y))
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        pick = lambda m: (X.subset([X.sample_ids[i] for i in np.flatnonzero(m)])
                          if hasattr(X, "subset") else X[m])
        seen = np.unique(y[tr])
        p = (np.ones((te.sum(), 1)) if classify and len(seen) < 2 else
             fn(pick(tr), y[tr], pick(te), classify, g[tr], seed))
        if classify:      # a fold may miss a class: place columns by class
            full = np.zeros((te.sum(), len(classes)))
            full[:, np.searchsorted(classes, seen)] = p
            p = full
        oof[te] = p
    return oof


def predict_main(argv):
    from aam_engine.data.table import fold_ids
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(DEV))
    ap.add_argument("--seeds", default=SEEDS)
    ap.add_argument("--components", default=CANDIDATES)
    ap.add_argument("--encoder", metavar="TAG=DIR", help="another encoder (a model directory) "
                    "in place of the shipped one: its components are cached as COMPONENT@TAG")
    args = ap.parse_args(argv)
    if args.encoder and "=" not in args.encoder:
        ap.error("--encoder takes TAG=DIR, e.g. cand=build/candidate-encoder")
    encoder = tuple(args.encoder.split("=", 1)) if args.encoder else None
    if encoder and "heads" in args.components.split(","):
        raise SystemExit("heads fit on the shipped encoder only; leave them out with --encoder")
    PREDS.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        table, md, feats = encoder_features(name, encoder)
        units = unit(name, md)
        for seed, train, test in splits(name, table, md, [int(s) for s in args.seeds.split(",")]):
            for target, classify in DATASETS[name]["targets"]:
                tr, ytr = labelled(md, target, classify, train)
                te, yte = labelled(md, target, classify, test)
                classes = np.unique(ytr) if classify else None
                if classify and len(classes) < 2:
                    continue
                g = np.array([units[s] for s in tr])
                if len(set(g)) < 2:     # one unit left in training: fold its samples
                    g = np.array(tr)
                folds = fold_ids(tr, min(5, len(set(g))), seed, dict(zip(tr, g)))
                itr, ite = table.index_of(tr), table.index_of(te)
                for comp in args.components.split(","):
                    path = cached(name, target, seed, test, comp + (
                        f"@{encoder[0]}" if encoder and reads_encoder(comp) else ""))
                    if path.exists():
                        continue
                    t0 = time.time()
                    lname, _, spec = comp.partition(":")
                    fs = dict(feats, **table_clusters(feats, table, itr, spec))
                    X = ((table.subset(tr), table.subset(te)) if lname == "heads" else
                         (block(fs, table, itr, spec), block(fs, table, ite, spec)))
                    fn = LEARNERS[lname]
                    np.savez(path, oof=cross_fit(fn, X[0], ytr, classify, g, folds, seed,
                                                 classes),
                             test=fn(X[0], ytr, X[1], classify, g, seed),
                             ytr=ytr.astype(str) if classify else ytr,
                             yte=yte.astype(str) if classify else yte, folds=folds,
                             seconds=time.time() - t0)
                    print(name, target, seed, comp, f"{time.time() - t0:.1f}s", flush=True)


def weights(P, y, classify, classes, stacker):
    from scipy.optimize import minimize
    from aam_engine.fit.stack import stack_weights
    if stacker == "mean":
        return np.full(len(P), 1 / len(P))
    yi = np.searchsorted(classes, y) if classify else y
    if stacker == "brier" or not classify:      # the product's stacker
        return stack_weights(P, yi, len(classes) if classify else 0)
    picked = np.asarray(P)[:, np.arange(len(y)), yi]

    def loss(w):
        return -np.mean(np.log(np.clip(w @ picked, 1e-6, None)))
    r = minimize(loss, np.full(len(P), 1 / len(P)), method="SLSQP", bounds=[(0, 1)] * len(P),
                 constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}])
    w = np.clip(r.x, 0, None)
    return w / w.sum()


def cached_stack(name, target, seed, test, comps: str, classify, stacker="brier"):
    """A stack of cached components ('a+b+...') on one split: (the components' arrays, the
    classes, the stack's test predictions), or None where a component is not cached."""
    paths = [cached(name, target, seed, test, c) for c in comps.split("+")]
    if not all(q.exists() for q in paths):
        return None
    z = [np.load(q) for q in paths]
    classes = np.unique(z[0]["ytr"]) if classify else None
    w = weights([d["oof"] for d in z], z[0]["ytr"], classify, classes, stacker)
    return z, classes, sum(wk * d["test"] for wk, d in zip(w, z))


def split_args(argv, stacks: str, **extra):
    """The arguments every reading of the cache takes: stacks, datasets, seeds (+ extra)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", default=stacks, help="name=comp+comp;name=...")
    for k, v in extra.items():
        ap.add_argument(f"--{k}", default=v)
    ap.add_argument("--datasets", default=",".join(DEV))
    ap.add_argument("--seeds", default=SEEDS)
    args = ap.parse_args(argv)
    return args, dict(s.split("=") for s in args.stacks.split(";"))


def split_tests(name, seeds: str):
    table, md = load(name)
    return {seed: te for seed, _, te in splits(name, table, md, [int(s) for s in seeds.split(",")])}


def publish(lines, name: str):
    text = "\n".join(lines) + "\n"
    (RESULTS / name).write_text(text)
    print(text)


def combine_main(argv):
    args, stacks = split_args(argv, STACKS, stackers="brier,logloss,mean",
                              out="components-dev.md", paired="", decision="balanced")
    first = args.stackers.split(",")[0]
    lines = ["# How the default stack was chosen (development splits)"
             if args.out == "components-dev.md" else
             "# Stacks of cached components, development splits", "",
             f"`python bench/components.py {' '.join(['combine'] + list(argv))}` after "
             f"`predict`, commit {commit()}: each candidate stack's test score, mean ± sd "
             "(ddof 1) over the splits that have every component (macro F1, or MAE for age), "
             f"by stacker; classes decided by the {args.decision} rule (--decision; the "
             "fit's default is balanced, the tables before 2026-12-06 read the most probable "
             "class)." + (f" With --paired: each stack minus the first ({first} stacker), "
                              "per split, mean and 95% t-interval (> 0: better)."
                              if args.paired else ""), ""]
    for name in args.datasets.split(","):
        tests = split_tests(name, args.seeds)
        for target, classify in DATASETS[name]["targets"]:
            key, sign = ("macro_f1", 1) if classify else ("mae", -1)
            head = args.stackers.split(",") + (["− first"] if args.paired else [])
            lines += [f"## {name}: {target} ({key})", "", "| stack | " + " | ".join(head)
                      + " |", "|---|" + "---|" * len(head)]
            base = None
            for sname, comps in stacks.items():
                cells, per_seed = [], {}
                for stacker in args.stackers.split(","):
                    vals = []
                    for seed, te in tests.items():
                        got = cached_stack(name, target, seed, te, comps, classify, stacker)
                        if got is not None:
                            vals.append(score(got[0][0]["yte"], got[2], got[1], classify,
                                              got[0][0]["ytr"], args.decision)[key])
                            if stacker == first:
                                per_seed[seed] = vals[-1]
                    cells.append(f"{ms(vals)} (n={len(vals)})" if vals else "")
                if args.paired:
                    base = per_seed if base is None else base
                    both = sorted(set(base) & set(per_seed))
                    cells.append(interval_cell([sign * (per_seed[k] - base[k]) for k in both])
                                 + f" (n={len(both)})" if len(both) > 1 and base is not per_seed
                                 else "")
                lines.append(f"| {sname} (`{comps}`) | " + " | ".join(cells) + " |")
            lines.append("")
    publish(lines, args.out)


def oof_score(P, y, classify, classes, folds, key):
    """The stack's cross-fitted out-of-fold score (as aam_engine.fit does for its report)."""
    from aam_engine.fit.stack import cross_fitted_stack
    yi = np.searchsorted(classes, y) if classify else y
    oof = cross_fitted_stack(P, yi, len(classes) if classify else 0, folds)
    return score(y, oof, classes, classify, y)[key]


def select_main(argv):
    """Would the fit do better to keep the encoder's components only where its own
    out-of-fold evidence says they help?  Per split: the default stack and the same without
    its encoder components, each cross-fitted on the training part's folds; the one with the
    better out-of-fold score predicts (a tie keeps the one without).  Scored on the test part
    beside both.  -> components-select-dev.md"""
    from aam_engine.data.table import fold_ids
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", default="l2:rel+rf:rel+l2:comp_rel+rf:comp_rel")
    ap.add_argument("--plain", default="l2:rel+rf:rel")
    ap.add_argument("--datasets", default=",".join(DEV))
    ap.add_argument("--seeds", default=SEEDS)
    args = ap.parse_args(argv)
    lines = ["# Keep the encoder's components only where out-of-fold evidence says they help "
             "(development splits)", "", f"`python bench/components.py select`, commit "
             f"{commit()}: the default stack (`{args.full}`), the same without its encoder "
             f"components (`{args.plain}`), and the rule that picks, per split, the one with "
             "the better cross-fitted out-of-fold score on the training part (Brier-weighted; "
             "a tie keeps the one without); test scores, mean ± sd (ddof 1) over splits.", "",
             "| dataset: target | n | default | without encoder | the rule | rule picked the "
             "default |", "|---|---|---|---|---|---|"]
    for name in args.datasets.split(","):
        table, md = load(name)
        units = unit(name, md)
        for target, classify in DATASETS[name]["targets"]:
            key, better = ("macro_f1", max) if classify else ("mae", min)
            cols, picked = {"full": [], "plain": [], "rule": []}, 0
            for seed, train, test in splits(name, table, md, [
                    int(s) for s in args.seeds.split(",")]):
                stacks = {k: [cached(name, target, seed, test, c) for c in v.split("+")]
                          for k, v in (("full", args.full), ("plain", args.plain))}
                if not all(q.exists() for v in stacks.values() for q in v):
                    continue
                tr, _ = labelled(md, target, classify, train)
                g = np.array([units[i] for i in tr])
                if len(set(g)) < 2:
                    g = np.array(tr)
                folds = fold_ids(tr, min(5, len(set(g))), seed, dict(zip(tr, g)))
                out = {}
                for k, paths in stacks.items():
                    z = [np.load(q) for q in paths]
                    ytr, yte = z[0]["ytr"], z[0]["yte"]
                    classes = np.unique(ytr) if classify else None
                    P = [d["oof"] for d in z]
                    w = weights(P, ytr, classify, classes, "brier")
                    test_p = sum(wk * d["test"] for wk, d in zip(w, z))
                    out[k] = (oof_score(P, ytr, classify, classes, folds, key),
                              score(yte, test_p, classes, classify, ytr)[key])
                use = ("full" if better(out["full"][0], out["plain"][0]) != out["plain"][0]
                       else "plain")
                picked += use == "full"
                for k in ("full", "plain"):
                    cols[k].append(out[k][1])
                cols["rule"].append(out[use][1])
            if cols["rule"]:
                lines.append(f"| {name}: {target} ({key}) | {len(cols['rule'])} | "
                             f"{ms(cols['full'])} | {ms(cols['plain'])} | {ms(cols['rule'])} | "
                             f"{picked} of {len(cols['rule'])} |")
    publish(lines, "components-select-dev.md")


def decision_main(argv):
    """Which class should a classifier predict from its class probabilities: the most probable,
    or the one that stands highest against its share of the training samples (the balanced
    rule, aam_engine.inputs.decide_classes)?  Per split, each stack (Brier-weighted on its
    out-of-fold predictions, as the fit does) and each single component scored on the test
    part both ways, and by the rule a fit could choose itself: the one with the better
    macro F1 of the stack's cross-fitted out-of-fold predictions on the training part (a tie
    keeps balanced).  -> components-decision-dev.md"""
    from aam_engine.fit.stack import cross_fitted_stack
    from tables import interval_cell
    args, stacks = split_args(argv, "default=l2:rel+rf:rel+l2:comp_rel+rf:comp_rel;"
                              "abundances=l2:rel+rf:rel;L2 on CLR (a baseline)=l2:clr;"
                              "forest on CLR=rf:clr")
    lines = ["# The classifier's decision rule (development splits)", "",
             f"`python bench/components.py decision` on the cached predictions of `predict`, "
             f"commit {commit()}: macro F1 on the test part, mean ± sd (ddof 1) over splits, "
             "with the most probable class ('probable') and with the balanced rule (the class "
             "whose probability stands highest against its training share); balanced − "
             "probable: the paired difference, mean and 95% t-interval over splits; chosen "
             "out of fold: per split, the rule with the better out-of-fold macro F1 of the "
             "stack cross-fitted on the training part's folds (a tie keeps balanced).", "",
             "| dataset: target | stack | n | probable | balanced | balanced − probable | "
             "chosen out of fold (balanced chosen) |", "|---|---|---|---|---|---|---|"]
    for name in args.datasets.split(","):
        tests = split_tests(name, args.seeds)
        for target, classify in DATASETS[name]["targets"]:
            if not classify:
                continue
            for sname, comps in stacks.items():
                rows = []
                for seed, te in tests.items():
                    got = cached_stack(name, target, seed, te, comps, True)
                    if got is None:
                        continue
                    z, classes, p = got
                    ytr, yte, C = z[0]["ytr"], z[0]["yte"], len(classes)
                    oof = cross_fitted_stack([d["oof"] for d in z], np.searchsorted(
                        classes, ytr), C, z[0]["folds"])
                    f1 = lambda y, q, rule: score(y, q, classes, True, ytr, rule)["macro_f1"]
                    test = [f1(yte, p, rule) for rule in ("probable", "balanced")]
                    pick = int(f1(ytr, oof, "balanced") >= f1(ytr, oof, "probable"))
                    rows.append(test + [test[pick], pick])
                if len(rows) > 1:
                    r = np.array(rows)
                    lines.append(f"| {name}: {target} | {sname} (`{comps}`) | {len(r)} | "
                                 f"{ms(r[:, 0])} | {ms(r[:, 1])} | "
                                 f"{interval_cell(r[:, 1] - r[:, 0])} | {ms(r[:, 2])} "
                                 f"({int(r[:, 3].sum())} of {len(r)}) |")
    publish(lines, "components-decision-dev.md")


if __name__ == "__main__":
    {"predict": predict_main, "combine": combine_main,
     "select": select_main, "decision": decision_main}[sys.argv[1]](sys.argv[2:])

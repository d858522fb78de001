"""Accuracy: AAM (pretrain on UniFrac, then fine-tune) against scikit-learn's RandomForest with
q2-sample-classifier's defaults, on the same splits and the same (rarefied) table.

Dataset: ../shared/data/ibd-2538 (Halfvarson et al. 2017; 24 subjects sampled over time).
Targets: `ibd` (Crohn's vs control: accuracy, macro F1) and `age` (MAE, R²).
Splits: grouped by host_subject_id (honest; several seeds) and one plain random split to show
the leakage gap.  The encoder's UniFrac fit is scored on the held-out samples.

    python bench/accuracy.py                       # 3 grouped seeds + 1 random split
    python bench/accuracy.py --seeds 0 --epochs 4  # quick look
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
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("AAM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "ibd-2538"
RESULTS = ROOT / "bench" / "results"


def load():
    import pandas as pd
    from aam_engine.data import compute_unifrac, load_biom
    warnings.simplefilter("ignore")
    table = load_biom(DATA / "table.qza")
    md = pd.read_csv(DATA / "metadata.tsv", sep="\t", dtype=str).set_index("sample_name")
    keep = [s for s in table.sample_ids if s in md.index]
    table = table.subset(keep).rarefy(5000, seed=0)
    table, dist = compute_unifrac(table, DATA / "tree-pruned.nwk")
    md = md.loc[table.sample_ids]
    return table, dist, md


def rf(train_X, train_y, test_X, classify: bool, seed: int):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    m = cls(n_estimators=100, random_state=seed, n_jobs=1)   # q2-sample-classifier defaults
    m.fit(train_X, train_y)
    return m.predict(test_X)


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
    from aam_engine.training.metrics import accuracy, macro_f1, mae, r2_score
    if classify:
        labels = sorted(set(y) | set(p))
        yi, pi = [labels.index(v) for v in y], [labels.index(v) for v in p]
        return {"accuracy": accuracy(yi, pi), "macro_f1": macro_f1(np.array(yi), np.array(pi))}
    return {"mae": mae(y, p), "r2": r2_score(y, p)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--random-split", type=int, default=1, help="also run one random split")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--test-size", type=float, default=0.25)
    args = ap.parse_args()
    import torch
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from aam_engine.data import split_ids
    from aam_engine.training.metrics import distance_r2
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark needs ../shared/data/ibd-2538")
    t0 = time.time()
    table, dist, md = load()
    groups = md["host_subject_id"].to_dict()
    mcfg = ModelConfig(embedding_dim=64, attention_heads=4, attention_layers=2, max_bp=100,
                       token_limit=256, dropout=0.1)
    splits = [("grouped", int(s)) for s in args.seeds.split(",")]
    splits += [("random", 0)] if args.random_split else []
    rows = []
    for kind, seed in splits:
        train, test = split_ids(table.sample_ids, args.test_size, seed,
                                groups if kind == "grouped" else None)
        tr_t, te_t = table.subset(train), table.subset(test)
        idx_tr, idx_te = table.index_of(train), table.index_of(test)
        tc = dict(batch_size=16, learning_rate=5e-4, seed=seed, progress=False, patience=4,
                  validation_fraction=0.15, warmup_steps=50)
        enc = api.pretrain(tr_t, mcfg, TrainConfig(epochs=args.pretrain_epochs, **tc),
                           distances=(train, dist[np.ix_(idx_tr, idx_tr)]), groups=groups)
        _, emb = api.embed(enc, te_t)
        unifrac_r2 = distance_r2(emb, dist[np.ix_(idx_te, idx_te)])
        X = table.counts.toarray()
        rec = {"split": kind, "seed": seed, "n_train": len(train), "n_test": len(test),
               "encoder_heldout_unifrac_r2": unifrac_r2}
        for target, classify in (("ibd", True), ("age", False)):
            y_all = md[target]
            conv = (lambda v: v) if classify else float
            tr_ok = [s for s in train if usable(y_all[s], conv)]
            te_ok = [s for s in test if usable(y_all[s], conv)]
            targets = {s: conv(y_all[s]) for s in tr_ok}
            model = api.fit(tr_t.subset(tr_ok), targets,
                            "classification" if classify else "regression",
                            mcfg, TrainConfig(epochs=args.epochs, nuc_penalty=0.0, **tc),
                            encoder=enc, groups=groups)
            out = api.predict(model, te_t.subset(te_ok))
            y_te = [conv(y_all[s]) for s in out[0]]
            aam = scores(y_te, out[1], classify)
            rf_pred = rf(X[table.index_of(tr_ok)], [conv(y_all[s]) for s in tr_ok],
                         X[table.index_of(out[0])], classify, seed)
            rec[target] = {"aam": aam, "rf": scores(y_te, list(rf_pred), classify)}
        rows.append(rec)
        print(json.dumps(rec), file=sys.stderr)
    meta = {"command": " ".join(["python", "bench/accuracy.py"] + sys.argv[1:]),
            "machine": platform.platform(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "minutes": (time.time() - t0) / 60,
            "date": time.strftime("%Y-%m-%d"), "model": mcfg.to_dict(),
            "rarefaction": 5000, "unifrac": "unweighted, tree-pruned.nwk"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accuracy-ibd-2538.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    md_text = report(meta, rows)
    (RESULTS / "accuracy-ibd-2538.md").write_text(md_text)
    print(md_text)


def report(meta, rows) -> str:
    def ms(vals):
        vals = np.array(vals, float)
        return f"{vals.mean():.3f} ± {vals.std():.3f}" if len(vals) > 1 else f"{vals.mean():.3f}"
    lines = [f"Accuracy on ibd-2538, {meta['date']}, {meta['machine']}, {meta['threads']} threads, "
             f"{meta['minutes']:.0f} min; `{meta['command']}`", "",
             "| split | n | model | ibd accuracy | ibd macro F1 | age MAE (y) | age R² | held-out UniFrac R² |",
             "|---|---|---|---|---|---|---|---|"]
    for kind in ("grouped", "random"):
        rs = [r for r in rows if r["split"] == kind]
        if not rs:
            continue
        label = f"grouped by subject ({len(rs)} seeds)" if kind == "grouped" else "random"
        for m in ("aam", "rf"):
            lines.append(
                f"| {label} | {rs[0]['n_train']}/{rs[0]['n_test']} | "
                f"{'AAM' if m == 'aam' else 'RandomForest'} | "
                f"{ms([r['ibd'][m]['accuracy'] for r in rs])} | "
                f"{ms([r['ibd'][m]['macro_f1'] for r in rs])} | "
                f"{ms([r['age'][m]['mae'] for r in rs])} | {ms([r['age'][m]['r2'] for r in rs])} | "
                f"{ms([r['encoder_heldout_unifrac_r2'] for r in rs]) if m == 'aam' else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Should heads read the k-mer spectrum when samples are grouped by subject?

On grouped splits (whole subjects held out, as in bench/accuracy.py) this fits each target's
heads twice on the same pretrained encoder: without the spectrum (head_kmer_size=0, what the
default does with groups) and with it (head_spectrum='always'), and records both held-out
scores and both out-of-fold target losses, so the third policy -- keep whichever has the lower
out-of-fold loss, what the default does WITHOUT groups -- can be scored too.

    python bench/head_spectrum.py                       # every grouped dataset, 3 seeds
    python bench/head_spectrum.py --datasets sleep-apnea --encoders /tmp/enc   # reuse encoders

Results: bench/results/head_spectrum.jsonl (one line per split and target) and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy as B  # noqa: E402  (bench/accuracy.py: data, splits, scores)

POLICIES = ("without", "always", "lower out-of-fold loss")


def run(name, data, seed, encoders):
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from aam_engine.io import read_model_dir, write_model_dir
    table, dist, md = data
    # the seeded pick of test subjects (on moving-pictures: the first person on every seed,
    # as when results/head_spectrum.md was made; accuracy.py now holds each out in turn)
    train, test, groups = B.split(name, table, md, "grouped", seed, 0.25)
    tr_t, te_t = table.subset(train), table.subset(test)
    itr = table.index_of(train)
    tc = dict(random_seed=seed, progress=False)
    cached = Path(encoders) / f"{name}-grouped-{seed}" if encoders else None
    if cached is not None and cached.exists():
        enc = read_model_dir(cached)
    else:
        enc = api.pretrain(tr_t, ModelConfig(**B.CPU_SIZE), TrainConfig(epochs=10, **tc),
                           distances=(train, dist[np.ix_(itr, itr)]), groups=groups)
        if cached is not None:
            write_model_dir(enc, cached)
    for target, classify in B.DATASETS[name]["targets"]:
        conv, tr_ok, y_tr, te_ok = B.labelled(md, target, classify, train, test)
        col = md[target]
        rec = {"dataset": name, "seed": seed, "target": target,
               "grouped_folds": groups is not None}
        for key, kw in (("without", dict(head_kmer_size=0)),
                        ("always", dict(head_spectrum="always"))):
            model = api.fit(tr_t.subset(tr_ok), dict(zip(tr_ok, y_tr)),
                            "classification" if classify else "regression",
                            ModelConfig(**B.CPU_SIZE, **kw), TrainConfig(epochs=100, **tc),
                            encoder=enc, groups=groups)
            out = api.predict(model, te_t.subset(te_ok))
            rec[key] = {**B.scores([conv(col[s]) for s in out[0]], list(out[1]), classify),
                        "oof_loss": model.extra["validation_loss"]}
        yield rec


def report(recs) -> str:
    lines = ["Heads with and without the k-mer spectrum on grouped splits (held-out subjects; "
             "mean ± sd over seeds; `python bench/head_spectrum.py`)", "",
             "| dataset | target | metric | " + " | ".join(POLICIES) + " |",
             "|---|---|---|" + "---|" * len(POLICIES)]
    keys = list(dict.fromkeys((r["dataset"], r["target"]) for r in recs))
    for ds, t in keys:
        rs = [r for r in recs if (r["dataset"], r["target"]) == (ds, t)]
        m = "macro_f1" if "macro_f1" in rs[0]["without"] else "mae"
        pick = lambda r: r["always" if r["always"]["oof_loss"] < r["without"]["oof_loss"]
                           else "without"]
        cells = [B.ms([r[p][m] for r in rs]) for p in POLICIES[:2]]
        kept = sum(pick(r) is r["always"] for r in rs)
        cells.append(B.ms([pick(r)[m] for r in rs]) + f" (spectrum kept {kept}/{len(rs)})")
        lines.append(f"| {ds} | {t} | {m.replace('_', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ibd-2538,sleep-apnea,moving-pictures-dada2,pd-mice")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--encoders", help="directory to keep / reuse the pretrained encoders")
    args = ap.parse_args()
    log = B.RESULTS / "head_spectrum.jsonl"
    recs = []
    for name in args.datasets.split(","):
        data = B.load(name)
        for seed in (int(s) for s in args.seeds.split(",")):
            for rec in run(name, data, seed, args.encoders):
                print(json.dumps(rec), file=sys.stderr, flush=True)
                recs.append(rec)
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = report(recs)
    (B.RESULTS / "head_spectrum.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

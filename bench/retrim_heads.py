"""Heads on the shipped encoder, read on other trims: one setting against the default.

For each study and development split (grouped, as bench/transfer.py): heads are fitted on the
shipped encoder with the defaults and with each variant (``--variant name:key=value,...``, one
engine setting changed), then predict the test subjects' samples as they are and with every
read one base later and ten bases shorter (as another primer and trim give).  Macro F1 on
held-out subjects, mean ± sd (ddof 1) over splits, and the fraction of constant predictions.

    python bench/retrim_heads.py --variant trim10:read_trim=10

Every finished (study, seed, settings, source version) is appended to
bench/results/retrim-heads.runs.jsonl (a rerun of the same skips it; the source version is
the commit, plus a hash of the uncommitted engine diff if any, so a changed engine runs
again); the table
goes to bench/results/retrim-heads.md.
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
from accuracy import RESULTS, scores, usable  # noqa: E402
from transfer import STUDIES, load, mean_sd  # noqa: E402


def parse_value(v):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def variants(specs):
    out = {"default": {}}
    for spec in specs:
        name, _, sets = spec.partition(":")
        out[name] = {k: parse_value(v) for k, v in (s.split("=", 1) for s in sets.split(",") if s)}
    return out


def run(name, table, md, seed, shipped, over):
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from aam_engine.data import split_ids
    spec = STUDIES[name]
    groups = {s: md.at[s, spec["group"]] if usable(md.at[s, spec["group"]], str) else s
              for s in table.sample_ids}
    train, test = split_ids(table.sample_ids, 0.25, seed, groups)
    y = {s: md.at[s, spec["target"]] for s in table.sample_ids}
    model_keys = {f for f in ModelConfig.__dataclass_fields__}
    mc = ModelConfig(**{k: v for k, v in over.items() if k in model_keys})
    tc = TrainConfig(random_seed=seed, progress=False, compare_baselines=False,
                     **{k: v for k, v in over.items() if k not in model_keys})
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = api.fit(table.subset(train), y, "classification", mc, tc, encoder=shipped,
                        groups={s: groups[s] for s in train})
    minutes = (time.time() - t0) / 60
    te = table.subset(test)
    length = int(np.median([len(s) for s in te.sequences])) - 10
    rec = {"study": name, "seed": seed, "minutes": minutes, "retrim_length": length}
    for kind, t in (("as_is", te), ("retrimmed", te.trimmed(1, length))):
        ids, labels, _, _ = api.predict(model, t)
        rec[kind] = scores([y[s] for s in ids], list(labels), True)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default="ibd-2538,sleep-apnea")
    ap.add_argument("--seeds", default="0,1,2", help="development split seeds")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...")
    args = ap.parse_args()
    import torch
    from aam_engine import pretrained
    shipped = pretrained.default_encoder()
    sha = pretrained.card()["weights_sha256"]
    import subprocess
    import hashlib
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True).stdout
    diff = git("diff", "HEAD", "--", "aam_engine")
    source = git("rev-parse", "--short", "HEAD").decode().strip() + (
        "+" + hashlib.sha256(diff).hexdigest()[:8] if diff else "")
    log = RESULTS / "retrim-heads.runs.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["study"], r["seed"], json.dumps(r["settings"], sort_keys=True),
                  r.get("source"))] = r
    vs = variants(args.variant)
    runs = {}
    for name in args.studies.split(","):
        table, md = load(name)
        for seed in map(int, args.seeds.split(",")):
            for vname, over in vs.items():
                key = (name, seed, json.dumps(over, sort_keys=True), source)
                r = done.get(key)
                if r is None:
                    r = run(name, table, md, seed, shipped, over)
                    r.update(settings=over, encoder_sha256=sha, source=source)
                    with open(log, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
                    print(f"{name} seed {seed} {vname}: as is {r['as_is']['macro_f1']:.3f}, "
                          f"re-trimmed {r['retrimmed']['macro_f1']:.3f}", file=sys.stderr)
                runs.setdefault((name, vname), []).append(r)
    lines = [f"Heads on the shipped encoder ({sha[:12]}) on other trims, "
             f"{time.strftime('%Y-%m-%d')}, {platform.platform()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; `python bench/retrim_heads.py "
             + " ".join(f"--variant {v}" for v in args.variant)
             + f" --studies {args.studies} --seeds {args.seeds}`; development splits (grouped, "
             "test size 0.25), held-out subjects only; macro F1 mean ± sd (ddof 1) over splits; "
             "re-trimmed = every read one base later and ten bases shorter; const = fraction of "
             "test predictions equal to the most common one", "",
             "| study | variant | settings | splits | as is | re-trimmed | const (re-trimmed) | "
             "fit minutes |", "|---|---|---|---|---|---|---|---|"]
    for (name, vname), rs in runs.items():
        lines.append(f"| {name} | {vname} | {json.dumps(vs[vname]) if vs[vname] else '-'} | "
                     f"{len(rs)} | {mean_sd([r['as_is']['macro_f1'] for r in rs])} | "
                     f"{mean_sd([r['retrimmed']['macro_f1'] for r in rs])} | "
                     f"{mean_sd([r['retrimmed']['const'] for r in rs])} | "
                     f"{mean_sd([r['minutes'] for r in rs])} |")
    (RESULTS / "retrim-heads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

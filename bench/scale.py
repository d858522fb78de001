"""Pretraining at the scale of public collections: peak memory and speed against the number of
samples.  For each size, in a fresh process: simulate a sparse table (ASVs growing with samples,
as in real collections: 2,000 x sqrt(N / 1,000)) on a random tree, then `api.pretrain` from the
tree (per-batch UniFrac: nothing N x N) for a fixed number of optimizer steps.  Recorded: data
preparation time, peak resident memory of the process, training samples/s.

    python bench/scale.py                         # 1k, 4k, 16k, 64k samples, 200 steps each
    python bench/scale.py --sizes 1000,256000 --steps 100

Results: bench/results/scale.json, .md and scale.png (memory against N, with the linear fit).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
MODEL = dict(embedding_dim=64, attention_heads=4, attention_layers=2, token_limit=256)


def n_features(n: int) -> int:
    return int(2000 * (n / 1000) ** 0.5)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n: int, steps: int, batch: int) -> dict:
    """Everything for one size, in this process (the parent runs each size in a new one)."""
    import io
    import warnings
    import skbio
    import torch
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from aam_engine.data.simulate import simulate_collection
    warnings.simplefilter("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base = peak_mb()
    t0 = time.time()
    table, nwk = simulate_collection(n, n_features(n), seed=0)
    tree = skbio.TreeNode.read(io.StringIO(nwk))
    t_sim = time.time() - t0
    t0 = time.time()
    _, src = api.resolve_distances(table, tree=tree)      # what pretrain does first
    t_prep = time.time() - t0
    after_prep = peak_mb()
    del src
    t0 = time.time()
    enc = api.pretrain(table, ModelConfig(**MODEL),
                       TrainConfig(epochs=-(-steps * batch // n) + 1, max_steps=steps,
                                   batch_size=batch,
                                   validation_fraction=0.0, warmup_steps=10, progress=False),
                       tree=tree)
    t_train = time.time() - t0
    done = enc.extra["optimizer_steps"]
    epoch_s = sum(h["seconds"] for h in enc.history)     # the steps alone, without set-up
    return {"samples": n, "features": table.n_features, "nonzeros": int(table.counts.nnz),
            "simulate_s": t_sim, "unifrac_prep_s": t_prep, "steps": done,
            "train_s": t_train, "steps_s": epoch_s, "samples_per_s": done * batch / epoch_s,
            "peak_mb_after_prep": after_prep, "peak_mb": peak_mb(), "baseline_mb": base,
            "full_matrix_mb": n * n * 8 / 2 ** 20}


def report(meta, rows) -> str:
    import numpy as np
    n = np.array([r["samples"] for r in rows], float)
    fits = {}
    for key in ("peak_mb_after_prep", "peak_mb"):
        m = np.array([r[key] for r in rows], float)
        fits[key] = np.polyfit(n, m, 1) if len(rows) > 1 else (float("nan"), float("nan"))
    lines = [f"Pretraining memory and speed against samples, {meta['date']}, {meta['platform']}, "
             f"torch {meta['torch']}, {meta['threads']} threads; `{meta['command']}`", "",
             "| samples | ASVs | UniFrac prep (s) | peak MB after data + UniFrac prep | peak MB "
             "after training steps | an N x N float64 matrix would be (MB) | steps | "
             "samples/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['samples']:,} | {r['features']:,} | {r['unifrac_prep_s']:.1f} | "
                     f"{r['peak_mb_after_prep']:.0f} | {r['peak_mb']:.0f} | "
                     f"{r['full_matrix_mb']:,.0f} | {r['steps']} | {r['samples_per_s']:.1f} |")
    s1, c1 = fits["peak_mb_after_prep"]
    s2, c2 = fits["peak_mb"]
    lines += ["", f"Linear fits: data + UniFrac preparation ≈ {c1:.0f} MB + {s1 * 1000:.1f} MB "
                  f"per 1,000 samples (256,000 samples ≈ {c1 + s1 * 256000:,.0f} MB; 1,000,000 ≈ "
                  f"{c1 + s1 * 1e6:,.0f} MB); whole process ≈ {c2:.0f} MB + {s2 * 1000:.1f} MB per "
                  f"1,000 samples (training activations, set by batch and model size, dominate)."]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    n = np.array([r["samples"] for r in rows], float)
    m = np.array([r["peak_mb"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(n, m, "o-", label="peak memory, whole run (measured)")
    ax.plot(n, [r["peak_mb_after_prep"] for r in rows], "s-",
            label="peak after data + UniFrac prep (measured)")
    ax.plot(n, [r["full_matrix_mb"] + r["baseline_mb"] for r in rows], "x--",
            label="one N x N float64 matrix (not built)")
    if len(rows) > 1:
        s, c = np.polyfit(n, m, 1)
        ax.plot(n, c + s * n, ":", color="k", label="linear fit")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("samples"), ax.set_ylabel("MB")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,4000,16000,64000")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="rewrite .md/.png from scale.json")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.batch_size)), flush=True)
        return
    if args.report:
        saved = json.loads((RESULTS / "scale.json").read_text())
        (RESULTS / "scale.md").write_text(report(saved["meta"], saved["rows"]))
        plot(saved["rows"], RESULTS / "scale.png")
        print(report(saved["meta"], saved["rows"]))
        return
    import torch
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--steps",
                              str(args.steps), "--batch-size", str(args.batch_size)],
                             capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"size {n} failed")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "platform": platform.platform(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "command": "python bench/scale.py " + " ".join(sys.argv[1:])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / "scale.md").write_text(report(meta, rows))
    plot(rows, RESULTS / "scale.png")
    print(report(meta, rows))


if __name__ == "__main__":
    main()

"""Pretraining at the scale of public collections: peak memory and speed against the number of
samples.  For each size, in a fresh process: simulate a sparse table (ASVs growing with samples,
as in real collections: 2,000 x sqrt(N / 1,000)) on a random tree, then `api.pretrain` from the
tree (per-batch UniFrac: nothing N x N) for a fixed number of optimizer steps.  Recorded: data
preparation time, peak resident memory of the process, training samples/s.  With ``--devices
N`` (N training processes on this node, DDP): the node's peak memory, the proportional set size
(PSS) summed over the run's processes and sampled every 0.2 s, which counts pages the processes
share (the node-shared table and branch profiles, data.shared) once, not once per process.

    python bench/scale.py                         # 1k, 4k, 16k, 64k samples, 200 steps each
    python bench/scale.py --sizes 1000,256000 --steps 100
    python bench/scale.py --sizes 4000,16000,64000 --steps 40 --devices 2 --tag ddp2

Results: bench/results/scale.json, .md and scale.png (memory against N, with the linear fit).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
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


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pids(root: int) -> list[int]:
    """``root`` and its descendants (Linux /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class NodeMemory:
    """Peak of the PSS summed over this process and its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.peak_kb, self.every, self._stop = 0, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        self.peak_kb = max(self.peak_kb, sum(_pss_kb(p) for p in _tree_pids(os.getpid())))

    def _run(self):
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_mb(self):
        return self.peak_kb / 1024


def one(n: int, steps: int, batch: int, devices: int = 1) -> dict:
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
    from aam_engine.inputs import resolve_distances
    _, src = resolve_distances(table, tree=tree)      # what pretrain does first
    t_prep = time.time() - t0
    after_prep = peak_mb()
    del src
    t0 = time.time()
    with NodeMemory() as node:
        enc = api.pretrain(table, ModelConfig(**MODEL),
                           TrainConfig(epochs=-(-steps * batch // n) + 1, max_steps=steps,
                                       batch_size=batch, devices=devices, device="cpu",
                                       validation_fraction=0.0, warmup_steps=10,
                                       progress=False),
                           tree=tree)
    t_train = time.time() - t0
    done = enc.extra["optimizer_steps"]
    epoch_s = sum(h["seconds"] for h in enc.history)     # the steps alone, without set-up
    return {"samples": n, "features": table.n_features, "nonzeros": int(table.counts.nnz),
            "simulate_s": t_sim, "unifrac_prep_s": t_prep, "steps": done,
            "train_s": t_train, "steps_s": epoch_s,
            "samples_per_s": done * batch * devices / epoch_s,
            "peak_mb_after_prep": after_prep, "peak_mb": peak_mb(), "baseline_mb": base,
            "node_peak_mb": node.peak_mb, "devices": devices,
            "full_matrix_mb": n * n * 8 / 2 ** 20}


def report(meta, rows) -> str:
    import numpy as np
    n = np.array([r["samples"] for r in rows], float)
    devices = rows[0].get("devices", 1)
    node = all("node_peak_mb" in r for r in rows) and devices > 1
    keys = ("peak_mb_after_prep", "peak_mb") + (("node_peak_mb",) if node else ())
    fits = {}
    for key in keys:
        m = np.array([r[key] for r in rows], float)
        fits[key] = np.polyfit(n, m, 1) if len(rows) > 1 else (float("nan"), float("nan"))
    per = f", {devices} training processes (DDP, gloo)" if devices > 1 else ""
    lines = [f"Pretraining memory and speed against samples{per}, {meta['date']}, "
             f"{meta['platform']}, torch {meta['torch']}, {meta['threads']} threads; "
             f"`{meta['command']}`", "",
             "| samples | ASVs | UniFrac prep (s) | peak MB after data + UniFrac prep | peak MB "
             "after training steps" + (" (parent process)" if node else "") + " | "
             + ("node peak MB (PSS, all processes) | " if node else "")
             + "an N x N float64 matrix would be (MB) | steps | samples/s |",
             "|---|---|---|---|---|" + ("---|" if node else "") + "---|---|---|"]
    for r in rows:
        lines.append(f"| {r['samples']:,} | {r['features']:,} | {r['unifrac_prep_s']:.1f} | "
                     f"{r['peak_mb_after_prep']:.0f} | {r['peak_mb']:.0f} | "
                     + (f"{r['node_peak_mb']:.0f} | " if node else "")
                     + f"{r['full_matrix_mb']:,.0f} | {r['steps']} | {r['samples_per_s']:.1f} |")
    s1, c1 = fits["peak_mb_after_prep"]
    s2, c2 = fits["peak_mb"]
    lines += ["", f"Linear fits: data + UniFrac preparation ≈ {c1:.0f} MB + {s1 * 1000:.1f} MB "
                  f"per 1,000 samples (256,000 samples ≈ {c1 + s1 * 256000:,.0f} MB; 1,000,000 ≈ "
                  f"{c1 + s1 * 1e6:,.0f} MB); " + ("parent process" if node else "whole process")
              + f" ≈ {c2:.0f} MB + {s2 * 1000:.1f} MB per 1,000 samples"
              + (" (training activations, set by batch and model size, dominate)." if not node
                 else "")]
    if node:
        s3, c3 = fits["node_peak_mb"]
        lines[-1] += (f"; the whole node ≈ {c3:.0f} MB + {s3 * 1000:.1f} MB per 1,000 samples "
                      f"({c3 + s3 * 1e6:,.0f} MB at 1,000,000).")
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
    ap.add_argument("--devices", type=int, default=1,
                    help="training processes on this node (DDP); >1 also records node memory")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="rewrite .md/.png from scale.json")
    args = ap.parse_args()
    name = "scale" + (f"-{args.tag}" if args.tag else "")
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.batch_size, args.devices)), flush=True)
        return
    if args.report:
        saved = json.loads((RESULTS / f"{name}.json").read_text())
        (RESULTS / f"{name}.md").write_text(report(saved["meta"], saved["rows"]))
        plot(saved["rows"], RESULTS / f"{name}.png")
        print(report(saved["meta"], saved["rows"]))
        return
    import torch
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--steps",
                              str(args.steps), "--batch-size", str(args.batch_size),
                              "--devices", str(args.devices)],
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
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / f"{name}.md").write_text(report(meta, rows))
    plot(rows, RESULTS / f"{name}.png")
    print(report(meta, rows))


if __name__ == "__main__":
    main()

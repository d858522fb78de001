"""Training throughput and memory, side by side in ONE run (cases interleaved, each step
timed in its own subprocess so peak memory is per case).  Needs only torch + numpy + the
engine (biom/h5py/unifrac for the real-data workload): no QIIME 2.

Cases (every ratio is against (a), measured in the same run):
  a naive      every [sample, ASV slot] through the nucleotide encoder, fp32, eager (the seed's way)
  b dedup      unique ASVs of the batch encoded once, scattered back by index
  c bf16       (b) + bf16 autocast               (CUDA; on CPU only with --cpu-bf16)
  d compile    (c or b) + torch.compile
  e cached     frozen ASV encoder: ASV vectors cached per feature, sample level + head train
  nokmer       (b) without the k-mer ASV features
  matrix       (b) with batch building (distance blocks of the whole matrix) inside the timing
  tree         (matrix) with each batch's UniFrac computed from the tree (data.batch_unifrac)

Workloads:
  seed     ../shared/data/sleep-apnea, features missing from the tree dropped, rarefied to
           1,000, 147 training samples; emb 64, 4 heads, 2 layers, max_bp 100, token_limit 256,
           top-abundance ASVs, batch 8, UniFrac + masked-nucleotide loss (the seed's own
           configuration; the seed itself is not installed here, so it is not timed).
  default  ibd-2538's ASVs-per-sample and abundance skew with synthetic 150 bp sequences;
           default model (emb 128, 4 heads, 4 layers, token_limit 1024) - meant for a GPU.
  corpus   pretraining the shipped encoder: build/corpus (`make corpus`), its pretraining
           studies, UniFrac from the Greengenes tree, its model (cpu preset, max_bp 100),
           batch 16, reads shortened by up to 10 bases (read_trim), no masked nucleotides.

Beside samples/s: the model's training FLOP/s (train_flops: ~3 x the forward's matrix
products) and their fraction of a matrix-product peak measured on the same device in the
same run (matmul_peak).

    python bench/throughput.py --device cpu --quick          # what `make bench` runs
    python bench/throughput.py --device cuda --workload default
    python bench/throughput.py --device cpu --cases matrix,tree --tag unifrac   # per-batch UniFrac
    python bench/throughput.py --device cpu --workload corpus --cases dedup,cached
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("AAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"

WORKLOADS = {
    "seed": dict(model=dict(embedding_dim=64, attention_heads=4, attention_layers=2, max_bp=100,
                            token_limit=256), batch_size=8),
    "default": dict(model=dict(embedding_dim=128, attention_heads=4, attention_layers=4,
                               max_bp=150, token_limit=1024), batch_size=8),
    # pretraining the shipped encoder: the corpus (build/corpus, `make corpus`), its model
    # and reads shortened by up to 10 bases (shipped_encoder/build_encoder.py)
    "corpus": dict(model=dict(embedding_dim=64, attention_heads=4, attention_layers=2,
                              max_bp=100, token_limit=256), batch_size=16, read_trim=10,
                   mask_ratio=0.0),
}


def load_workload(name: str):
    """(table, distances, training rows)."""
    from aam_engine.data import compute_unifrac, load_biom
    from aam_engine.data.table import SampleTable, read_biom
    warnings.simplefilter("ignore")
    if name == "corpus":
        sys.path.insert(0, str(ROOT / "shipped_encoder"))
        import build_encoder as B
        from aam_engine.data import merge_tables, read_fasta
        from aam_engine.inputs import resolve_distances
        corpus = ROOT / "build" / "corpus"
        manifest = json.loads((corpus / "manifest.json").read_text())
        studies = [s for s in sorted(manifest["studies"]) if s not in B.HELD_OUT_STUDIES]
        table, _ = merge_tables(B.load_studies(corpus, studies,
                                               read_fasta(corpus / "sequences.fasta")), studies)
        table, dist = resolve_distances(table, tree=B.pretraining_trees(corpus, manifest,
                                                                        studies))
        return table, dist, np.arange(table.n_samples)
    if name == "seed":
        d = DATA / "sleep-apnea"
        table = load_biom(d / "table.biom")
        table, _ = compute_unifrac(table, d / "tree.nwk")        # drops features not in the tree
        table = table.rarefy(1000, seed=0)
        table, dist = compute_unifrac(table, d / "tree.nwk")
        rows = np.random.default_rng(0).permutation(table.n_samples)[:147]
        return table, dist, rows
    bt = read_biom(DATA / "ibd-2538" / "table.qza")
    rng = np.random.default_rng(0)
    seqs = {f: "".join(rng.choice(list("ACGT"), 150)) for f in bt.ids(axis="observation")}
    table = SampleTable.from_biom(bt, seqs)
    x = rng.random((table.n_samples, 8))
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)) / 2    # UniFrac-like scale
    return table, dist, np.arange(table.n_samples)


def run_case(case: str, workload: str, device: str, steps: int, warmup: int) -> dict:
    import torch
    from aam_engine.config import ModelConfig
    from aam_engine.data import BatchBuilder, ReadNoise
    from aam_engine.models import AAM
    from aam_engine.training import losses as L
    from aam_engine.runtime import autocast
    torch.manual_seed(0)
    table, dist, rows = load_workload(workload)
    w = WORKLOADS[workload]
    # 'nokmer': the dedup path without the k-mer ASV features, to price them side by side
    mcfg = ModelConfig(dropout=0.1, **w["model"], **({"kmer_size": 0} if case == "nokmer" else {}))
    dev = torch.device(device)
    model = AAM(mcfg).to(dev)
    precision = "bf16" if case in ("bf16", "compile") and (dev.type == "cuda" or
                                                         os.environ.get("AAM_CPU_BF16")) else "fp32"
    cache = None
    mask_ratio = w.get("mask_ratio", 0.15)
    if case == "cached":
        model.asv.requires_grad_(False)
        cache = model.asv_vectors(torch.as_tensor(BatchBuilder(table, mcfg.token_limit,
                                                               mcfg.max_bp).feature_tokens,
                                                  device=dev))
        mask_ratio = 0.0   # no nucleotide objective with a frozen nucleotide encoder
    fwd = torch.compile(model, dynamic=True) if case == "compile" else model
    if case == "tree":   # per-batch UniFrac from the tree (what training from a tree does)
        from aam_engine.data import batch_unifrac
        _, dist = batch_unifrac(table, DATA / "sleep-apnea" / "tree.nwk")
    trim = w.get("read_trim", 0)
    bb = BatchBuilder(table, mcfg.token_limit, mcfg.max_bp, distances=dist,
                      noise=ReadNoise(mask_ratio=mask_ratio, read_trim=trim))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    rng = np.random.default_rng(0)
    # 'matrix' / 'tree': batches (with their distances) built inside the timed loop, as in
    # training; the other cases build them beforehand and time the model alone
    lazy = case in ("matrix", "tree")
    batches = []
    while len(batches) < warmup + steps:
        more = bb.batches(rows, w["batch_size"], rng, shuffle=True, drop_last=True,
                          mask=mask_ratio > 0, trim=bool(trim))
        batches += [None] * (len(rows) // w["batch_size"]) if lazy else list(more)
    batches = batches[: warmup + steps]
    order = iter(())
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    n_samples = n_tokens = 0
    ratios = []
    t0 = None
    for i, b in enumerate(batches):
        if lazy:
            b = next(order, None)
            if b is None:
                order = bb.batches(rows, w["batch_size"], rng, shuffle=True, drop_last=True,
                                   mask=mask_ratio > 0)
                b = next(order)
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            n_samples = n_tokens = 0
        t = b.to_torch(dev)
        with autocast(dev, precision):
            # as the trainer: the ASV-set sketch is not computed (no loss reads it)
            out = fwd(t, asv_cache=cache, dedup=case != "naive")
        emb, offset = out["learned_embedding"], out["learned_offset"]   # what training fits
        loss = L.pairwise_loss(emb, t.distances, offset)
        if "nuc_logits" in out:
            loss = loss + L.nucleotide_loss(out["nuc_logits"], out["nuc_targets"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_samples += b.size
        n_tokens += int(b.mask.sum()) * (mcfg.max_bp + 1)   # nucleotide tokens the batch holds
        ratios.append(b.dedup_ratio)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    res = {"case": case, "precision": precision, "steps": steps, "seconds": dt,
           "samples_per_s": n_samples / dt, "tokens_per_s": n_tokens / dt,
           "s_per_batch": dt / steps, "dedup_ratio": float(np.mean(ratios)),
           "loss_finite": bool(torch.isfinite(loss).item())}
    res["flops_per_s"] = None if lazy else train_flops(mcfg, batches[warmup:], case) / dt
    if dev.type == "cuda":
        res["peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        with open("/proc/self/status") as fh:   # peak resident set of this case's process
            hwm = [l for l in fh if l.startswith("VmHWM")][0]
        res["peak_mb"] = int(hwm.split()[1]) / 1024
    return res


def train_flops(cfg, batches, case) -> float:
    """Training FLOPs of these batches: ~3 x forward; forward per token per layer ~24 D^2 +
    4 L D (nucleotide level over each unique ASV's real tokens, sample level over each
    sample's ASVs).  A frozen, cached encoder ('cached') runs the sample level only."""
    D, nl = cfg.embedding_dim, cfg.attention_layers
    flops = 0.0
    for b in batches:
        if case != "cached":
            n_asv = b.slot_index.size if case == "naive" else len(b.unique_features)
            L = cfg.max_bp + 1
            flops += n_asv * L * nl * (24 * D * D + 4 * L * D)
        S = b.mask.shape[1] + 1
        flops += b.size * S * nl * (24 * D * D + 4 * S * D)
    return 3 * flops


def matmul_peak(device: str, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a square matrix product on this device (fp32 on CPU, bf16 on CUDA): the
    measured ceiling the model's FLOP/s are held against, in the same run."""
    import torch
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workload", choices=list(WORKLOADS), default="seed")
    ap.add_argument("--cases", default="naive,dedup,nokmer,bf16,compile,cached")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    ap.add_argument("--quick", action="store_true", help="fewer steps (make bench)")
    ap.add_argument("--cpu-bf16", action="store_true", help="run the bf16 case on CPU too")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--one", help=argparse.SUPPRESS)   # internal: run one case, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.workload, args.device, args.steps, args.warmup)))
        return
    if args.quick:
        args.steps, args.rounds = 6, 2
    import torch
    cases = args.cases.split(",")
    if args.device == "cpu" and not args.cpu_bf16:
        cases = [c for c in cases if c != "bf16"]
    env = dict(os.environ, **({"AAM_CPU_BF16": "1"} if args.cpu_bf16 else {}))
    runs = {c: [] for c in cases}
    for r in range(args.rounds):
        for c in cases:      # interleaved: a, b, ..., a, b, ... so drift hits every case alike
            cmd = [sys.executable, __file__, "--one", c, "--device", args.device, "--workload",
                   args.workload, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                print(f"case {c} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(p.stdout.strip().splitlines()[-1])
            runs[c].append(res)
            print(f"round {r + 1} {c:8s} {res['samples_per_s']:8.2f} samples/s "
                  f"{res['peak_mb']:8.0f} MB", file=sys.stderr)
    peak = matmul_peak(args.device)
    summary = []
    base = None
    for c in cases:
        if not runs[c]:
            continue
        best = max(runs[c], key=lambda x: x["samples_per_s"])   # best of rounds
        row = {**best, "rounds": [x["samples_per_s"] for x in runs[c]]}
        base = base or (row if c == "naive" else None)
        summary.append(row)
    for row in summary:
        row["vs_naive"] = row["samples_per_s"] / base["samples_per_s"] if base else None
        row["of_matmul_peak"] = row["flops_per_s"] / peak if row.get("flops_per_s") else None
    meta = {"device": args.device, "workload": args.workload, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.platform(), "steps": args.steps, "rounds": args.rounds,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "command": " ".join(["python", "bench/throughput.py"] + sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "matmul_peak_flops": peak}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-{args.workload}-{args.device.split(':')[0]}" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "cases": summary}, indent=1))
    md = table_md(meta, summary, args)
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


def table_md(meta, rows, args) -> str:
    lines = [f"Throughput, workload `{meta['workload']}`, {meta['device']}"
             f"{' (' + meta['gpu'] + ')' if meta['gpu'] else ''}, torch {meta['torch']}, "
             f"{meta['threads']} threads, {meta['date']}; `{meta['command']}`", "",
             "| case | precision | samples/s | nucleotide tokens/s | s/batch | peak MB | vs naive |"
             " model GFLOP/s | of the matmul peak |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        line = (f"| {r['case']} | {r['precision']} | {r['samples_per_s']:.1f} | "
                f"{r['tokens_per_s']:.3g} | {r['s_per_batch']:.3f} | {r['peak_mb']:.0f} | "
                + (f"{r['vs_naive']:.2f}x |" if r.get("vs_naive") else "n/a |"))
        line += (f" {r['flops_per_s'] / 1e9:.1f} | {r['of_matmul_peak']:.1%} |"
                 if r.get("flops_per_s") else " n/a | n/a |")
        lines.append(line)
    if rows:
        lines += ["", f"Mean dedup ratio (ASV slots / unique ASVs per batch): "
                      f"{rows[0]['dedup_ratio']:.2f}. Matmul peak measured in the same run "
                      f"({'bf16' if meta['device'].startswith('cuda') else 'fp32'} 2048 x 2048 "
                      f"products): {meta['matmul_peak_flops'] / 1e9:.1f} GFLOP/s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

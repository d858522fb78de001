"""How distinct are the ASV vectors?  A random forest wins by telling individual ASVs apart; an
encoder whose ASV vectors all point the same way cannot.  For up to 1,000 ASVs of a shared
dataset (the most abundant of its rarefied table) this reports the mean pairwise cosine of the
ASV vectors and the fraction of pairs above 0.99: for a freshly initialised model with the
k-mer profile (the default) and without it (kmer_size=0), after CPU-sized pretraining on the
dataset's UniFrac with the defaults, and, as the sequence-level reference, of the ASVs' centred
6-mer profiles; plus the median number of differing nucleotides between two ASVs.

    python bench/asv_vectors.py                           # ibd-2538, pretrains (about 5 min)
    python bench/asv_vectors.py --dataset sleep-apnea --encoder enc_dir/

Results: bench/results/asv_vectors-DATASET.md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"


def cosines(v: np.ndarray) -> np.ndarray:
    """Pairwise cosines (upper triangle) of the rows of ``v``."""
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    c = v @ v.T
    return c[np.triu_indices(len(v), 1)]


def kmer_profiles(seqs, k: int = 6) -> np.ndarray:
    """Centred k-mer count profiles (rows: sequences)."""
    index, rows = {}, []
    for s in seqs:
        row = {}
        for i in range(len(s) - k + 1):
            j = index.setdefault(s[i:i + k], len(index))
            row[j] = row.get(j, 0) + 1
        rows.append(row)
    m = np.zeros((len(seqs), len(index)), np.float32)
    for r, row in enumerate(rows):
        m[r, list(row)] = list(row.values())
    return m - m.mean(0)


def vectors(model, tokens) -> np.ndarray:
    import torch
    return model.asv_vectors(torch.as_tensor(tokens)).float().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ibd-2538")
    ap.add_argument("--n-asvs", type=int, default=1000)
    ap.add_argument("--encoder", help="a pretrained model directory instead of pretraining")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    import accuracy as A
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from aam_engine.io import read_model_dir
    from aam_engine.models import AAM
    from aam_engine.data.tokenizer import tokenize

    t0 = time.time()
    table, dist, _ = A.load(args.dataset)
    mcfg = api.resolve_sizes(ModelConfig(**A.CPU_SIZE), table)
    top = np.argsort(-np.asarray(table.counts.sum(0)).ravel(), kind="stable")[: args.n_asvs]
    seqs = [table.sequences[i] for i in top]
    tokens = tokenize(seqs, mcfg.max_bp)
    a = np.array([list(s[:mcfg.max_bp].ljust(mcfg.max_bp, "-")) for s in seqs])
    diffs = (a[:, None, :] != a[None, :, :]).sum(-1)[np.triu_indices(len(a), 1)]
    rows = []

    def add(name, v):
        c = cosines(v)
        rows.append((name, float(c.mean()), float((c > 0.99).mean())))
        print(rows[-1], flush=True)

    for name, kmer in (("initialised, with the k-mer profile (default)", mcfg.kmer_size),
                       ("initialised, kmer_size=0", 0)):
        torch.manual_seed(args.seed)
        add(name, vectors(AAM(ModelConfig(**{**mcfg.to_dict(), "kmer_size": kmer})).eval(),
                          tokens))
    if args.encoder:
        enc = read_model_dir(args.encoder)
        how = f"pretrained ({args.encoder})"
    else:
        enc = api.pretrain(table, mcfg, TrainConfig(epochs=10, random_seed=args.seed,
                                                    progress=False),
                           distances=(table.sample_ids, dist))
        how = "after pretraining (10 epochs, defaults, all samples)"
    add(how, vectors(enc.build_model(), tokens))
    add("centred 6-mer profiles of the sequences", kmer_profiles(seqs))
    lines = [f"ASV vectors of the {len(seqs)} most abundant ASVs of {args.dataset} "
             f"({time.strftime('%Y-%m-%d')}, {platform.platform()}, {time.time() - t0:.0f} s; "
             f"`python bench/asv_vectors.py --dataset {args.dataset}`). Two of these ASVs differ "
             f"by a median {np.median(diffs):.0f} of {mcfg.max_bp} nucleotides.", "",
             "| vectors | mean pairwise cosine | pairs above 0.99 |", "|---|---|---|"]
    lines += [f"| {n} | {m:.3f} | {f:.1%} |" for n, m, f in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"asv_vectors-{args.dataset}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Train the encoder that ships with q2-aam on the corpus (shipped_encoder/build_corpus.py), check it
on studies and samples it never saw, and write it with its model card into the package.

    python shipped_encoder/build_encoder.py --corpus build/corpus --out aam_engine/pretrained/default
        [--epochs 6] [--checkpoint-dir build/encoder-ckpt]   (rerun the same command to resume)

Held out of pretraining, for the encoder's own validation (chosen before any training, as the
corpus studies with a phenotype target and subjects: they are also the leave-one-study-out
targets of bench/):  HELD_OUT_STUDIES below, whole; and 10% of the other studies' subjects
(whole subjects), whose pairs choose the best epoch.  The Greengenes studies' UniFrac comes
from one tree (Greengenes 13_8 97%), so pairs across them train too; a real-ASV study (the
corpus's ``--asv-study``) has a tree of its own, and its pairs stay within it.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from aam_engine import api  # noqa: E402
from aam_engine.data import batch_unifrac, load_biom, merge_tables, read_fasta  # noqa: E402
from aam_engine.io.model_dir import write_model_dir  # noqa: E402

HELD_OUT_STUDIES = ("mlrepo-kostic", "mlrepo-ravel", "mlrepo-turnbaugh")
# CPU-sized (the `cpu` preset) so that fine-tuning from it runs on a laptop; reads cut by up
# to 10 bases while pretraining (read_trim) so that other trims of V4 read alike; 100 nt read
# (the common Deblur trim; longer reads are cut, as max_bp does for any model)
MODEL = dict(preset="cpu", max_bp=100)
TRAIN = dict(epochs=3, read_trim=10, validation_fraction=0.1, patience=0, random_seed=0)
EVAL_SAMPLES = 300


def read_groups(corpus: Path, studies):
    """{sample: 'study:subject'} (a sample without a subject is its own group)."""
    out = {}
    for line in (corpus / "metadata.tsv").read_text().splitlines()[2:]:
        sid, study, subject = (line.split("\t") + ["", ""])[:3]
        if study in studies:
            out[sid] = f"{study}:{subject or sid}"
    return out


def load_studies(corpus: Path, studies, seqs):
    return [load_biom(corpus / s / "table.biom", seqs) for s in studies]


def distance_fit(bundle, table, tree, seed: int = 0) -> dict:
    """Held-out UniFrac fit of the encoder on (up to EVAL_SAMPLES of) ``table``'s samples:
    R² of the full embedding (what `embed` gives) and of its learned part alone."""
    from aam_engine.metrics import capped_rows, embedding_fit
    keep = capped_rows(table.n_samples, EVAL_SAMPLES, seed)
    table = table.subset([table.sample_ids[i] for i in keep])
    table, unifrac = batch_unifrac(table, tree)
    inf = api.inference_setup(bundle, table, "cpu")
    full, learned = api.run_model(inf.model, inf.builder, np.arange(table.n_samples),
                                  inf.device, key=("embedding", "learned_embedding"))
    scores, _, y = embedding_fit(full, learned, unifrac(np.arange(table.n_samples)),
                                 api.distance_offset(bundle),
                                 api.distance_offset(bundle, learned=True))
    return {"samples": table.n_samples, "pairs": int(len(y)),
            "r2_embedding": round(scores["r2"], 4),
            "r2_learned_part": round(scores["learned_r2"], 4),
            "pearson_embedding": round(scores["pearson"], 4)}


def study_trees(corpus: Path, manifest: dict) -> dict:
    """{study: the tree its UniFrac comes from}: its own (a real-ASV study) or Greengenes'."""
    return {s: corpus / info.get("tree", "tree.nwk") for s, info in manifest["studies"].items()}


def pretraining_trees(corpus: Path, manifest: dict, studies):
    """The ``tree`` argument of api.pretrain for these studies: one path (every study on the
    Greengenes tree: pairs across studies) or a list (pairs within each tree's studies)."""
    trees = study_trees(corpus, manifest)
    used = sorted({trees[s] for s in studies}, key=str)
    return used[0] if len(used) == 1 else used


def add_clusters(corpus: Path, out: Path) -> int:
    """The encoder at ``out``, given the clusters of the reads of its pretraining studies (as
    api.pretrain keeps them), its weights untouched; the card says so."""
    from aam_engine.io import read_model_dir
    from aam_engine.pretraining import read_clusters
    commit = git_commit()               # before anything is written
    manifest = json.loads((corpus / "manifest.json").read_text())
    bundle = read_model_dir(out)
    studies = bundle.extra["corpus"]["studies"]
    if hashlib.sha256((corpus / "manifest.json").read_bytes()).hexdigest() != \
            bundle.extra["corpus"]["manifest_sha256"]:
        raise SystemExit(f"{corpus} is not the corpus this encoder was pretrained on")
    table, _ = merge_tables(load_studies(corpus, studies, read_fasta(corpus / "sequences.fasta")),
                            studies)
    bundle.extra["clusters"] = read_clusters(bundle.build_model(), table,
                                             api.TrainConfig(random_seed=TRAIN["random_seed"]))
    # config.json as it was (its format version too: extra is read in every version), with
    # the clusters; nothing else changes
    cfg = json.loads((out / "config.json").read_text())
    cfg["extra"]["clusters"] = bundle.extra["clusters"]
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=1))
    tmp.replace(out / "config.json")
    read_model_dir(out)                 # still a valid model directory
    card = json.loads((out / "card.json").read_text())
    card["clusters"] = cluster_card(bundle, f"added by `python shipped_encoder/build_encoder.py "
                                            f"--add-clusters` at {commit}")
    (out / "card.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(card))
    print(f"{len(manifest['studies'])} corpus studies; clusters of {table.n_features} reads",
          file=sys.stderr)
    return 0


def cluster_card(bundle, how: str) -> dict:
    c = bundle.extra["clusters"]
    return {"k": len(c["centres"]), "reads": c["reads"], "how": how,
            "sha256": hashlib.sha256(json.dumps(c["centres"]).encode()).hexdigest()}


def git_commit() -> str:
    """The commit whose code runs the build (taken when it starts), '+changes' where the
    working tree differs from it."""
    run = lambda *a: subprocess.run(["git", *a], cwd=HERE.parent, capture_output=True,
                                    text=True, check=True).stdout.strip()
    try:
        dirty = run("status", "--porcelain", "--", "aam_engine", "shipped_encoder")
        return run("rev-parse", "HEAD") + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="build/corpus")
    p.add_argument("--out", default=str(HERE.parent / "aam_engine" / "pretrained" / "default"))
    p.add_argument("--checkpoint-dir", default="build/encoder-ckpt")
    p.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="another value for one of MODEL / TRAIN (experiments)")
    p.add_argument("--add-clusters", action="store_true",
                   help="no training: give the encoder at --out the clusters of its "
                        "pretraining reads (what pretraining keeps since format 2.9)")
    a = p.parse_args(argv)
    if a.add_clusters:
        return add_clusters(Path(a.corpus), Path(a.out))
    model, train = dict(MODEL), dict(TRAIN)
    for kv in a.set:
        k, v = kv.split("=", 1)
        (model if k in MODEL or k in api.ModelConfig.__dataclass_fields__ else train)[k] = \
            type(getattr(api.ModelConfig() if k in api.ModelConfig.__dataclass_fields__
                         else api.TrainConfig(), k))(v)
    commit = git_commit()
    corpus = Path(a.corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    studies = sorted(manifest["studies"])
    train_studies = [s for s in studies if s not in HELD_OUT_STUDIES]
    held = [s for s in studies if s in HELD_OUT_STUDIES]
    seqs = read_fasta(corpus / "sequences.fasta")
    trees = study_trees(corpus, manifest)
    table, study_of = merge_tables(load_studies(corpus, train_studies, seqs), train_studies)
    groups = read_groups(corpus, train_studies)
    mcfg = api.ModelConfig(**model)
    tcfg = api.TrainConfig(**{**train, "epochs": a.epochs, "max_steps": a.max_steps})
    print(f"pretraining on {table.n_samples} samples of {len(train_studies)} studies, "
          f"{table.n_features} OTUs; held out: {held}", file=sys.stderr)
    t0 = time.time()
    bundle = api.pretrain(table, mcfg, tcfg, tree=pretraining_trees(corpus, manifest,
                                                                   train_studies),
                          groups=groups, options=api.Options(checkpoint_dir=a.checkpoint_dir))
    minutes = (time.time() - t0) / 60
    import skbio
    read = {t: skbio.TreeNode.read(str(t), format="newick") for t in set(trees.values())}
    val_ids = bundle.extra["validation_samples"]
    evals = {"held_out_studies": {}, "held_out_subjects": {}}
    for s, t in zip(held, load_studies(corpus, held, seqs)):
        evals["held_out_studies"][s] = distance_fit(bundle, t, read[trees[s]])
    for s in train_studies:
        ids = [v for v in val_ids if study_of[v] == s]
        if len(ids) >= 5:
            evals["held_out_subjects"][s] = distance_fit(bundle, table.subset(ids),
                                                         read[trees[s]])
    out = Path(a.out)
    bundle.extra.update(corpus={"manifest_sha256": hashlib.sha256(
        (corpus / "manifest.json").read_bytes()).hexdigest(), "studies": train_studies,
        "held_out_studies": held}, held_out=evals)
    for k in ("train_samples", "validation_samples"):   # thousands of IDs: counts are enough
        bundle.extra[k] = len(bundle.extra[k])
    write_model_dir(bundle, out)        # the model directory, as `pretrain` writes it
    weights = (out / "weights.safetensors").read_bytes()
    asv = {s: i["source"] for s, i in manifest["studies"].items() if "source" in i}
    card = {
        "name": "q2-aam default encoder (Greengenes 13_8 V4 corpus"
                + (" and real-ASV studies)" if asv else ")"),
        "built": datetime.date.today().isoformat(), "commit": commit,
        "command": " ".join(["python", "shipped_encoder/build_encoder.py"] + list(
            argv if argv is not None else sys.argv[1:])),
        "machine": f"{platform.platform()}, {platform.processor() or 'cpu'}",
        "minutes": round(minutes, 1),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "weights_bytes": len(weights),
        "parameters": int(sum(np.prod(v.shape) for v in bundle.state_dict.values())),
        "model": {k: getattr(bundle.model_config, k) for k in (
            "embedding_dim", "attention_heads", "attention_layers", "max_bp", "kmer_size",
            "token_limit", "set_sketch")},
        "training": {"epochs": tcfg.epochs, "optimizer_steps": bundle.extra["optimizer_steps"],
                     "batch_size": bundle.extra["batch_size"], "read_trim": tcfg.read_trim,
                     "learning_rate": tcfg.learning_rate, "seed": tcfg.random_seed,
                     "samples": table.n_samples - len(val_ids), "validation_samples":
                     len(val_ids), "features": table.n_features},
        "corpus": {"studies": {s: manifest["studies"][s] for s in studies},
                   "held_out_studies": held, "read_length": manifest["read_length"],
                   "region": manifest["region"], "reference": manifest["reference"],
                   "manifest_sha256": bundle.extra["corpus"]["manifest_sha256"]},
        "held_out": evals,
        "clusters": cluster_card(bundle, "kept by pretraining"),
    }
    (out / "card.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(card))
    print(json.dumps(evals, indent=1), file=sys.stderr)
    return 0


LICENCE = """Greengenes 13_8 (sequences, tree, and the meaning of every OTU ID), via the PyPI package
qiime-default-reference 0.1.3: CC BY-SA 3.0. This encoder was trained on those sequences:
DeSantis et al. 2006, Appl Environ Microbiol 72:5069; McDonald et al. 2012, ISME J 6:610.
ShareAlike may apply to these weights as derived data: they are distributed under CC BY-SA 3.0.
Study tables: knights-lab/MLRepo (MIT; Vangay, Hillmann & Knights 2019, GigaScience, and each
original study), biocore/American-Gut, biocore/gneiss (BSD-3-Clause); see
../shared/data/corpus/README.md for each study's source and citation."""


def asv_licences(card: dict) -> list[str]:
    return [f"\n{s}: `{r['source']['repository']}` ({r['source']['licence']}); "
            f"{r['source']['citation']}." for s, r in sorted(card["corpus"]["studies"].items())
            if "source" in r]


def model_card(card: dict) -> str:
    rows = "\n".join(
        f"| {s} | {r['samples']} | {r['otus']} | {r['fraction_reads_kept']:.1%} | "
        f"{'held out' if s in card['corpus']['held_out_studies'] else 'pretraining'} |"
        for s, r in sorted(card["corpus"]["studies"].items()))
    ev = card["held_out"]
    evrows = "\n".join(
        f"| {kind.replace('_', ' ')} | {s} | {r['samples']} | {r['r2_embedding']} | "
        f"{r['r2_learned_part']} | {r['pearson_embedding']} |"
        for kind in ("held_out_studies", "held_out_subjects") for s, r in sorted(ev[kind].items()))
    asv = "".join(
        f"\n- {s}: {r['source']['description']}; `{r['source']['repository']}` at commit "
        f"`{r['source']['commit']}`: `{r['source']['table']}`, `{r['source']['sequences']}`, "
        f"`{r['source']['tree']}` (its own tree), subjects from `{r['source']['metadata']}`; "
        f"{r['source']['licence']}; {r['source']['citation']}."
        for s, r in sorted(card["corpus"]["studies"].items()) if "source" in r)
    if asv:
        asv = ("\nReal-ASV studies (the reads as the study gives them, cut to "
               f"{card['corpus']['read_length']} nt; UniFrac from the study's own tree, pairs "
               "within the study):" + asv + "\n")
    c = card.get("clusters")
    clusters = (f"{c['k']} k-means centres of the vectors of its {c['reads']:,} pretraining "
                f"reads ({c['how']}; config.json extra.clusters, sha256 of its JSON "
                f"`{c['sha256'][:16]}`): the clusters block of a fit on this encoder sums a "
                "sample's reads per cluster of their nearest centre." if c else
                "None kept (an encoder written before format 2.9).")
    m, t = card["model"], card["training"]
    return f"""# {card['name']}

What it is: the AAM encoder that `qiime aam pretrained-encoder` hands out and that `fit-*`,
`regress-samples` and `classify-samples` start from when no encoder is given. It reads the
V4 region (the bases after the 515F primer) of each ASV, {m['max_bp']} nt at most, and
embeds a sample so that distances between embeddings estimate unweighted UniFrac.

Built {card['built']} from commit `{card['commit']}` with `{card['command']}` in
{card['minutes']} minutes on {card['machine']}.
Weights: `weights.safetensors`, {card['weights_bytes']:,} bytes, sha256
`{card['weights_sha256']}`; {card['parameters']:,} numbers.

## Sizes and training
Width {m['embedding_dim']}, {m['attention_heads']} heads, {m['attention_layers']} layers,
{m['token_limit']} ASVs per sample, k-mer size {m['kmer_size']}, ASV-set sketch {m['set_sketch']}.
{t['epochs']} epochs, {t['optimizer_steps']} optimizer steps of {t['batch_size']} samples,
learning rate {t['learning_rate']}, seed {t['seed']}; reads shortened by up to
{t['read_trim']} bases per batch (read_trim). {t['samples']} training samples,
{t['validation_samples']} validation samples (10% of the subjects of the pretraining studies,
whole subjects), {t['features']} OTUs.

## Data
{card['corpus']['reference']}: each OTU's representative sequence cut to
{card['corpus']['read_length']} nt after the 515F primer ({card['corpus']['region']});
UniFrac from the Greengenes 13_8 97% tree over all Greengenes studies at once.
{asv}
| study | samples | OTUs | reads on OTUs with the V4 cut | use |
|---|---|---|---|---|
{rows}

## Clusters of reads
{clusters}

## Held-out results
UniFrac R² of the model's distances against unweighted UniFrac (the study's tree) on samples
that never trained it (up to {EVAL_SAMPLES} per row): the full embedding (what `embed` gives) and
its learned part alone (without the ASV-set sketch).

| held out | study | samples | R² embedding | R² learned part | Pearson embedding |
|---|---|---|---|---|---|
{evrows}

## Licence and attribution
{LICENCE}{''.join(asv_licences(card))}
"""


if __name__ == "__main__":
    sys.exit(main())

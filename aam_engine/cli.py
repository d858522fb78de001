"""`aam-engine` / `python -m aam_engine`: the engine on plain files, for cluster jobs.

    aam-engine simulate --output example/
    aam-engine pretrain --table t.biom [--sequences s.fasta] (--tree t.nwk | --distances d.tsv) --output enc/
    aam-engine pretrain --table a/table.biom --table b/table.biom --sequences s.fasta --tree t.nwk --output enc/
    aam-engine pretrained-encoder --output enc/
    aam-engine train    --table t.biom --metadata m.tsv --target age --task regression [--encoder enc/] --output reg/
    aam-engine predict  --model reg/ --table t.biom --output predictions.tsv
    aam-engine embed    --model enc/ --table t.biom --output embeddings.tsv [--distances d.tsv]

Runs unchanged under `torchrun --nproc_per_node=N` (one node) or with --nnodes/--rdzv-endpoint
(several nodes); only rank 0 writes outputs.  The model directory it writes imports into
QIIME 2 with `qiime tools import --type 'AAMModel[SequenceRegressor]' --input-path reg/`.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from .config import ModelConfig, TrainConfig, declared
from .data.metadata import read_metadata

_SKIP = {"task", "n_outputs", "covariate_sizes"}


def _add_dataclass(parser, cls, group_name):
    """One flag per declared setting (aam_engine.config): its default, choices and help."""
    g = parser.add_argument_group(group_name)
    for name, default, meta in declared(cls):
        if name in _SKIP:
            continue
        flag = "--" + name.replace("_", "-")
        help = f"{meta['help']} (default {default})".replace("%", "%%")
        if isinstance(default, bool):
            g.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"),
                           default=default, metavar="BOOL", help=help)
        else:
            g.add_argument(flag, type=type(default), default=default, help=help,
                           choices=meta["choices"])


def _configs(args):
    """Configurations from the flags (aam_engine.api validates them where they enter)."""
    m = ModelConfig(**{n: getattr(args, n) for n, _, _ in declared(ModelConfig) if n not in _SKIP})
    t = TrainConfig(**{n: getattr(args, n) for n, _, _ in declared(TrainConfig)})
    return m, t


def _column(md, name, path):
    if name not in md:
        raise ValueError(f"column {name!r} is not in {path}; columns: {', '.join(list(md)[:15])}")
    return md[name]


def _table_names(paths) -> list[str]:
    """A name per table file: its stem, or its folder's name where stems repeat
    (study1/table.biom, study2/table.biom)."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    parents = [Path(p).resolve().parent.name for p in paths]
    return parents if len(set(parents)) == len(parents) else [f"table{k + 1}"
                                                              for k in range(len(paths))]


def _load_table(args):
    """One table, or several (--table repeated: one per study) merged; --sequences once for
    all of them, or once per table."""
    from .data import load_biom, merge_tables, read_fasta
    paths = args.table if isinstance(args.table, list) else [args.table]
    fastas = (args.sequences if isinstance(args.sequences, list) else
              [args.sequences] if args.sequences else [])
    if len(fastas) not in (0, 1, len(paths)):
        raise ValueError(f"give --sequences once (for every table) or once per --table; got "
                         f"{len(fastas)} for {len(paths)} tables")
    seqs = [read_fasta(f) for f in fastas]
    tables = [load_biom(p, seqs[k if len(seqs) > 1 else 0] if seqs else None)
              for k, p in enumerate(paths)]
    return merge_tables(tables, _table_names(paths))[0]


def _distances(args):
    """One distance matrix, several (--distances repeated: one per study), or None."""
    paths = getattr(args, "distances", None) or []
    if not paths:
        return None
    from .data import read_distance_matrix
    matrices = [read_distance_matrix(p) for p in paths]
    return matrices[0] if len(matrices) == 1 else matrices


def _trees(args):
    trees = args.tree or []
    return None if not trees else trees[0] if len(trees) == 1 else trees


def _groups(args):
    if args.group_column:
        if not args.metadata:
            raise ValueError("--group-column needs --metadata")
        return _column(read_metadata(args.metadata), args.group_column, args.metadata)
    return None


def _write_tsv(path, header, rows):
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aam-engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write the example dataset")
    s.add_argument("--output", required=True)
    s.add_argument("--n-samples", type=int, default=60)
    s.add_argument("--n-features", type=int, default=120)
    s.add_argument("--seed", type=int, default=0)

    _add_training(sub)
    q = sub.add_parser("pretrained-encoder", help="write the encoder that ships with the "
                                                  "engine (and its model card) to a directory")
    q.add_argument("--output", required=True, help="model directory to write")

    for name in ("predict", "embed"):
        q = sub.add_parser(name, help=f"{name} with a model directory")
        q.add_argument("--model", required=True)
        q.add_argument("--table", required=True)
        q.add_argument("--sequences")
        q.add_argument("--metadata", help="metadata TSV with the model's covariate columns")
        q.add_argument("--device", default="auto")
        q.add_argument("--output", required=True, help="TSV to write")
        q.add_argument("--read-as-is", action="store_true",
                       help="read every ASV as it is (default: an ASV that is another trim "
                            "of a training read, e.g. one base later and ten shorter, is read "
                            "as that training read)")
        if name == "embed":
            q.add_argument("--distances", help="also write the model's UniFrac estimate between "
                           "the samples (a square TSV: the distance matrix that `qiime aam "
                           "embed` gives; the embedding's own distances lack the model's offset)")

    return p


def _add_training(sub):
    """The pretrain and train subcommands: data, where things go, every engine setting."""
    for name in ("pretrain", "train"):
        q = sub.add_parser(name, help=("self-supervised pretraining (UniFrac + masked "
                                       "nucleotides)" if name == "pretrain" else
                                       "fit a regressor / classifier on a metadata column"))
        q.add_argument("--table", required=True, action="append",
                       help="BIOM table; repeat it for several studies (sample IDs unique "
                            "across them), which train as one table")
        q.add_argument("--sequences", action="append",
                       help="FASTA (needed when feature IDs are not sequences): once for every "
                            "table, or once per --table")
        q.add_argument("--tree", action="append",
                       help="rooted Newick tree (UniFrac computed from it); one tree over every "
                            "study gives pairs across studies; repeat it for studies with trees "
                            "of their own (a sample takes the tree that holds most of its "
                            "reads; pairs are compared on one tree only)")
        q.add_argument("--distances", action="append",
                       help="precomputed distance matrix (.tsv/.npz/.npy/.h5); repeat it for "
                            "one matrix per study (pairs within one matrix only)")
        q.add_argument("--metric", default="unweighted",
                       choices=["unweighted", "weighted_normalized", "weighted_unnormalized"])
        q.add_argument("--metadata", help="metadata TSV")
        q.add_argument("--group-column", help="metadata column for a grouped validation split")
        q.add_argument("--rarefaction-depth", type=int, default=None)
        q.add_argument("--checkpoint-dir", help="where last.pt is kept; rerun to resume")
        q.add_argument("--log-dir", help="TensorBoard log directory")
        q.add_argument("--output", required=True, help="model directory to write")
        if name == "train":
            q.add_argument("--target", required=True, help="metadata column to predict")
            q.add_argument("--task", required=True, choices=["regression", "classification"])
            q.add_argument("--encoder", help="pretrained encoder directory")
            q.add_argument("--covariates", default="", help="comma-separated categorical columns")
            q.add_argument("--missing-samples", default="error", choices=["error", "ignore"])
        _add_dataclass(q, ModelConfig, "model")
        _add_dataclass(q, TrainConfig, "training")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"aam-engine {args.command}: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from . import api
    from .io import read_model_dir
    from .training.distributed import finish, init_from_env, node_scope
    if args.command == "simulate":
        from .data.simulate import write_example_data
        paths = write_example_data(args.output, n_samples=args.n_samples,
                                   n_features=args.n_features, seed=args.seed)
        print("\n".join(str(v) for v in paths.values()))
        return 0
    if args.command == "pretrained-encoder":
        import shutil
        from . import pretrained
        pretrained.default_encoder()          # validated; a clear error if it is missing
        shutil.copytree(pretrained.DEFAULT_DIR, args.output)
        print(f"written {args.output}", file=sys.stderr)
        return 0
    if args.command in ("pretrain", "train"):
        init_from_env()
        with node_scope():
            rc = _train_command(args)
        finish()        # every rank waits for rank 0's writing (an error skips this: torchrun
        return rc       # then stops the other ranks)
    bundle = read_model_dir(args.model)
    table = _load_table(args)
    covs = None
    if args.metadata and bundle.covariates:
        md = read_metadata(args.metadata)
        covs = {c: md.get(c, {}) for c in bundle.covariates}
    if args.command == "embed":
        ids, emb = api.embed(bundle, table, device=args.device, match_reads=not args.read_as_is)
        _write_tsv(args.output, ["sample-id"] + [f"dim{i}" for i in range(emb.shape[1])],
                   [[s] + [f"{v:.6g}" for v in row] for s, row in zip(ids, emb)])
        if args.distances:
            dm = api.embedding_distances(bundle, emb)
            _write_tsv(args.distances, [""] + list(ids),
                       [[s] + [f"{v:.6g}" for v in row] for s, row in zip(ids, dm)])
            print(f"written {args.distances}", file=sys.stderr)
    elif bundle.task == "regression":
        ids, vals = api.predict(bundle, table, covs, device=args.device,
                                match_reads=not args.read_as_is)
        _write_tsv(args.output, ["SampleID", "prediction"], [[s, f"{v:.6g}"] for s, v in zip(ids, vals)])
    else:
        ids, labels, probs, classes = api.predict(bundle, table, covs, device=args.device,
                                                  match_reads=not args.read_as_is)
        _write_tsv(args.output, ["SampleID", "prediction"] + list(classes),
                   [[s, l] + [f"{x:.6g}" for x in pr] for s, l, pr in zip(ids, labels, probs)])
    print(f"written {args.output}", file=sys.stderr)
    return 0


def _train_command(args) -> int:
    """pretrain / train.  Under torchrun the table and a distance matrix are read once per node
    (local rank 0) and shared by the node's processes (training.distributed.node_shared)."""
    import dataclasses
    import functools

    from . import api
    from .inputs import Options
    from .io import read_model_dir, write_model_dir
    from .training.distributed import node_shared, world_info
    mcfg, tcfg = _configs(args)
    table = node_shared(functools.partial(_load_table, args))
    options = Options(distances=node_shared(functools.partial(_distances, args)),
                      tree=_trees(args), metric=args.metric,
                      rarefaction_depth=args.rarefaction_depth,
                      checkpoint_dir=args.checkpoint_dir, log_dir=args.log_dir)
    if args.command == "pretrain":
        bundle = api.pretrain(table, mcfg, tcfg, groups=_groups(args), options=options)
    else:
        if not args.metadata:
            raise ValueError("train needs --metadata with the --target column")
        md = read_metadata(args.metadata)
        covs = {c: _column(md, c, args.metadata) for c in args.covariates.split(",") if c}
        encoder = read_model_dir(args.encoder) if args.encoder else None
        options = dataclasses.replace(options, covariates=covs or None,
                                      missing_samples=args.missing_samples)
        bundle = api.fit(table, _column(md, args.target, args.metadata), args.task, mcfg,
                         tcfg, encoder=encoder, groups=_groups(args), options=options)
        bundle.target["name"] = args.target
    if world_info()[0] == 0:
        write_model_dir(bundle, args.output)
        print(f"model written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write one stored example of the model format of whichever engine is first on sys.path.

Run with the engine of an older commit to record that commit's format, e.g.

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old .venv/bin/python tests/data/model_formats/make_example.py OUTDIR

OUTDIR/<format version>/ then holds a tiny encoder and a tiny classifier (the model
directories as that engine wrote them), the table they read (table.tsv: samples x sequences)
and what that engine computed from it (expected.json: the classifier's class probabilities and
the encoder's embedding distances).  tests/engine/test_model_formats.py reads each with today's
engine and asks for the same numbers.  Only the engine's public API of every 2.x release is used.
"""
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from aam_engine import FORMAT_VERSION, api
from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data.simulate import simulate
from aam_engine.data.table import SampleTable
from aam_engine.io.model_dir import write_model_dir


def known(cls, **kw):
    """Only the settings this engine has (older ones lack the newer settings)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})


def main(outdir):
    out = Path(outdir) / FORMAT_VERSION
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate(n_samples=16, n_features=24, seq_length=40, depth=200, seed=3,
                   hashed_ids=False)
    ids = list(sim.sample_ids)
    table = SampleTable.from_arrays(sim.counts, ids, list(sim.feature_ids))
    with open(out / "table.tsv", "w") as f:
        f.write("sample\t" + "\t".join(sim.feature_ids) + "\n")
        for sid, row in zip(ids, np.asarray(sim.counts)):
            f.write(sid + "\t" + "\t".join(str(int(c)) for c in row) + "\n")
    size = dict(embedding_dim=8, attention_heads=2, attention_layers=1, max_bp=40,
                token_limit=32, kmer_size=3, head_kmer_size=0, set_sketch=16, ensemble=2,
                shipped_encoder=False)
    train = dict(epochs=2, batch_size=8, progress=False, seed=0, random_seed=0,
                 validation_fraction=0.25, compare_baselines=False)
    (out / "tree.nwk").write_text(sim.newick)
    encoder = api.pretrain(table, known(ModelConfig, **size), known(TrainConfig, **train),
                           tree=str(out / "tree.nwk"))
    write_model_dir(encoder, out / "encoder")
    labels = {sid: "ab"[i % 2] for i, sid in enumerate(ids)}
    clf = api.fit(table, labels, "classification", known(ModelConfig, **size),
                  known(TrainConfig, **train), encoder=encoder)
    write_model_dir(clf, out / "classifier")
    _, emb = api.embed(encoder, table, device="cpu")
    pred = api.predict(clf, table, device="cpu")
    if hasattr(api, "embedding_distances"):
        dist = api.embedding_distances(encoder, emb)
    else:                               # before 2.1: plain Euclidean distances, no offset
        from scipy.spatial.distance import pdist, squareform
        dist = squareform(pdist(np.asarray(emb, np.float64)))
    expected = dict(format_version=FORMAT_VERSION, samples=ids,
                    distances=np.asarray(dist).tolist(),
                    classes=list(pred[3]), probabilities=np.asarray(pred[2]).tolist())
    (out / "expected.json").write_text(json.dumps(expected))
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])

"""Faults and numerical safety: SIGKILL mid-training then resume, atomic outputs, 1000 bf16
steps on real data, and the bad inputs that only make sense end to end."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from aam_engine import FORMAT_VERSION, api
from aam_engine.config import ModelConfig, TrainConfig

from ..conftest import shared_data

MC = ModelConfig(embedding_dim=16, attention_heads=2, attention_layers=1, max_bp=60,
                 token_limit=24, dropout=0.1, shipped_encoder=False)   # trained whole, here


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "aam_engine"] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _history(model_dir):
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return [{k: v for k, v in h.items() if k != "seconds"} for h in cfg["history"]]


def test_sigkill_mid_training_resumes_to_the_same_result(example_paths, tmp_path):
    p = example_paths
    common = ["train", "--table", str(p["table"]), "--sequences", str(p["sequences"]),
              "--metadata", str(p["metadata"]), "--target", "age", "--task", "regression",
              "--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
              "--max-bp", "60", "--token-limit", "24", "--epochs", "8", "--batch-size", "4",
              "--learning-rate", "0.003", "--progress", "false", "--patience", "0",
              "--shipped-encoder", "false"]          # the whole model trains, from scratch
    ref = _cli(common + ["--output", str(tmp_path / "ref")])
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    ck = tmp_path / "ck"
    proc = _cli(common + ["--output", str(tmp_path / "out"), "--checkpoint-dir", str(ck)])
    deadline = time.time() + 120
    while not (ck / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    import torch
    done = torch.load(ck / "last.pt", weights_only=True)["state"]["epoch"]
    assert 1 <= done < 8, done                       # killed part-way through training
    if (tmp_path / "out").exists():                  # never a half-written model
        from aam_engine.io import validate_model_dir
        validate_model_dir(tmp_path / "out")
    again = _cli(common + ["--output", str(tmp_path / "out"), "--checkpoint-dir", str(ck)])
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert _history(tmp_path / "out") == _history(tmp_path / "ref")
    from safetensors.numpy import load_file
    a, b = load_file(str(tmp_path / "out" / "weights.safetensors")), \
        load_file(str(tmp_path / "ref" / "weights.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_1000_bf16_steps_on_real_data_stay_finite():
    from aam_engine.data import BatchBuilder, ReadNoise, compute_unifrac, load_biom
    from aam_engine.models import AAM
    from aam_engine.training import TaskData, Trainer
    d = shared_data("sleep-apnea")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, dist = compute_unifrac(load_biom(d / "table.biom").rarefy(1000, 0), d / "tree.nwk")
    mc = ModelConfig(embedding_dim=16, attention_heads=2, attention_layers=1, max_bp=100,
                     token_limit=24, dropout=0.1)
    bb = BatchBuilder(table, mc.token_limit, mc.max_bp, distances=dist,
                      noise=ReadNoise(mask_ratio=0.15))
    rows = np.arange(160)
    cfg = TrainConfig(epochs=25, batch_size=4, learning_rate=1e-3, precision="bf16",
                      progress=False, validation_fraction=0, patience=0, random_seed=0)
    trainer = Trainer(AAM(mc), TaskData(bb, rows, np.array([], int), "encoder"), cfg)
    hist = trainer.fit()
    steps = trainer.state["step"]
    assert steps >= 1000, steps
    assert trainer.state["skipped_steps"] == 0
    assert all(np.isfinite(h["train_loss"]) for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_fewer_samples_than_batch_size(example):
    table, dist, md = example
    small = table.subset(table.sample_ids[:3])
    idx = table.index_of(small.sample_ids)
    enc = api.pretrain(small, MC, TrainConfig(epochs=2, batch_size=8, validation_fraction=0,
                                              progress=False),
                       distances=(small.sample_ids, dist[np.ix_(idx, idx)]))
    assert np.isfinite(enc.history[-1]["train_loss"])


def test_unseen_covariate_levels_and_new_features_at_prediction(example):
    """Covariate values never seen in training count as unknown; ASVs never seen in training
    are read from their sequences (the documented fallback: no feature overlap is needed)."""
    from aam_engine.data.table import SampleTable
    table, _, md = example
    model = api.fit(table, md["age"].to_dict(), "regression", MC,
                    TrainConfig(epochs=1, progress=False),
                    options=api.Options(covariates={"group": md["group"].to_dict()}))
    rng = np.random.default_rng(1)
    new_seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(12)]
    new = SampleTable.from_arrays(rng.integers(0, 50, size=(5, 12)) + 1, [f"n{i}" for i in range(5)],
                                  new_seqs)
    assert not set(new.sequences) & set(table.sequences)
    ids, vals = api.predict(model, new, covariates={"group": {f"n{i}": "lung" for i in range(5)}})
    assert len(vals) == 5 and np.isfinite(vals).all()


def test_duplicate_ids_in_distance_matrix():
    from aam_engine.data import check_distance_matrix
    with pytest.raises(ValueError, match="Duplicate IDs in the distance matrix: 'a'"):
        check_distance_matrix(["a", "a", "b"], np.zeros((3, 3)))


def test_cli_reports_errors_without_traceback(example_paths, tmp_path):
    p = example_paths
    proc = _cli(["pretrain", "--table", str(p["table"]), "--tree", str(p["tree"]),
                 "--output", str(tmp_path / "x")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "not nucleotide sequences" in err and "Traceback" not in err


def test_cli_embed_writes_the_distances_that_the_plugin_gives(example_paths, tmp_path):
    """`aam-engine embed --distances` writes the model's UniFrac estimate (offset included),
    the matrix that `qiime aam embed` returns, beside the raw embedding columns."""
    from aam_engine.data import load_biom, read_fasta
    enc = Path(__file__).resolve().parents[1] / "data" / "model_formats" / "2.6" / "encoder"
    p = example_paths
    proc = _cli(["embed", "--model", str(enc), "--table", str(p["table"]), "--sequences",
                 str(p["sequences"]), "--device", "cpu", "--output", str(tmp_path / "e.tsv"),
                 "--distances", str(tmp_path / "d.tsv")])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    import pandas as pd
    dm = pd.read_csv(tmp_path / "d.tsv", sep="\t", index_col=0)
    bundle = api.read_model_dir(enc)
    ids, emb = api.embed(bundle, load_biom(p["table"], read_fasta(p["sequences"])), device="cpu")
    assert list(dm.index) == list(ids) == list(dm.columns)
    expected = api.embedding_distances(bundle, emb)
    np.testing.assert_allclose(dm.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    off = api.distance_offset(bundle)
    assert off > 0 and np.allclose(np.diag(dm.to_numpy()), 0)
    assert dm.to_numpy()[0, 1] == pytest.approx(off + np.linalg.norm(emb[0] - emb[1]), rel=1e-5)


def test_cli_fits_the_default_stack_and_predicts_from_its_directory(example_paths, tmp_path):
    """`aam-engine train` with the defaults (the stack on the shipped encoder, folds by
    --group-column) writes a model directory that `aam-engine predict` reads: one class per
    sample, probabilities summing to 1, and the read-matching counts on stderr."""
    p = example_paths
    fit = _cli(["train", "--table", str(p["table"]), "--sequences", str(p["sequences"]),
                "--metadata", str(p["metadata"]), "--target", "group", "--task",
                "classification", "--group-column", "subject", "--ensemble", "3",
                "--progress", "false", "--output", str(tmp_path / "clf")])
    assert fit.wait(timeout=300) == 0, fit.stderr.read()
    cfg = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION and cfg["stack"]["components"]
    pred = _cli(["predict", "--model", str(tmp_path / "clf"), "--table", str(p["table"]),
                 "--sequences", str(p["sequences"]), "--output", str(tmp_path / "p.tsv")])
    assert pred.wait(timeout=300) == 0, pred.stderr.read()
    assert "training reads" in pred.stderr.read()
    rows = [line.split("\t") for line in (tmp_path / "p.tsv").read_text().splitlines()]
    assert rows[0][:2] == ["SampleID", "prediction"] and len(rows) == 41
    assert all(abs(sum(float(x) for x in r[2:]) - 1) < 1e-4 for r in rows[1:])

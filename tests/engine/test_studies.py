"""Pretraining on several studies at once: the corpus builder, merged tables, distances known
within parts of the samples only, reads of other trims, and the encoder that ships."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from aam_engine import api
from aam_engine.data import (BatchBuilder, PartDistances, ReadNoise, SampleTable, load_biom,
                             merge_tables, read_fasta)
from aam_engine.data.batching import MIN_TRIMMED_BP, trim_reads
from aam_engine.data.tokenizer import PAD, START, tokenize
from aam_engine.training.losses import pairwise_loss
from aam_engine.inputs import resolve_distances

from ..conftest import shared_data

ROOT = Path(__file__).resolve().parents[2]
SLICE = ("mlrepo-bacteremia", "mlrepo-bushman-cafe", "mlrepo-cho")
TINY = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=48)


def _builder():
    sys.path.insert(0, str(ROOT / "shipped_encoder"))
    try:
        import build_corpus
    finally:
        sys.path.pop(0)
    return build_corpus


def _build(out, **kw):
    build_corpus = _builder()
    pytest.importorskip("qiime_default_reference",
                        reason="qiime-default-reference (the Greengenes sequences and tree) is "
                               "not installed; ci/setup.sh installs it")
    return build_corpus.build(shared_data("corpus"), out, build_corpus.Reference(None),
                              log=lambda m: None, **kw)


def _qza(files: dict) -> bytes:
    """A QIIME 2 artifact's zip with these payload files (all the builder reads of it)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"0b4e6bd2-uuid/data/{name}", data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def asv_study(tmp_path_factory):
    """A git repository holding a real-ASV study as QIIME 2 artifacts, as ASV_STUDIES reads
    them: 8 reads of 120 nt and one of 90 (too short for 100), 7 samples of which s5 is
    not in the metadata (a control) and s6 has 10 reads.  (clone, spec, kept samples)"""
    import io

    import biom
    import h5py
    repo = tmp_path_factory.mktemp("asv-repo")
    rng = np.random.default_rng(0)
    reads = {f"asv{i}": "TACG" + "".join(rng.choice(list("ACGT"), 116)) for i in range(8)}
    reads["short"] = "TACG" + "A" * 86
    counts = rng.integers(0, 400, (len(reads), 7)).astype(float)
    counts[:, 6] = 0
    counts[0, 6] = 10
    table = biom.Table(counts, list(reads), [f"s{j}" for j in range(7)])
    h5 = io.BytesIO()
    with h5py.File(h5, "w") as f:
        table.to_hdf5(f, "test")
    tree = "(((asv0:1,asv1:1):1,(asv2:1,asv3:1):1):1,((asv4:1,asv5:1):1,(asv6:1,asv7:1," \
           "short:1):1):1);\n"
    fasta = "".join(f">{k}\n{v}\n" for k, v in reads.items())
    (repo / "data").mkdir()
    (repo / "data" / "table.qza").write_bytes(_qza({"feature-table.biom": h5.getvalue()}))
    (repo / "data" / "seqs.qza").write_bytes(_qza({"dna-sequences.fasta": fasta}))
    (repo / "data" / "tree.qza").write_bytes(_qza({"tree.nwk": tree}))
    (repo / "sheet.tsv").write_text("sample_name\thost_subject_id\tvisit\n" + "".join(
        f"s{j}\tp{j // 2}\tv{j % 2}\n" for j in (0, 1, 2, 3, 4, 6)))
    git = lambda *a: subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                                     "user.email=t@t", "-c", "commit.gpgsign=false", *a], check=True, capture_output=True,
                                    text=True).stdout.strip()
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "toy study")
    spec = dict(repository="toy/asv", commit=git("rev-parse", "HEAD"), table="data/table.qza",
                sequences="data/seqs.qza", tree="data/tree.qza", metadata="sheet.tsv",
                sample_column="sample_name", subject_column="host_subject_id",
                licence="BSD-3-Clause", description="toy", citation="none")
    (repo / "sheet.tsv").write_text("changed after the pinned commit\n")   # not read
    return repo, spec, ["s0", "s1", "s2", "s3", "s4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, asv_study):
    out = tmp_path_factory.mktemp("corpus")
    return out, _build(out, studies=SLICE, max_samples=12, read_length=100,
                       asv_studies={"toy": asv_study[0]}, asv_specs={"toy": asv_study[1]})


def test_corpus_builder_maps_cuts_and_is_deterministic(corpus, asv_study, tmp_path):
    out, manifest = corpus
    assert sorted(manifest["studies"]) == sorted(SLICE + ("toy",))
    seqs = read_fasta(out / "sequences.fasta")
    assert len(seqs) == manifest["otus"] > 100
    assert {len(s) for s in seqs.values()} == {100}             # the V4 read, cut to 100
    # V4 reads after 515F start like the Deblur tables of the shared data: TAC(G/N)...
    assert np.mean([s.startswith("TAC") for s in seqs.values()]) > 0.9
    import skbio
    tips = lambda path: {t.name for t in skbio.TreeNode.read(str(path)).tips()}
    toy = manifest["studies"]["toy"]
    # the real-ASV study: its reads (the short one dropped), its own tree, its listed and
    # deep enough samples, each with its subject, at the pinned commit
    assert tips(out / toy["tree"]) == {f"asv{i}" for i in range(8)} <= set(seqs)
    assert tips(out / "tree.nwk") == set(seqs) - tips(out / toy["tree"])
    assert toy["reads_shorter_than_read_length"] == 1 and toy["subjects"] == 3
    assert toy["fraction_reads_kept"] < 1             # the short read's counts are lost
    assert toy["source"]["commit"] == asv_study[1]["commit"]
    rows = (out / "metadata.tsv").read_text().splitlines()
    assert [r for r in rows if "\ttoy\t" in r] == [f"s{j}\ttoy\tp{j // 2}" for j in range(5)]
    total = 0
    for s, rec in manifest["studies"].items():
        t = load_biom(out / s / "table.biom", seqs)
        assert t.n_samples == rec["samples"] <= 12 and t.n_features == rec["otus"]
        assert (t.depths() >= manifest["min_depth"]).all()
        assert 0.5 < rec["fraction_reads_kept"] <= 1
        total += t.n_samples
    assert list(load_biom(out / "toy" / "table.biom", seqs).sample_ids) == asv_study[2]
    assert manifest["samples"] == total
    again = _build(tmp_path / "again", studies=SLICE, max_samples=12, read_length=100,
                   asv_studies={"toy": asv_study[0]}, asv_specs={"toy": asv_study[1]})
    assert again["files"] == manifest["files"]                   # same checksums
    with pytest.raises(SystemExit, match="cannot read data/table.qza at commit 000000000000"):
        _builder().read_asv_study(asv_study[0], dict(asv_study[1], commit="0" * 40), 100)


def test_merge_tables_joins_features_and_names_clashes():
    a = SampleTable.from_arrays(np.array([[1, 2]]), ["s1"], ["f1", "f2"],
                                {"f1": "ACGT" * 5, "f2": "GGCC" * 5})
    b = SampleTable.from_arrays(np.array([[3, 4]]), ["s2"], ["f2", "f3"],
                                {"f2": "GGCC" * 5, "f3": "TTAA" * 5})
    t, study = merge_tables([a, b], ["A", "B"])
    assert t.feature_ids == ["f1", "f2", "f3"] and study == {"s1": "A", "s2": "B"}
    assert t.counts.toarray().tolist() == [[1, 2, 0], [0, 3, 4]]
    with pytest.raises(ValueError, match="also in table 'A'"):
        merge_tables([a, a], ["A", "B"])
    c = SampleTable.from_arrays(np.array([[1]]), ["s3"], ["f1"], {"f1": "TTTT" * 5})
    with pytest.raises(ValueError, match="different sequences"):
        merge_tables([a, c], ["A", "C"])


def test_part_distances_know_pairs_within_a_part_only():
    m1 = np.array([[0, .3], [.3, 0]])
    m2 = np.array([[0, .5, .6], [.5, 0, .7], [.6, .7, 0]])

    class M:
        def __init__(self, m):
            self.m = m

        def block(self, rows):
            return self.m[np.ix_(rows, rows)]
    d = PartDistances(6, [(np.array([0, 2]), M(m1)), (np.array([1, 3, 4]), M(m2))])
    block = d.block(np.array([0, 1, 2, 3, 5]))
    assert block[0, 2] == pytest.approx(.3) and block[1, 3] == pytest.approx(.5)
    assert np.isnan(block[0, 1]) and np.isnan(block[0, 4]) and np.isnan(block[2, 3])
    # the pair loss reads the known pairs only; none known: 0 (and a finite gradient)
    emb = torch.randn(5, 4, requires_grad=True)
    loss = pairwise_loss(emb, torch.as_tensor(block))
    known = pairwise_loss(emb[[0, 2]], torch.as_tensor(block[np.ix_([0, 2], [0, 2])]))
    loss2 = pairwise_loss(emb[[1, 3]], torch.as_tensor(block[np.ix_([1, 3], [1, 3])]))
    assert float(loss.detach()) == pytest.approx((float(known.detach()) + float(loss2.detach())) / 2,
                                                 rel=1e-5)
    none = pairwise_loss(emb[[0, 1]], torch.as_tensor(block[np.ix_([0, 1], [0, 1])]))
    none.backward()
    assert float(none) == 0 and torch.isfinite(emb.grad).all()


def test_trim_reads_shortens_from_both_ends_as_drawn():
    seqs = ["ACGTACGTAC" * 10, "TTGCA" * 6]
    tok = tokenize(seqs, 100)
    u = np.array([[0.999, 0.999], [0.0, 0.0]])
    out = trim_reads(tok, 10, u)
    n = (out[:, 1:] != PAD).sum(1)
    assert n.tolist() == [90, 30]                   # 10 cut; none cut
    assert (out[:, 0] == START).all()
    assert (out[0, 1:91] == tok[0, 3:93]).all()     # 2 from the start, 8 from the end
    short = trim_reads(tokenize(["ACGT" * 6], 100), 50, np.array([[0.999, 0.5]]))
    assert (short[0, 1:] != PAD).sum() == MIN_TRIMMED_BP


def test_trimmed_batches_only_when_training(example):
    table, _, _ = example
    b = BatchBuilder(table, 64, 60, noise=ReadNoise(read_trim=8))
    plain, trimmed = b.build(np.arange(4), (0, 0, 0)), b.build(np.arange(4), (0, 0, 0), trim=True)
    assert (plain.tokens == b.feature_tokens[plain.unique_features]).all()
    lengths = lambda t: (t[:, 1:] != PAD).sum(1)
    assert (lengths(trimmed.tokens) <= lengths(plain.tokens)).all()
    assert (lengths(trimmed.tokens) < lengths(plain.tokens)).mean() > 0.5
    again = b.build(np.arange(4), (0, 0, 0), trim=True)
    assert (again.tokens == trimmed.tokens).all()          # keyed: the same draw


def test_pretrain_on_studies_with_trees_of_their_own():
    """sleep-apnea and pd-mice, each with its own tree: pairs within a study only, and the
    learned distances fit both better than the untrained encoder's."""
    parts, trees = [], []
    for name, fasta in (("sleep-apnea", "seqs.fasta"), ("pd-mice", "seqs.fasta")):
        d = shared_data(name)
        parts.append(load_biom(d / "table.biom", read_fasta(d / fasta)).rarefy(1000))
        trees.append(str(d / "tree.nwk"))
    table, study = merge_tables(parts, ["sleep-apnea", "pd-mice"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, dist = resolve_distances(table, tree=trees)
    block = dist.block(np.arange(table.n_samples))
    same = np.array([[study[a] == study[b] for b in table.sample_ids] for a in table.sample_ids])
    assert np.isfinite(block[same]).all() and np.isnan(block[~same]).all()
    mc = api.ModelConfig(max_bp=100, set_sketch=0, **TINY)
    tc = api.TrainConfig(epochs=3, batch_size=16, progress=False, validation_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = api.pretrain(table, mc, tc, tree=trees)
        untrained = api.pretrain(table, mc, api.TrainConfig(epochs=1, batch_size=16,
                                                             learning_rate=1e-12,
                                                             progress=False,
                                                             validation_fraction=0.2),
                                 tree=trees)
    r2 = lambda b: b.history[-1]["val_unifrac_r2"]
    # the untrained encoder is calibrated (offset and scale) and reads k-mer profiles: 0.53;
    # trained 3 epochs: 0.57
    assert np.isfinite(r2(enc)) and r2(enc) > r2(untrained) + 0.02


def test_engine_cli_pretrains_on_three_studies(corpus, tmp_path):
    out, manifest = corpus
    sys.path.insert(0, str(ROOT / "shipped_encoder"))
    try:
        import build_encoder
    finally:
        sys.path.pop(0)
    # the trees build_encoder pretrains with: Greengenes' alone for Greengenes studies, and
    # with the real-ASV study, its own beside it
    assert build_encoder.pretraining_trees(out, manifest, SLICE) == out / "tree.nwk"
    trees = build_encoder.pretraining_trees(out, manifest, SLICE + ("toy",))
    assert sorted(trees) == sorted([out / "tree.nwk", out / "toy" / "tree.nwk"])
    args = [sys.executable, "-m", "aam_engine", "pretrain", "--sequences",
            str(out / "sequences.fasta"),
            "--output", str(tmp_path / "enc"), "--epochs", "1", "--batch-size", "8",
            "--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
            "--token-limit", "32", "--progress", "false"]
    for s in SLICE + ("toy",):
        args += ["--table", str(out / s / "table.biom")]
    for t in trees:
        args += ["--tree", str(t)]
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "on no tree" not in r.stderr          # every sample, the toy's too, has a tree
    cfg = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert cfg["extra"]["n_samples"] == manifest["samples"]


def test_shipped_encoder_matches_its_card():
    import hashlib

    from aam_engine import pretrained
    assert pretrained.available(), "the shipped encoder is missing: run `make pretrained`"
    card = pretrained.card()
    weights = (pretrained.DEFAULT_DIR / "weights.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == card["weights_sha256"]
    assert len(weights) == card["weights_bytes"] <= 20 * 2 ** 20
    enc = pretrained.default_encoder()
    assert enc.task == "encoder"
    assert {k: getattr(enc.model_config, k) for k in card["model"]} == card["model"]
    text = (pretrained.DEFAULT_DIR / "MODEL_CARD.md").read_text()
    assert "CC BY-SA 3.0" in text and card["commit"] in text
    for s in card["corpus"]["studies"]:
        assert s in text
    assert set(card["held_out"]["held_out_studies"]) == set(card["corpus"]["held_out_studies"])


def test_a_fitted_model_reads_other_trims_of_the_same_region():
    """Heads on the shipped encoder, fitted on sleep-apnea's mice as they were sequenced,
    predict the held-out mice with every read one base later and ten bases shorter nearly as
    well as their reads as they are; no ASV ID of the re-trimmed table is a training feature,
    so a model on IDs could only guess.  What closes the gap is reading each re-trimmed read
    as the training read it is a trim of (data.reads): without it, accuracy falls to chance."""
    import pandas as pd

    from aam_engine import pretrained
    from aam_engine.data import split_ids
    d = shared_data("sleep-apnea")
    md = pd.read_csv(d / "metadata.tsv", sep="\t", dtype=str, index_col=0)
    table = load_biom(d / "table.biom").rarefy(1000, seed=0)
    table = table.subset([s for s in table.sample_ids if s in md.index])
    groups = md["host_subject_id"].to_dict()
    train, test = split_ids(table.sample_ids, 0.3, 0, groups)
    y = md["exposure_type"].to_dict()
    model = api.fit(table.subset(train), y, "classification", api.ModelConfig(ensemble=3),
                    api.TrainConfig(epochs=30, progress=False, compare_baselines=False),
                    encoder=pretrained.default_encoder(), groups=groups)
    acc = lambda t, **kw: np.mean([y[s] == p for s, p in zip(*api.predict(model, t, **kw)[:2])])
    as_is = acc(table.subset(test))
    retrimmed = table.subset(test).trimmed(1, 90)
    assert not set(retrimmed.feature_ids) & set(table.subset(train).feature_ids)
    majority = max(np.mean([y[s] == c for s in test]) for c in set(y.values()))
    print(f"accuracy {as_is:.3f}, re-trimmed {acc(retrimmed):.3f} (read as they are "
          f"{acc(retrimmed, match_reads=False):.3f}), majority {majority:.3f}")
    assert as_is > majority + 0.15
    assert acc(retrimmed) > as_is - 0.1
    assert acc(retrimmed, match_reads=False) < as_is - 0.2

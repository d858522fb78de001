"""Several studies from QIIME 2 (Artifact API and q2cli), and the shipped encoder as an
artifact."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ..conftest import require_qiime2, shared_data

qiime2 = require_qiime2()

from aam_engine.api import ModelBundle  # noqa: E402


from ..engine.test_studies import SLICE, _build  # noqa: E402

TINY = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=32, epochs=1,
            batch_size=8)
QIIME = str(Path(sys.executable).with_name("qiime"))


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The corpus slice as artifacts: one table per study, their sequences, the shared tree."""
    import biom
    import skbio
    from qiime2 import Artifact
    out = tmp_path_factory.mktemp("corpus")
    _build(out, studies=SLICE, max_samples=10, read_length=100)
    tables = [Artifact.import_data("FeatureTable[Frequency]", biom.load_table(str(out / s /
                                                                                  "table.biom")))
              for s in SLICE]
    seqs = Artifact.import_data("FeatureData[Sequence]", out / "sequences.fasta")
    tree = Artifact.import_data("Phylogeny[Rooted]", skbio.TreeNode.read(str(out / "tree.nwk")))
    return out, tables, seqs, tree


def test_pretrain_on_merged_studies_artifact_api(studies):
    from qiime2.plugins import aam, feature_table
    _, tables, seqs, tree = studies
    merged, = feature_table.actions.merge(tables=tables)
    model, _ = aam.actions.pretrain(table=merged, sequences=seqs, phylogeny=tree, **TINY)
    bundle = model.view(ModelBundle)
    assert bundle.extra["n_samples"] == sum(t.view(__import__("biom").Table).shape[1]
                                            for t in tables)


def test_pretrain_on_studies_with_their_own_trees_artifact_api(tmp_path):
    import biom
    import skbio
    from qiime2 import Artifact
    from qiime2.plugins import aam, feature_table
    tables, seqs, trees = [], [], []
    for name in ("sleep-apnea", "pd-mice"):
        d = shared_data(name)
        tables.append(Artifact.import_data("FeatureTable[Frequency]",
                                           biom.load_table(str(d / "table.biom"))))
        seqs.append(Artifact.import_data("FeatureData[Sequence]", d / "seqs.fasta"))
        trees.append(Artifact.import_data("Phylogeny[Rooted]",
                                          skbio.TreeNode.read(str(d / "tree.nwk"))))
    merged, = feature_table.actions.merge(tables=tables)
    merged_seqs, = feature_table.actions.merge_seqs(data=seqs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, history = aam.actions.pretrain(table=merged, sequences=merged_seqs,
                                              study_phylogenies=trees, rarefaction_depth=1000,
                                              **{**TINY, "epochs": 2})
    df = history.view(__import__("pandas").DataFrame)
    assert df["val_unifrac_r2"].notna().all()


def test_pretrain_on_merged_studies_from_q2cli(studies, tmp_path):
    from qiime2.plugins import feature_table
    _, tables, seqs, tree = studies
    merged, = feature_table.actions.merge(tables=tables)
    merged.save(str(tmp_path / "table.qza"))
    seqs.save(str(tmp_path / "seqs.qza"))
    tree.save(str(tmp_path / "tree.qza"))
    cmd = [QIIME, "aam", "pretrain", "--i-table", "table.qza", "--i-sequences", "seqs.qza",
           "--i-phylogeny", "tree.qza", "--o-model", "enc.qza", "--o-history", "hist.qza"]
    for k, v in TINY.items():
        cmd += [f"--p-{k.replace('_', '-')}", str(v)]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert str(qiime2.Artifact.load(str(tmp_path / "enc.qza")).type) == \
        "AAMModel[SequenceEncoder]"


def test_pretrained_encoder_action_carries_its_card(tmp_path):
    from aam_engine import pretrained
    from qiime2.plugins import aam
    enc, = aam.actions.pretrained_encoder()
    assert str(enc.type) == "AAMModel[SequenceEncoder]"
    enc.export_data(str(tmp_path / "x"))
    card = json.loads((tmp_path / "x" / "card.json").read_text())
    assert card == pretrained.card()
    assert "CC BY-SA 3.0" in (tmp_path / "x" / "MODEL_CARD.md").read_text()
    bundle = enc.view(ModelBundle)
    assert bundle.model_config.embedding_dim == card["model"]["embedding_dim"]
    r = subprocess.run([QIIME, "aam", "pretrained-encoder", "--o-encoder", "e.qza"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]

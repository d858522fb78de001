import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ..conftest import require_qiime2  # noqa: E402

qiime2 = require_qiime2()
from qiime2.plugin.testing import TestPluginBase  # noqa: E402

from q2_aam import _examples as ex  # noqa: E402

MANTEL_MIN_R = 0.15  # the 2-epoch tiny encoder measured r 0.24 (p 0.02)
TINY = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=64, epochs=2,
            batch_size=8, learning_rate=1e-3)


@pytest.fixture(scope="module")
def aam():
    from qiime2.plugins import aam
    return aam


@pytest.fixture(scope="module")
def arts():
    return dict(table=ex.table_factory(), sequences=ex.sequences_factory(),
                tree=ex.tree_factory(), md=ex.metadata_factory())


@pytest.fixture(scope="module")
def encoder(aam, arts):
    return aam.actions.pretrain(table=arts["table"], sequences=arts["sequences"],
                                phylogeny=arts["tree"], **TINY)


class TestExamples(TestPluginBase):
    package = "q2_aam"

    def test_examples(self):
        self.execute_examples()


def test_import_does_not_load_torch():
    code = "import sys, q2_aam.plugin_setup; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pretrain_outputs_and_provenance(encoder):
    model, history = encoder
    assert str(model.type) == "AAMModel[SequenceEncoder]"
    assert str(history.type) == "AAMTrainingHistory"
    df = history.view(pd.DataFrame)
    assert list(df.index) == [1, 2] and "train_pair" in df.columns
    prov = model._archiver.provenance_dir / "action" / "action.yaml"
    text = prov.read_text()
    assert "embedding_dim: 16" in text and "random_seed: 0" in text and "precision: auto" in text
    history.view(qiime2.Metadata)   # tabulate-able


def test_regressor_flow_into_sample_classifier(aam, arts, encoder):
    from qiime2.plugins import sample_classifier
    col = arts["md"].get_column("age")
    model, _ = aam.actions.fit_regressor(table=arts["table"], sequences=arts["sequences"],
                                         metadata=col, encoder=encoder[0], **TINY)
    assert str(model.type) == "AAMModel[SequenceRegressor]"
    pred, = aam.actions.predict_regression(model=model, table=arts["table"],
                                           sequences=arts["sequences"])
    assert str(pred.type) == "SampleData[RegressorPredictions]"
    s = pred.view(pd.Series)
    assert s.name == "prediction" and np.isfinite(s).all() and len(s) == 24
    # the training reads themselves: matching other trims changes nothing
    as_is, = aam.actions.predict_regression(model=model, table=arts["table"],
                                            sequences=arts["sequences"], match_reads=False)
    assert np.allclose(as_is.view(pd.Series), s)
    viz, = sample_classifier.visualizers.scatterplot(predictions=pred, truth=col)
    assert str(viz.type) == "Visualization"
    summary, = aam.visualizers.summarize(model=model)
    files = {p.name for p in summary._archiver.data_dir.iterdir()}
    assert {"index.html", "validation.png"} <= files      # a stack has no epochs to plot


def test_classifier_flow_into_confusion_matrix(aam, arts):
    from qiime2.plugins import sample_classifier
    col = arts["md"].get_column("group")
    model, _ = aam.actions.fit_classifier(table=arts["table"], sequences=arts["sequences"],
                                          metadata=col, covariates=qiime2.Metadata(
                                              arts["md"].to_dataframe()[["subject"]]), **TINY)
    pred, prob = aam.actions.predict_classification(model=model, table=arts["table"],
                                                    sequences=arts["sequences"],
                                                    covariates=arts["md"])
    assert str(prob.type) == "SampleData[Probabilities]"
    p = prob.view(pd.DataFrame)
    assert list(p.columns) == ["gut", "oral"] and np.allclose(p.sum(1), 1, atol=1e-5)
    viz, = sample_classifier.visualizers.confusion_matrix(predictions=pred, probabilities=prob,
                                                          truth=col)
    assert str(viz.type) == "Visualization"


def test_embed_outputs(aam, arts, encoder):
    dm, pcoa = aam.actions.embed(model=encoder[0], table=arts["table"], sequences=arts["sequences"])
    assert str(dm.type) == "DistanceMatrix" and str(pcoa.type) == "PCoAResults"
    import skbio
    assert dm.view(skbio.DistanceMatrix).shape == (24, 24)


def test_embed_distances_compare_with_unifrac_by_mantel(aam, arts, encoder):
    """What the README tells users to do with `qiime diversity mantel` (q2-diversity is not in
    Debian's packages): the same comparison with scikit-bio's mantel, on UniFrac from
    q2-diversity-lib."""
    import skbio
    from qiime2.plugins import diversity_lib
    from skbio.stats.distance import mantel
    dm, _ = aam.actions.embed(model=encoder[0], table=arts["table"], sequences=arts["sequences"])
    uni, = diversity_lib.methods.unweighted_unifrac(table=arts["table"], phylogeny=arts["tree"])
    a, b = dm.view(skbio.DistanceMatrix), uni.view(skbio.DistanceMatrix)
    np.random.seed(0)   # old scikit-bio: permutations from the global generator
    r, p, n = mantel(a, b.filter(a.ids), permutations=999)
    assert n == 24 and r > MANTEL_MIN_R and p < 0.05


def test_regress_samples_pipeline(aam, arts):
    res = aam.actions.regress_samples(table=arts["table"], sequences=arts["sequences"],
                                      metadata=arts["md"].get_column("age"),
                                      validation_groups=arts["md"].get_column("subject"),
                                      test_size=0.25, **TINY)
    assert str(res.model.type) == "AAMModel[SequenceRegressor]"
    test_ids = set(res.predictions.view(pd.Series).index)
    train_ids = set(res.model.view(__import__("aam_engine.io", fromlist=["ModelBundle"]).ModelBundle)
                    .extra["train_samples"])
    assert test_ids and not test_ids & train_ids      # held-out samples never trained on
    md = arts["md"].to_dataframe()
    assert not set(md.loc[list(test_ids), "subject"]) & set(md.loc[list(train_ids), "subject"])
    assert str(res.accuracy_results.type) == "Visualization"


# ------------------------------------------------------------------ bad inputs
def test_hashed_ids_without_sequences(aam, arts):
    with pytest.raises(ValueError, match="not nucleotide sequences.*FeatureData\\[Sequence\\]"):
        aam.actions.fit_regressor(table=arts["table"], metadata=arts["md"].get_column("age"),
                                  **TINY)


def test_metadata_missing_samples(aam, arts):
    df = arts["md"].to_dataframe().iloc[:20]
    col = qiime2.Metadata(df).get_column("age")
    with pytest.raises(ValueError, match="4 sample\\(s\\) in the table have no target value"):
        aam.actions.fit_regressor(table=arts["table"], sequences=arts["sequences"],
                                  metadata=col, **TINY)
    model, _ = aam.actions.fit_regressor(table=arts["table"], sequences=arts["sequences"],
                                         metadata=col, missing_samples="ignore", **TINY)


def test_single_class(aam, arts):
    df = pd.DataFrame({"c": ["x"] * 24}, index=pd.Index(ex._data().sample_ids, name="id"))
    with pytest.raises(ValueError, match="at least 2 classes"):
        aam.actions.fit_classifier(table=arts["table"], sequences=arts["sequences"],
                                   metadata=qiime2.Metadata(df).get_column("c"), **TINY)


def test_pretrain_needs_distances(aam, arts):
    with pytest.raises(ValueError, match="needs sample distances"):
        aam.actions.pretrain(table=arts["table"], sequences=arts["sequences"], **TINY)


def test_wrong_model_kind_is_refused_by_type_and_content(aam, arts, encoder, tmp_path):
    with pytest.raises(TypeError):
        aam.actions.predict_regression(model=encoder[0], table=arts["table"],
                                       sequences=arts["sequences"])
    # an encoder directory imported under the regressor type is caught by the action
    d = tmp_path / "enc"
    encoder[0].export_data(str(d))
    fake = qiime2.Artifact.import_data("AAMModel[SequenceRegressor]", str(d))
    with pytest.raises(ValueError, match="needs AAMModel\\[SequenceRegressor\\].*encoder"):
        aam.actions.predict_regression(model=fake, table=arts["table"], sequences=arts["sequences"])


# ------------------------------------------------------------------ the model format
@pytest.fixture
def model_dir(encoder, tmp_path):
    d = tmp_path / "m"
    encoder[0].export_data(str(d))
    return d


def _import(d):
    return qiime2.Artifact.import_data("AAMModel[SequenceEncoder]", str(d))


def test_planted_pickle_is_refused(model_dir):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (model_dir / "payload.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(Exception, match="payload.pkl"):
        _import(model_dir)


@pytest.mark.parametrize("edit,match", [
    (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "config.json").write_text(json.dumps({"format": "x"})), "lacks required keys"),
    (lambda d: _set(d, format_version="9.0"), "format 9.0"),
    (lambda d: _set(d, model={**_cfg(d)["model"], "embedding_dim": 32}), "shape"),
    (lambda d: (d / "weights.safetensors").write_bytes(
        (d / "weights.safetensors").read_bytes()[:1000]), "truncated|safetensors"),
    (lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors"),
    (lambda d: (d / "history.tsv").write_text("epoch\tloss\n1\tabc\n"), "not a number"),
])
def test_format_validation_failures(model_dir, edit, match):
    edit(model_dir)
    with pytest.raises(Exception, match=match):
        _import(model_dir)


def _cfg(d):
    return json.loads((d / "config.json").read_text())


def _set(d, **kw):
    (d / "config.json").write_text(json.dumps({**_cfg(d), **kw}))


def test_valid_model_dir_imports(model_dir):
    art = _import(model_dir)
    art.validate(level="max")


def test_feature_importance_feeds_consumers(aam, arts):
    from qiime2.plugins import feature_table, sample_classifier
    col = arts["md"].get_column("group")
    model, _ = aam.actions.fit_classifier(table=arts["table"], sequences=arts["sequences"],
                                          metadata=col, **TINY)
    for method in ("auto", "occlusion", "attention"):
        imp, = aam.actions.feature_importance(model=model, table=arts["table"],
                                              sequences=arts["sequences"], method=method, steps=4)
        assert str(imp.type) == "FeatureData[Importance]"
        df = imp.view(pd.DataFrame)
        assert list(df.columns) == ["importance"] and len(df) == 40 and (df["importance"] >= 0).all()
    with pytest.raises(ValueError, match="use method 'occlusion'"):      # the heads' only
        aam.actions.feature_importance(model=model, table=arts["table"],
                                       sequences=arts["sequences"], method="integrated_gradients")
    top, = feature_table.methods.filter_features(
        table=arts["table"], metadata=qiime2.Metadata(df.head(10).rename_axis("feature-id")))
    assert top.view(pd.DataFrame).shape[1] == 10
    res = sample_classifier.actions.heatmap(table=arts["table"], importance=imp,
                                            sample_metadata=col, feature_count=10,
                                            group_samples=True)
    assert str(res[0].type) == "Visualization"


def test_distance_matrix_missing_samples(aam, arts):
    import skbio
    ids = ex._data().sample_ids[:20]
    dm = qiime2.Artifact.import_data("DistanceMatrix", skbio.DistanceMatrix(
        np.ones((20, 20)) - np.eye(20), ids))
    with pytest.raises(ValueError, match="4 sample\\(s\\) are not in the distance matrix: 'S020'"):
        aam.actions.pretrain(table=arts["table"], sequences=arts["sequences"],
                             distance_matrix=dm, **TINY)


def test_nan_targets_name_the_samples(aam, arts):
    df = arts["md"].to_dataframe()
    df.loc[df.index[:2], "age"] = np.nan
    col = qiime2.Metadata(df).get_column("age")
    with pytest.raises(ValueError, match="2 sample\\(s\\).*no target value: 'S000', 'S001'"):
        aam.actions.fit_regressor(table=arts["table"], sequences=arts["sequences"], metadata=col,
                                  **TINY)


def test_fit_starts_from_the_shipped_encoder_by_default(aam, arts):
    """Given no encoder, phylogeny or distance matrix, the stack reads the table through the
    shipped encoder (its sizes), and the fit reports how it compares with the baselines."""
    from aam_engine import pretrained
    from aam_engine.io import ModelBundle
    model, _ = aam.actions.fit_regressor(table=arts["table"], sequences=arts["sequences"],
                                         metadata=arts["md"].get_column("age"), epochs=2)
    bundle = model.view(ModelBundle)
    assert bundle.extra["pretrained_encoder"] and bundle.model_config.freeze_base
    shipped = pretrained.card()["model"]
    assert {k: getattr(bundle.model_config, k) for k in shipped} == shipped
    rep = bundle.extra["stack"]
    assert {"linear:clr", "forest:relative"} <= set(rep["components"])
    assert rep["verdict"].startswith("Out of fold, on 24 samples in 24 groups")


def test_freeze_base_without_encoder_trains_the_whole_model(aam, arts):
    """freeze-base (default on) applies to a pretrained encoder; without one (and without the
    shipped one), all trains."""
    model, _ = aam.actions.fit_regressor(table=arts["table"], sequences=arts["sequences"],
                                         metadata=arts["md"].get_column("age"),
                                         freeze_base=True, shipped_encoder=False, **TINY)
    from aam_engine.io import ModelBundle
    bundle = model.view(ModelBundle)
    assert bundle.model_config.freeze_base is False
    # max_bp 0 (default): the longest sequence of the table
    assert bundle.model_config.max_bp == arts["sequences"].view(pd.Series).str.len().max()


def test_history_format_levels(tmp_path):
    from q2_aam._formats import AAMHistoryDirFmt
    rows = "".join(f"{i}\t0.5\n" for i in range(1, 10)) + "10\tbad\n"
    (tmp_path / "history.tsv").write_text("epoch\tloss\n" + rows)
    fmt = AAMHistoryDirFmt(str(tmp_path), mode="r")
    fmt.validate(level="min")             # min reads the first rows only
    with pytest.raises(Exception, match="line 11: 'bad' is not a number"):
        fmt.validate(level="max")
    (tmp_path / "history.tsv").write_text("loss\n1\n")
    with pytest.raises(Exception, match="first column is 'epoch'"):
        AAMHistoryDirFmt(str(tmp_path), mode="r").validate(level="min")


def test_model_format_min_level_skips_tensor_header(model_dir):
    from q2_aam._formats import AAMModelDirFmt
    import struct
    # a header that lies about a shape passes 'min' (files + JSON) but not 'max'
    raw = (model_dir / "weights.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["asv.tok.weight"]["shape"] = [9, header["asv.tok.weight"]["shape"][1]]
    new = json.dumps(header, separators=(",", ":")).encode()
    assert len(new) <= n
    new += b" " * (n - len(new))
    (model_dir / "weights.safetensors").write_bytes(raw[:8] + new + raw[8 + n:])
    AAMModelDirFmt(str(model_dir), mode="r").validate(level="min")
    with pytest.raises(Exception, match="asv.tok.weight"):
        AAMModelDirFmt(str(model_dir), mode="r").validate(level="max")


def test_embedding_pcoa_feeds_emperor(aam, arts, encoder):
    emperor = pytest.importorskip("qiime2.plugins.emperor", reason="q2-emperor not installed")
    _, pcoa = aam.actions.embed(model=encoder[0], table=arts["table"], sequences=arts["sequences"])
    viz, = emperor.visualizers.plot(pcoa=pcoa, metadata=arts["md"])
    assert str(viz.type) == "Visualization"

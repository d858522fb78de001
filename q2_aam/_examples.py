"""Usage examples (rendered by `qiime aam <action> --help` / docs, executed by the tests).

Data comes from the project's own generator (aam_engine.api.simulate); sizes are tiny so each
example runs in seconds on a laptop CPU.  Real analyses use the default model sizes."""
import functools

import pandas as pd

TINY = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=64,
            epochs=2, batch_size=8, learning_rate=1e-3)
# a fit takes its sizes from its encoder (the shipped one when none is given)
FIT = dict(epochs=2, batch_size=8, learning_rate=1e-3)


@functools.lru_cache(maxsize=1)
def _data():
    from aam_engine.api import simulate
    return simulate(n_samples=24, n_features=40, seq_length=150, seed=7)


def table_factory():
    import biom
    import qiime2
    d = _data()
    return qiime2.Artifact.import_data("FeatureTable[Frequency]",
                                       biom.Table(d.counts.T, d.feature_ids, d.sample_ids))


def sequences_factory():
    import qiime2
    import skbio
    d = _data()
    return qiime2.Artifact.import_data(
        "FeatureData[Sequence]",
        pd.Series([skbio.DNA(s) for s in d.sequences], index=d.feature_ids))


def tree_factory():
    import io

    import qiime2
    import skbio
    return qiime2.Artifact.import_data("Phylogeny[Rooted]",
                                       skbio.TreeNode.read(io.StringIO(_data().newick)))


def metadata_factory():
    import qiime2
    d = _data()
    return qiime2.Metadata(pd.DataFrame(d.metadata, index=pd.Index(d.sample_ids, name="sample-id")))


def _inputs(use):
    return (use.init_artifact("table", table_factory),
            use.init_artifact("sequences", sequences_factory),
            use.init_metadata("metadata", metadata_factory))


def _pretrain(use, table, seqs):
    tree = use.init_artifact("tree", tree_factory)
    enc, _ = use.action(
        use.UsageAction("aam", "pretrain"),
        use.UsageInputs(table=table, sequences=seqs, phylogeny=tree, **TINY),
        use.UsageOutputNames(model="encoder", history="pretrain_history"))
    return enc


def _fit(use, kind, table, seqs, md, encoder=None):
    col = use.get_metadata_column("target", "age" if kind == "regressor" else "group", md)
    extra = {"encoder": encoder} if encoder is not None else {}
    model, _ = use.action(
        use.UsageAction("aam", f"fit_{kind}"),
        use.UsageInputs(table=table, sequences=seqs, metadata=col, **extra, **FIT),
        use.UsageOutputNames(model=kind, history=f"{kind}_history"))
    return model


def pretrained_encoder_example(use):
    use.action(use.UsageAction("aam", "pretrained_encoder"), use.UsageInputs(),
               use.UsageOutputNames(encoder="encoder"))


def pretrain_example(use):
    table, seqs, _ = _inputs(use)
    _pretrain(use, table, seqs)


def fit_regressor_example(use):
    table, seqs, md = _inputs(use)
    _fit(use, "regressor", table, seqs, md, encoder=_pretrain(use, table, seqs))


def fit_classifier_example(use):
    table, seqs, md = _inputs(use)
    _fit(use, "classifier", table, seqs, md)


def predict_regression_example(use):
    table, seqs, md = _inputs(use)
    model = _fit(use, "regressor", table, seqs, md)
    use.action(use.UsageAction("aam", "predict_regression"),
               use.UsageInputs(model=model, table=table, sequences=seqs),
               use.UsageOutputNames(predictions="predictions"))


def predict_classification_example(use):
    table, seqs, md = _inputs(use)
    model = _fit(use, "classifier", table, seqs, md)
    use.action(use.UsageAction("aam", "predict_classification"),
               use.UsageInputs(model=model, table=table, sequences=seqs),
               use.UsageOutputNames(predictions="predictions", probabilities="probabilities"))


def embed_example(use):
    table, seqs, _ = _inputs(use)
    enc = _pretrain(use, table, seqs)
    use.action(use.UsageAction("aam", "embed"),
               use.UsageInputs(model=enc, table=table, sequences=seqs),
               use.UsageOutputNames(distance_matrix="aam_distances", pcoa="aam_pcoa"))


def summarize_example(use):
    table, seqs, md = _inputs(use)
    model = _fit(use, "regressor", table, seqs, md)
    use.action(use.UsageAction("aam", "summarize"), use.UsageInputs(model=model),
               use.UsageOutputNames(visualization="summary"))


def feature_importance_example(use):
    table, seqs, md = _inputs(use)
    model = _fit(use, "classifier", table, seqs, md)
    use.action(use.UsageAction("aam", "feature_importance"),
               use.UsageInputs(model=model, table=table, sequences=seqs, steps=4),
               use.UsageOutputNames(importance="importance"))

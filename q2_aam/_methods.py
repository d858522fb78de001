"""Actions: artifacts -> plain objects -> aam_engine -> artifacts.  No model math here; torch is
imported only when an action runs (inside aam_engine.api)."""

import shutil
import sys

import biom
import numpy as np
import pandas as pd
import qiime2
import skbio

from aam_engine import api
from aam_engine.api import (ModelBundle, ModelConfig, Options, SampleTable, TrainConfig,
                            declared)

from ._formats import AAMModelDirFmt
from ._params import (CLASSIFICATION, DISTANCE, FIT, MODEL, REGRESSION, TRAIN, with_params)

TYPE_NAME = {"encoder": "AAMModel[SequenceEncoder]", "regression": "AAMModel[SequenceRegressor]",
             "classification": "AAMModel[SequenceClassifier]"}


# ------------------------------------------------------------------------- conversions
def sample_table(table: biom.Table, sequences: pd.Series | None) -> SampleTable:
    seqs = None if sequences is None else {str(k): str(v) for k, v in sequences.items()}
    return SampleTable.from_biom(table, seqs)


def _configs(params: dict):
    """The engine's configurations from an action's parameters: same names, no renaming and no
    checks here (aam_engine.api validates them once, where they enter the engine)."""
    pick = lambda cls: cls(**{n: params[n] for n, _, _ in declared(cls) if n in params})
    return pick(ModelConfig), pick(TrainConfig)


def _distances(distance_matrix, phylogeny, study_distance_matrices=None,
               study_phylogenies=None):
    """The engine's distance sources: one matrix / tree as such; with per-study ones, lists
    (pairs are then known within one source: aam_engine.data.distances.PartDistances)."""
    as_pair = lambda dm: (list(dm.ids), dm.data)
    matrices = [dm for dm in [distance_matrix] + list(study_distance_matrices or [])
                if dm is not None]
    trees = [t for t in [phylogeny] + list(study_phylogenies or []) if t is not None]
    if len(matrices) + len(trees) > 1:
        return dict(distances=[as_pair(dm) for dm in matrices] or None, tree=trees or None)
    return dict(distances=as_pair(matrices[0]) if matrices else None,
                tree=trees[0] if trees else None)


def _groups(validation_groups):
    return None if validation_groups is None else validation_groups.to_series().to_dict()


def _covariates(covariates: qiime2.Metadata | None):
    """Every covariate column is used as categorical (numbers become category labels)."""
    if covariates is None:
        return None
    df = covariates.to_dataframe()
    return {c: {s: (None if pd.isna(v) else str(v)) for s, v in df[c].items()} for c in df.columns}


def history_frame(bundle: ModelBundle) -> pd.DataFrame:
    """Per-epoch metrics (none for a stack without heads: its learners have no epochs)."""
    if not bundle.history:
        return pd.DataFrame(index=pd.Index([], name="epoch"))
    return pd.DataFrame(bundle.history).set_index("epoch")


def _check_model(model: ModelBundle, *tasks):
    if model.task not in tasks:
        want = " or ".join(TYPE_NAME[t] for t in tasks)
        raise ValueError(f"This action needs {want}, but was given an "
                         f"{TYPE_NAME[model.task]} ({model.task} model).")


def _announce(what: str, params: dict):
    print(f"q2-aam {what}: epochs={params.get('epochs')} batch_size={params.get('batch_size')} "
          f"device={params.get('device')} precision={params.get('precision')}", file=sys.stderr)


# ------------------------------------------------------------------------- methods
@with_params(MODEL, TRAIN, DISTANCE)
def pretrain(table: biom.Table, sequences: pd.Series = None,
             distance_matrix: skbio.DistanceMatrix = None, phylogeny: skbio.TreeNode = None,
             study_distance_matrices: skbio.DistanceMatrix = None,
             study_phylogenies: skbio.TreeNode = None,
             validation_groups: qiime2.CategoricalMetadataColumn = None,
             **params) -> (ModelBundle, pd.DataFrame):
    if not (distance_matrix is not None or phylogeny is not None or study_distance_matrices
            or study_phylogenies):
        raise ValueError("pretrain needs sample distances: give a phylogeny (--i-phylogeny, "
                         "UniFrac is computed from it) or a distance matrix (--i-distance-matrix)"
                         "; for several studies with trees or matrices of their own, "
                         "--i-study-phylogenies / --i-study-distance-matrices.")
    mcfg, tcfg = _configs(params)
    _announce("pretrain", params)
    options = Options(metric=params["metric"], rarefaction_depth=params["rarefaction_depth"],
                      checkpoint_dir=params["checkpoint_dir"],
                      **_distances(distance_matrix, phylogeny, study_distance_matrices,
                                   study_phylogenies))
    bundle = api.pretrain(sample_table(table, sequences), mcfg, tcfg,
                          groups=_groups(validation_groups), options=options)
    return bundle, history_frame(bundle)


def pretrained_encoder() -> AAMModelDirFmt:
    """The encoder that ships with q2-aam, with its model card, from package data."""
    from aam_engine import pretrained
    pretrained.default_encoder()          # validated (and a clear error if it is missing)
    out = AAMModelDirFmt()
    for f in sorted(pretrained.DEFAULT_DIR.iterdir()):
        if f.is_file():
            shutil.copyfile(f, out.path / f.name)
    return out


def _fit(task, table, metadata, sequences, encoder, covariates, distance_matrix, phylogeny,
         validation_groups, params, **extra):
    if encoder is not None:
        _check_model(encoder, "encoder")
    mcfg, tcfg = _configs(params)
    _announce(f"fit ({task})", params)
    targets = metadata.to_series()
    options = Options(covariates=_covariates(covariates), metric=params["metric"],
                      rarefaction_depth=params["rarefaction_depth"],
                      missing_samples=params["missing_samples"],
                      checkpoint_dir=params["checkpoint_dir"],
                      **_distances(distance_matrix, phylogeny))
    bundle = api.fit(sample_table(table, sequences), targets.to_dict(), task, mcfg, tcfg,
                     encoder=encoder, groups=_groups(validation_groups), options=options)
    bundle.target["name"] = metadata.name
    return bundle, history_frame(bundle)


@with_params(MODEL, TRAIN, FIT, DISTANCE, REGRESSION)
def fit_regressor(table: biom.Table, metadata: qiime2.NumericMetadataColumn,
                  sequences: pd.Series = None, encoder: ModelBundle = None,
                  covariates: qiime2.Metadata = None,
                  distance_matrix: skbio.DistanceMatrix = None, phylogeny: skbio.TreeNode = None,
                  validation_groups: qiime2.CategoricalMetadataColumn = None,
                  **params) -> (ModelBundle, pd.DataFrame):
    return _fit("regression", table, metadata, sequences, encoder, covariates, distance_matrix,
                phylogeny, validation_groups, params)


@with_params(MODEL, TRAIN, FIT, DISTANCE, CLASSIFICATION)
def fit_classifier(table: biom.Table, metadata: qiime2.CategoricalMetadataColumn,
                   sequences: pd.Series = None, encoder: ModelBundle = None,
                   covariates: qiime2.Metadata = None,
                   distance_matrix: skbio.DistanceMatrix = None, phylogeny: skbio.TreeNode = None,
                   validation_groups: qiime2.CategoricalMetadataColumn = None,
                   **params) -> (ModelBundle, pd.DataFrame):
    return _fit("classification", table, metadata, sequences, encoder, covariates,
                distance_matrix, phylogeny, validation_groups, params)


def predict_regression(model: ModelBundle, table: biom.Table, sequences: pd.Series = None,
                       covariates: qiime2.Metadata = None, device: str = "auto",
                       match_reads: bool = True) -> pd.Series:
    _check_model(model, "regression")
    ids, vals = api.predict(model, sample_table(table, sequences), _covariates(covariates),
                            device=device, match_reads=match_reads)
    return pd.Series(np.asarray(vals, dtype=float), index=pd.Index(ids, name="SampleID"),
                     name="prediction")


def predict_classification(model: ModelBundle, table: biom.Table, sequences: pd.Series = None,
                           covariates: qiime2.Metadata = None, device: str = "auto",
                           match_reads: bool = True) -> (pd.Series, pd.DataFrame):
    _check_model(model, "classification")
    ids, labels, probs, classes = api.predict(model, sample_table(table, sequences),
                                              _covariates(covariates), device=device,
                                              match_reads=match_reads)
    index = pd.Index(ids, name="SampleID")
    return (pd.Series(labels, index=index, name="prediction"),
            pd.DataFrame(probs, index=index, columns=classes))


def embed(model: ModelBundle, table: biom.Table, sequences: pd.Series = None,
          device: str = "auto",
          match_reads: bool = True) -> (skbio.DistanceMatrix, skbio.OrdinationResults):
    ids, emb = api.embed(model, sample_table(table, sequences), device=device,
                         match_reads=match_reads)
    if len(ids) < 3:
        raise ValueError(f"embed needs at least 3 samples for an ordination; the table has {len(ids)}.")
    dm = skbio.DistanceMatrix(api.embedding_distances(model, emb), ids)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # pcoa: tiny negative eigenvalues
        pc = skbio.stats.ordination.pcoa(dm, number_of_dimensions=min(len(ids) - 1, emb.shape[1]))
    return dm, pc


def feature_importance(model: ModelBundle, table: biom.Table, sequences: pd.Series = None,
                       covariates: qiime2.Metadata = None, method: str = "auto",
                       steps: int = 16, device: str = "auto",
                       match_reads: bool = True) -> pd.DataFrame:
    st = sample_table(table, sequences)
    covs = _covariates(covariates)
    if method == "auto":     # what measures the model as it predicts
        heads_only = model.stack is None or [c.name for c in model.stack.components] == ["heads"]
        method = ("attention" if model.task == "encoder" else
                  "integrated_gradients" if heads_only else "occlusion")
    if method == "integrated_gradients":
        _check_model(model, "regression", "classification")
        ids, imp = api.integrated_gradients(model, st, device=device, steps=steps,
                                            covariates=covs, match_reads=match_reads)
    elif method == "occlusion":
        _check_model(model, "regression", "classification")
        ids, imp = api.occlusion_importance(model, st, device=device, covariates=covs,
                                            match_reads=match_reads)
    else:
        ids, imp = api.attention_importance(model, st, device=device, covariates=covs,
                                            match_reads=match_reads)
    df = pd.DataFrame({"importance": imp}, index=pd.Index(ids, name="feature"))
    return df.sort_values("importance", ascending=False)

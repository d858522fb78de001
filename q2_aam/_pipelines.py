"""regress-samples / classify-samples: split, fit, predict the held-out samples, visualise,
in the spirit of q2-sample-classifier (whose scatterplot / confusion-matrix render the result)."""

import biom
import pandas as pd
import qiime2

from aam_engine.api import split_ids

from ._params import CLASSIFICATION, DISTANCE, FIT, MODEL, REGRESSION, TRAIN, with_params


def _split_tables(ctx, table, metadata, test_size, random_seed, validation_groups):
    ids = table.view(biom.Table).ids(axis="sample")
    values = metadata.to_series()
    have = [s for s in ids if s in values.index and not pd.isna(values[s])]
    if len(have) < 4:
        raise ValueError(f"Only {len(have)} table samples have a value in metadata column "
                         f"{metadata.name!r}; at least 4 are needed to split off a test set.")
    groups = None if validation_groups is None else validation_groups.to_series().to_dict()
    train, test = split_ids(have, test_size, random_seed, groups)
    filter_samples = ctx.get_action("feature_table", "filter_samples")
    out = []
    for part in (train, test):
        md = qiime2.Metadata(pd.DataFrame(index=pd.Index(part, name="id")))
        out.append(filter_samples(table=table, metadata=md)[0])
    return out


def _run(ctx, kind, table, metadata, sequences, encoder, covariates, distance_matrix, phylogeny,
         validation_groups, test_size, params):
    train_table, test_table = _split_tables(ctx, table, metadata, test_size,
                                            params["random_seed"], validation_groups)
    fit = ctx.get_action("aam", f"fit_{kind}")
    opt = {k: v for k, v in dict(sequences=sequences, encoder=encoder, covariates=covariates,
                                 distance_matrix=distance_matrix, phylogeny=phylogeny,
                                 validation_groups=validation_groups).items() if v is not None}
    model, history = fit(table=train_table, metadata=metadata, **opt, **params)
    pred_opt = {k: v for k, v in dict(sequences=sequences, covariates=covariates).items()
                if v is not None}
    predict = ctx.get_action("aam", f"predict_{'regression' if kind == 'regressor' else 'classification'}")
    results = predict(model=model, table=test_table, device=params["device"], **pred_opt)
    if kind == "regressor":
        viz, = ctx.get_action("sample_classifier", "scatterplot")(
            predictions=results[0], truth=metadata, missing_samples="ignore")
    else:
        viz, = ctx.get_action("sample_classifier", "confusion_matrix")(
            predictions=results[0], probabilities=results[1], truth=metadata,
            missing_samples="ignore")
    summary, = ctx.get_action("aam", "summarize")(model=model)
    return (model, history) + tuple(results) + (viz, summary)


@with_params(MODEL, TRAIN, FIT, DISTANCE, REGRESSION, annotate=False)
def regress_samples(ctx, table, metadata, sequences=None, encoder=None, covariates=None,
                    distance_matrix=None, phylogeny=None, validation_groups=None,
                    test_size=0.2, **params):
    return _run(ctx, "regressor", table, metadata, sequences, encoder, covariates,
                distance_matrix, phylogeny, validation_groups, test_size, params)


@with_params(MODEL, TRAIN, FIT, DISTANCE, CLASSIFICATION, annotate=False)
def classify_samples(ctx, table, metadata, sequences=None, encoder=None, covariates=None,
                     distance_matrix=None, phylogeny=None, validation_groups=None,
                     test_size=0.2, **params):
    return _run(ctx, "classifier", table, metadata, sequences, encoder, covariates,
                distance_matrix, phylogeny, validation_groups, test_size, params)

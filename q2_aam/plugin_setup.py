"""Registers q2-aam with QIIME 2.  Imports stay light: no torch here (q2cli imports every
plugin at start-up and on cache refresh)."""
import importlib

from q2_sample_classifier import (ClassifierPredictions, Importance, Probabilities,
                                  RegressorPredictions)
from q2_types.distance_matrix import DistanceMatrix
from q2_types.feature_data import FeatureData, Sequence
from q2_types.feature_table import FeatureTable, Frequency
from q2_types.ordination import PCoAResults
from q2_types.sample_data import SampleData
from q2_types.tree import Phylogeny, Rooted
from qiime2.plugin import (Bool, Citations, Float, Int, List, Metadata, MetadataColumn, Categorical,
                           Numeric, Plugin, Range, Str, Choices, Visualization)

from aam_engine.data.reads import MIN_CONTAINED

from . import __version__
from ._formats import (AAMCardJSONFormat, AAMConfigFormat, AAMHistoryDirFmt, AAMHistoryFormat,
                       AAMModelCardFormat, AAMModelDirFmt, SafetensorsFormat)
from ._params import (CLASSIFICATION, DISTANCE, FIT, MODEL, REGRESSION, TRAIN, qiime_params)
from ._types import (AAMModel, AAMTrainingHistory, SequenceClassifier, SequenceEncoder,
                     SequenceRegressor)

citations = Citations.load("citations.bib", package="q2_aam")

plugin = Plugin(
    name="aam",
    version=__version__,
    website="https://github.com/q2-aam/q2-aam",
    package="q2_aam",
    description="AAM (Attention All Microbes): a transformer that reads the nucleotide "
                "sequence of every ASV in a sample, pretrains on phylogeny (UniFrac between "
                "samples; a masked-nucleotide loss is optional) and is fine-tuned to predict "
                "sample metadata. An encoder pretrained on public studies ships with it.",
    short_description="Sequence-aware transformers for microbiome prediction.",
    citations=[citations["cantrell_aam"]],
)

plugin.register_formats(AAMConfigFormat, SafetensorsFormat, AAMModelCardFormat, AAMCardJSONFormat,
                        AAMModelDirFmt, AAMHistoryFormat, AAMHistoryDirFmt)
plugin.register_semantic_types(AAMModel, SequenceEncoder, SequenceRegressor, SequenceClassifier,
                               AAMTrainingHistory)
for _type, _fmt in ((AAMModel[SequenceEncoder], AAMModelDirFmt),
                    (AAMModel[SequenceRegressor], AAMModelDirFmt),
                    (AAMModel[SequenceClassifier], AAMModelDirFmt),
                    (AAMTrainingHistory, AAMHistoryDirFmt)):
    if hasattr(plugin, "register_artifact_class"):
        plugin.register_artifact_class(_type, directory_format=_fmt)
    else:  # pragma: no cover - QIIME 2 releases before register_artifact_class
        plugin.register_semantic_type_to_format(_type, artifact_format=_fmt)

importlib.import_module("q2_aam._transformers")
from ._methods import (embed, feature_importance, fit_classifier, fit_regressor,  # noqa: E402
                       predict_classification, predict_regression, pretrain,
                       pretrained_encoder)
from ._pipelines import classify_samples, regress_samples  # noqa: E402
from ._visualizers import summarize  # noqa: E402
from . import _examples as ex  # noqa: E402

T_TABLE = FeatureTable[Frequency]
SEQ_DESC = ("Representative sequences of the table's features. Needed when feature IDs are "
            "hashes (DADA2); Deblur tables whose IDs are the sequences need none.")
IN_DESC = {
    "table": "Feature table of counts (samples x ASVs).",
    "sequences": SEQ_DESC,
    "distance_matrix": "Precomputed distances between the table's samples (e.g. UniFrac); "
                       "every table sample must be in it.",
    "phylogeny": "Rooted tree of the ASVs; UniFrac distances are computed from it. Features "
                 "that are not tips are dropped with a warning.",
    "encoder": "A pretrained encoder from `pretrain` to fine-tune (its sizes are used).",
}
GROUPS_PARAM = {"validation_groups": MetadataColumn[Categorical]}
GROUPS_DESC = {"validation_groups": "The independent unit of your samples: the column whose "
                                    "value samples share when they are not independent (the "
                                    "subject sampled over time, the cage whose mice share "
                                    "microbes, the family). Folds and validation keep each "
                                    "unit whole, so no unit straddles training and "
                                    "validation and the reported scores are for new units; "
                                    "intervals resample units."}
COV_DESC = {"covariates": "Categorical metadata columns fed to every component beside the "
                          "ASVs, one-hot (values unseen in training are treated as unknown)."}
HIST_OUT = ("history", AAMTrainingHistory)
HIST_DESC = "Per-epoch training and validation metrics (view with `qiime metadata tabulate`)."

p, d = qiime_params(MODEL, TRAIN, DISTANCE)
plugin.methods.register_function(
    function=pretrain,
    inputs={"table": T_TABLE, "sequences": FeatureData[Sequence],
            "distance_matrix": DistanceMatrix, "phylogeny": Phylogeny[Rooted],
            "study_distance_matrices": List[DistanceMatrix],
            "study_phylogenies": List[Phylogeny[Rooted]]},
    parameters={**p, **GROUPS_PARAM},
    outputs=[("model", AAMModel[SequenceEncoder]), HIST_OUT],
    input_descriptions={
        **{k: IN_DESC[k] for k in ("table", "sequences", "distance_matrix", "phylogeny")},
        "table": IN_DESC["table"] + " Several studies: merge their tables first "
                 "(`qiime feature-table merge`, and `merge-seqs` for their sequences); one "
                 "phylogeny that covers them all gives UniFrac across studies too.",
        "study_distance_matrices": "Several studies, each with distances of its own: one "
                                   "matrix per study; a sample takes its distances from the "
                                   "matrix that holds it, and only pairs within one matrix are "
                                   "compared.",
        "study_phylogenies": "Several studies, each with a tree of its own: a sample takes its "
                             "UniFrac from the tree whose tips carry most of its reads, and "
                             "only pairs on one tree are compared."},
    parameter_descriptions={**d, **GROUPS_DESC},
    output_descriptions={"model": "The pretrained encoder.", "history": HIST_DESC},
    name="Pretrain an AAM encoder on UniFrac",
    description="Self-supervised pretraining: sample embeddings are trained so that their "
                "distances match UniFrac distances between samples (with nuc-penalty > 0 the "
                "nucleotide encoder also learns to fill in masked bases; off by default). No "
                "labels are needed. Several studies train together from one merged table.",
    citations=[citations["lozupone2005unifrac"], citations["mcdonald2018striped"],
               citations["vaswani2017attention"], citations["paszke2019pytorch"]],
    examples={"pretrain_from_phylogeny": ex.pretrain_example},
)

plugin.methods.register_function(
    function=pretrained_encoder,
    inputs={},
    parameters={},
    outputs=[("encoder", AAMModel[SequenceEncoder])],
    output_descriptions={"encoder": "The encoder that ships with q2-aam, its model card "
                                    "(MODEL_CARD.md, card.json) inside the artifact."},
    name="The encoder pretrained on public studies",
    description="Hands out the AAM encoder that ships with q2-aam, pretrained on the UniFrac "
                "distances of public 16S studies (Greengenes 13_8 OTUs read as their V4 "
                "sequences, CC BY-SA 3.0; see its model card: `qiime tools export` and "
                "MODEL_CARD.md). No network is needed. fit-regressor / fit-classifier start "
                "from it when given no encoder, phylogeny or distance matrix.",
    citations=[citations["desantis2006greengenes"], citations["mcdonald2012greengenes"]],
    examples={"pretrained_encoder": ex.pretrained_encoder_example},
)

for kind, col_type, extra, out_type, func, example in (
        ("regressor", Numeric, REGRESSION, SequenceRegressor, fit_regressor, ex.fit_regressor_example),
        ("classifier", Categorical, CLASSIFICATION, SequenceClassifier, fit_classifier,
         ex.fit_classifier_example)):
    p, d = qiime_params(MODEL, TRAIN, FIT, DISTANCE, extra)
    plugin.methods.register_function(
        function=func,
        inputs={"table": T_TABLE, "sequences": FeatureData[Sequence],
                "encoder": AAMModel[SequenceEncoder], "distance_matrix": DistanceMatrix,
                "phylogeny": Phylogeny[Rooted]},
        parameters={**p, **GROUPS_PARAM, "metadata": MetadataColumn[col_type],
                    "covariates": Metadata},
        outputs=[("model", AAMModel[out_type]), HIST_OUT],
        input_descriptions={**IN_DESC,
                            "distance_matrix": IN_DESC["distance_matrix"] + " Optional: keeps "
                            "the UniFrac loss during fine-tuning.",
                            "phylogeny": IN_DESC["phylogeny"] + " Optional: keeps the UniFrac "
                            "loss during fine-tuning."},
        parameter_descriptions={**d, **GROUPS_DESC, **COV_DESC,
                                "metadata": f"{'Numeric' if kind == 'regressor' else 'Categorical'}"
                                            " metadata column to predict."},
        output_descriptions={"model": f"The trained {kind}.", "history": HIST_DESC},
        name=f"Fit an AAM sample {kind}",
        description=f"Train a transformer {kind} on the ASV sequences and abundances of each "
                    "sample, optionally starting from a pretrained encoder.",
        citations=[citations["vaswani2017attention"], citations["paszke2019pytorch"]],
        examples={f"fit_{kind}": example},
    )

PRED_PARAMS = {"covariates": Metadata, "device": TRAIN["device"][0], "match_reads": Bool}
PRED_DESC = {**COV_DESC, "device": TRAIN["device"][2],
             "match_reads": "Read an ASV that is another trim of one of the model's training "
                            "reads (another primer trim, truncation length or primers left "
                            "on: one read contains the other base for base, the shorter at "
                            f"least {MIN_CONTAINED:.0%} of the longer) as that training read; "
                            "one contained in several training reads (its trim cut what told "
                            "them apart) is ambiguous and read as it is, like every other "
                            "ASV. How many were matched, ambiguous and new goes to stderr "
                            "(--verbose). False: read every ASV as it is."}
plugin.methods.register_function(
    function=predict_regression,
    inputs={"model": AAMModel[SequenceRegressor], "table": T_TABLE,
            "sequences": FeatureData[Sequence]},
    parameters=PRED_PARAMS,
    outputs=[("predictions", SampleData[RegressorPredictions])],
    input_descriptions={"model": "A regressor from fit-regressor.", "table": IN_DESC["table"],
                        "sequences": SEQ_DESC},
    parameter_descriptions=PRED_DESC,
    output_descriptions={"predictions": "Predicted values (feed sample-classifier scatterplot)."},
    name="Predict a numeric target with an AAM regressor",
    description="Apply a fitted AAM regressor to a table. ASVs never seen in training are "
                "fine: the model reads their sequences; reads of another trim or length of the "
                "training ASVs are read as those ASVs (match-reads).",
    examples={"predict_regression": ex.predict_regression_example},
)
plugin.methods.register_function(
    function=predict_classification,
    inputs={"model": AAMModel[SequenceClassifier], "table": T_TABLE,
            "sequences": FeatureData[Sequence]},
    parameters=PRED_PARAMS,
    outputs=[("predictions", SampleData[ClassifierPredictions]),
             ("probabilities", SampleData[Probabilities])],
    input_descriptions={"model": "A classifier from fit-classifier.", "table": IN_DESC["table"],
                        "sequences": SEQ_DESC},
    parameter_descriptions=PRED_DESC,
    output_descriptions={"predictions": "Predicted class per sample.",
                         "probabilities": "Class probabilities per sample."},
    name="Predict a class with an AAM classifier",
    description="Apply a fitted AAM classifier to a table. ASVs never seen in training are "
                "fine: the model reads their sequences; reads of another trim or length of the "
                "training ASVs are read as those ASVs (match-reads).",
    examples={"predict_classification": ex.predict_classification_example},
)
plugin.methods.register_function(
    function=embed,
    inputs={"model": AAMModel[SequenceEncoder | SequenceRegressor | SequenceClassifier],
            "table": T_TABLE, "sequences": FeatureData[Sequence]},
    parameters={k: PRED_PARAMS[k] for k in ("device", "match_reads")},
    outputs=[("distance_matrix", DistanceMatrix), ("pcoa", PCoAResults)],
    input_descriptions={"model": "Any AAM model.", "table": IN_DESC["table"],
                        "sequences": SEQ_DESC},
    parameter_descriptions={k: PRED_DESC[k] for k in ("device", "match_reads")},
    output_descriptions={"distance_matrix": "The model's UniFrac estimates: Euclidean "
                                            "distances between sample embeddings (the learned "
                                            "part and a sketch of each sample's ASV set, "
                                            "weighted as fitted in pretraining) plus the "
                                            "model's offset (for diversity "
                                            "beta-group-significance etc.).",
                         "pcoa": "PCoA of those distances (for emperor plot)."},
    name="Embed samples in the model's learned space",
    description="Sample embeddings from an AAM model as a distance matrix and an ordination.",
    examples={"embed": ex.embed_example},
)
plugin.methods.register_function(
    function=feature_importance,
    inputs={"model": AAMModel[SequenceEncoder | SequenceRegressor | SequenceClassifier],
            "table": T_TABLE, "sequences": FeatureData[Sequence]},
    parameters={**PRED_PARAMS,
                "method": Str % Choices(["auto", "occlusion", "integrated_gradients",
                                         "attention"]),
                "steps": Int % Range(2, None)},
    outputs=[("importance", FeatureData[Importance])],
    input_descriptions={"model": "A fitted AAM model (occlusion and integrated gradients "
                                 "need a regressor or classifier; attention works for any "
                                 "model).",
                        "table": IN_DESC["table"], "sequences": SEQ_DESC},
    parameter_descriptions={**PRED_DESC,
                            "method": "'occlusion': how far the model's prediction (the "
                                      "predicted class's probability, or the value) moves "
                                      "when the ASV is removed from a sample: the whole "
                                      "stack, forests included; 'integrated_gradients': "
                                      "attribution of the heads' prediction to each ASV, "
                                      "from the ASV removed to as observed (models whose "
                                      "stack is their heads); 'attention': how much the "
                                      "sample encoder attends to each ASV; 'auto': "
                                      "occlusion for a stack, integrated gradients for "
                                      "heads alone, attention for an encoder.",
                            "steps": "Integration steps for integrated gradients."},
    output_descriptions={"importance": "Mean importance of each feature over the table's "
                                       "samples (0 for features absent from them)."},
    name="Which ASVs drive an AAM model",
    description="Per-feature importance from a fitted AAM model, averaged over the samples of "
                "a table. Feeds sample-classifier heatmap and feature-table filter-features.",
    examples={"feature_importance": ex.feature_importance_example},
)

plugin.visualizers.register_function(
    function=summarize,
    inputs={"model": AAMModel[SequenceEncoder | SequenceRegressor | SequenceClassifier]},
    parameters={},
    input_descriptions={"model": "Any AAM model."},
    parameter_descriptions={},
    name="Summarize an AAM model",
    description="Loss curves, validation predictions (scatter with R² or confusion matrix) "
                "and the full configuration of a trained model.",
    examples={"summarize": ex.summarize_example},
)

for kind, col_type, extra, out_type, pred_outs, func in (
        ("regressor", Numeric, REGRESSION, SequenceRegressor,
         [("predictions", SampleData[RegressorPredictions])], regress_samples),
        ("classifier", Categorical, CLASSIFICATION, SequenceClassifier,
         [("predictions", SampleData[ClassifierPredictions]),
          ("probabilities", SampleData[Probabilities])], classify_samples)):
    p, d = qiime_params(MODEL, TRAIN, FIT, DISTANCE, extra)
    plugin.pipelines.register_function(
        function=func,
        inputs={"table": T_TABLE, "sequences": FeatureData[Sequence],
                "encoder": AAMModel[SequenceEncoder], "distance_matrix": DistanceMatrix,
                "phylogeny": Phylogeny[Rooted]},
        parameters={**p, **GROUPS_PARAM, "metadata": MetadataColumn[col_type],
                    "covariates": Metadata,
                    "test_size": Float % Range(0.0, 1.0, inclusive_start=False)},
        outputs=[("model", AAMModel[out_type]), HIST_OUT] + pred_outs +
                [("accuracy_results", Visualization), ("model_summary", Visualization)],
        input_descriptions=IN_DESC,
        parameter_descriptions={**d, **GROUPS_DESC, **COV_DESC,
                                "metadata": "Metadata column to predict.",
                                "test_size": "Fraction of samples held out as the test set "
                                             "(grouped by validation-groups when given)."},
        output_descriptions={k: v for k, v in {
            "model": f"The trained {kind}.", "history": HIST_DESC,
            "predictions": "Predictions for the test samples.",
            "probabilities": "Class probabilities for the test samples.",
            "accuracy_results": "q2-sample-classifier's view of the test predictions against "
                                "the truth.",
            "model_summary": "The summarize visualization of the model."}.items()
            if k in [name for name, _ in pred_outs] or k not in ("predictions", "probabilities")},
        name=f"Train and test an AAM sample {kind}",
        description=f"Split the samples, fit an AAM {kind} on the training part, predict the "
                    "test part and show the accuracy with q2-sample-classifier.",
    )

from qiime2.plugin import SemanticType

# Names are global across plugins: q2-sample-classifier already owns Regressor / Classifier.
AAMModel = SemanticType("AAMModel", field_names="type")
SequenceEncoder = SemanticType("SequenceEncoder", variant_of=AAMModel.field["type"])
SequenceRegressor = SemanticType("SequenceRegressor", variant_of=AAMModel.field["type"])
SequenceClassifier = SemanticType("SequenceClassifier", variant_of=AAMModel.field["type"])
AAMTrainingHistory = SemanticType("AAMTrainingHistory")

TASK_OF_TYPE = {"SequenceEncoder": "encoder", "SequenceRegressor": "regression",
                "SequenceClassifier": "classification"}

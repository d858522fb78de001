"""Formats.  The model directory is the engine's own (config.json + weights.safetensors +
history.tsv), validated without torch and without unpickling anything."""
import json

from qiime2.plugin import ValidationError, model

from aam_engine.io.model_dir import REQUIRED_KEYS, read_safetensors_header, validate_model_dir


def _json_object(fmt, name: str) -> dict:
    """The JSON object in a text file format, or a ValidationError naming the file."""
    try:
        with fmt.open() as fh:
            obj = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"{name} is not valid JSON: {e}")
    if not isinstance(obj, dict):
        raise ValidationError(f"{name} must hold a JSON object")
    return obj


class AAMConfigFormat(model.TextFileFormat):
    def _validate_(self, level):
        cfg = _json_object(self, "config.json")
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        if missing:
            raise ValidationError(f"config.json lacks required keys {missing}")


class SafetensorsFormat(model.BinaryFileFormat):
    def _validate_(self, level):
        try:
            read_safetensors_header(str(self))
        except ValueError as e:
            raise ValidationError(str(e))


class AAMHistoryFormat(model.TextFileFormat):
    """Per-epoch training metrics: TSV, first column 'epoch', numeric cells (empty allowed)."""

    def _validate_(self, level):
        with self.open() as fh:
            lines = [l.rstrip("\n") for l in fh]
        if not lines or lines[0].split("\t")[0] != "epoch":
            raise ValidationError("history.tsv must start with a header whose first column is "
                                  "'epoch'")
        n = len(lines[0].split("\t"))
        rows = lines[1:] if level == "max" else lines[1:6]
        for i, line in enumerate(rows, start=2):
            cells = line.split("\t")
            if len(cells) != n:
                raise ValidationError(f"history.tsv line {i} has {len(cells)} cells, expected {n}")
            for c in cells:
                if c:
                    try:
                        float(c)
                    except ValueError:
                        raise ValidationError(f"history.tsv line {i}: {c!r} is not a number")


class AAMModelCardFormat(model.TextFileFormat):
    """A model card (MODEL_CARD.md): UTF-8 text, carried for people to read."""

    def _validate_(self, level):
        try:
            with self.open() as fh:
                fh.read()
        except UnicodeDecodeError as e:
            raise ValidationError(f"MODEL_CARD.md is not UTF-8 text: {e}")


class AAMCardJSONFormat(model.TextFileFormat):
    """The model card's facts (card.json): a JSON object."""

    def _validate_(self, level):
        _json_object(self, "card.json")


class AAMModelDirFmt(model.DirectoryFormat):
    config = model.File("config.json", format=AAMConfigFormat)
    weights = model.File("weights.safetensors", format=SafetensorsFormat)
    history = model.File("history.tsv", format=AAMHistoryFormat, optional=True)
    # the shipped encoder's card travels inside its artifact
    card = model.File("MODEL_CARD.md", format=AAMModelCardFormat, optional=True)
    card_json = model.File("card.json", format=AAMCardJSONFormat, optional=True)

    def _validate_(self, level):
        try:
            validate_model_dir(str(self.path), level)
        except ValueError as e:
            raise ValidationError(str(e))


AAMHistoryDirFmt = model.SingleFileDirectoryFormat("AAMHistoryDirFmt", "history.tsv",
                                                   AAMHistoryFormat)

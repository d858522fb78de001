"""One declaration per setting: the plugin's parameters are the engine's settings (same name,
default, range / choices, help), and each one reaches the configuration the trainer gets."""
import pytest

from ..conftest import require_qiime2  # noqa: E402

qiime2 = require_qiime2()

from aam_engine.config import ModelConfig, TrainConfig, declared  # noqa: E402
from q2_aam import _examples as ex  # noqa: E402

ENGINE = {name: (default, meta) for cls in (ModelConfig, TrainConfig)
          for name, default, meta in declared(cls)}
TRAINING_ACTIONS = ("pretrain", "fit_regressor", "fit_classifier", "regress_samples",
                    "classify_samples")
EXPECTED_GROUPS = {"pretrain": {"model", "train"},
                   "fit_regressor": {"model", "train", "fit", "regression"},
                   "fit_classifier": {"model", "train", "fit", "classification"}}
EXPECTED_GROUPS["regress_samples"] = EXPECTED_GROUPS["fit_regressor"]
EXPECTED_GROUPS["classify_samples"] = EXPECTED_GROUPS["fit_classifier"]


@pytest.fixture(scope="module")
def plugin():
    from q2_aam.plugin_setup import plugin
    return plugin


def _range(qtype):
    """(lo, hi, lo_open, choices) of a QIIME 2 parameter type."""
    pred = qtype.predicate
    if pred is None:
        return None, None, False, None
    if hasattr(pred, "template") and hasattr(pred.template, "choices"):
        return None, None, False, tuple(pred.template.choices)
    t = pred.template
    inf = lambda v: None if v is None or abs(v) == float("inf") else v
    return inf(t.start), inf(t.end), bool(t.start is not None and not t.inclusive_start), None


@pytest.mark.parametrize("action", TRAINING_ACTIONS)
def test_plugin_parameters_are_the_engine_settings(plugin, action):
    sig = plugin.actions[action].signature
    params = sig.parameters
    exposed = {n for n, (_, m) in ENGINE.items() if m["plugin"] in EXPECTED_GROUPS[action]}
    engine_named = {n for n in params if n in ENGINE}
    assert engine_named == exposed, (engine_named ^ exposed)
    for name in exposed:
        default, meta = ENGINE[name]
        spec = params[name]
        assert spec.default == default, name
        assert spec.description == meta["help"], name
        lo, hi, lo_open, choices = _range(spec.qiime_type)
        if meta["choices"] is not None:
            assert choices == meta["choices"], name
        else:
            assert (lo, hi, lo_open) == (meta["lo"], meta["hi"], meta["lo_open"]), name


def test_engine_cli_flags_are_the_same_settings():
    from aam_engine import cli
    parser = cli.argparse.ArgumentParser()
    cli._add_dataclass(parser, TrainConfig, "t")
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(flags) == {n for n, _, _ in declared(TrainConfig)}
    assert flags["devices"].default == ENGINE["devices"][0]
    assert tuple(flags["precision"].choices) == ENGINE["precision"][1]["choices"]


def _non_default(name, default, meta):
    """A valid value other than the default, for every kind of setting."""
    if meta["choices"]:
        return [c for c in meta["choices"] if c != default][0]
    special = {"device": "cpu", "devices": 1, "precision": "fp32", "compile": False,
               "embedding_dim": 24, "attention_heads": 3, "token_limit": 48, "max_bp": 90,
               "epochs": 1, "batch_size": 7, "validation_fraction": 0.25,
               "stack": "heads"}
    if name in special:
        return special[name]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    return round(default * 0.5 + 0.03, 4)


@pytest.mark.parametrize("action,task", [("pretrain", "encoder"),
                                         ("fit_regressor", "regression"),
                                         ("fit_classifier", "classification")])
def test_every_parameter_reaches_the_trainer(plugin, action, task, monkeypatch):
    """Each engine setting, set to a non-default value from the Artifact API, arrives
    unchanged in the TrainConfig / ModelConfig the Trainer is built with."""
    from aam_engine import training

    seen = {}

    class Caught(Exception):
        pass

    def capture(self, model, data, cfg, *a, **k):
        seen.update(model=model.cfg, train=cfg)
        raise Caught()

    monkeypatch.setattr(training.Trainer, "__init__", capture)
    from aam_engine import fit
    heads = fit.fold_count   # a model trained whole (freeze_base False): ONE head
    monkeypatch.setattr(fit, "fold_count",
                        lambda cfg, *a: seen.update(ensemble=cfg.ensemble) or heads(cfg, *a))
    sig = plugin.actions[action].signature.parameters
    values = {n: _non_default(n, *ENGINE[n]) for n in sig if n in ENGINE}
    if action != "pretrain":
        values["freeze_base"] = False    # else a pretraining Trainer is built first
    md = ex.metadata_factory()
    inputs = dict(table=ex.table_factory(), sequences=ex.sequences_factory(),
                  phylogeny=ex.tree_factory())
    if action == "fit_regressor":
        inputs["metadata"] = md.get_column("age")
    elif action == "fit_classifier":
        inputs["metadata"] = md.get_column("group")
    from qiime2.plugins import aam
    with pytest.raises(Caught):
        getattr(aam.actions, action)(**inputs, **values)
    for name, value in values.items():
        cfg = seen["model"] if name in ModelConfig.__dataclass_fields__ else seen["train"]
        if name == "ensemble":
            assert seen["ensemble"] == value and cfg.ensemble == 1
            continue
        assert getattr(cfg, name) == value, name
    assert seen["model"].task == task

"""Parameters shared by the actions: named, typed, defaulted and described in one place."""
import inspect

from qiime2.plugin import Bool, Choices, Float, Int, Range, Str

from aam_engine.api import UNIFRAC_METRICS, ModelConfig, TrainConfig, declared

# name: (QIIME type, default, description).  Every setting that changes results is here, so
# provenance replay re-runs an action exactly; nothing is read from the environment.  Engine
# settings are DERIVED from aam_engine.config (their one declaration: default, range, choices,
# help); only the plugin's own settings (how the table is prepared, where checkpoints go, what
# to do with unlabelled samples, which UniFrac) are declared here.


def _qiime_type(default, meta):
    """The QIIME 2 parameter type of a declared engine setting."""
    kind = {bool: Bool, int: Int, float: Float, str: Str}[type(default)]
    if meta["choices"] is not None:
        return kind % Choices(list(meta["choices"]))
    if meta["lo"] is None and meta["hi"] is None:
        return kind
    return kind % Range(meta["lo"], meta["hi"], inclusive_start=not meta["lo_open"],
                        inclusive_end=meta["hi"] is not None)


def engine_params(group: str) -> dict:
    """{name: (QIIME type, default, description)} of the engine settings in a plugin group."""
    return {name: (_qiime_type(default, meta), default, meta["help"])
            for cls in (ModelConfig, TrainConfig) for name, default, meta in declared(cls)
            if meta["plugin"] == group}


MODEL = engine_params("model")
TRAIN = {
    **engine_params("train"),
    "rarefaction_depth": (Int % Range(1, None), None,
                          "Rarefy every sample to this many reads first (samples with fewer "
                          "are dropped). Default: no rarefaction."),
    "checkpoint_dir": (Str, None,
                       "Directory for the last training checkpoint. Run the same command "
                       "again after a crash to resume from it."),
}
FIT = {
    **engine_params("fit"),
    "missing_samples": (Str % Choices(["error", "ignore"]), "error",
                        "What to do with table samples that have no target value: 'error' "
                        "names them, 'ignore' trains without them."),
}
DISTANCE = {
    "metric": (Str % Choices(list(UNIFRAC_METRICS)), "unweighted",
               "UniFrac variant computed when a phylogeny is given."),
}
REGRESSION = engine_params("regression")
CLASSIFICATION = engine_params("classification")


def qiime_params(*groups):
    """(parameters, descriptions) dicts for register_function."""
    merged = {k: v for g in groups for k, v in g.items()}
    return ({k: v[0] for k, v in merged.items()}, {k: v[2] for k, v in merged.items()})


def _python_type(qiime_type):
    name = str(qiime_type).split(" ")[0].split("%")[0]
    return {"Int": int, "Float": float, "Str": str, "Bool": bool}[name]


def with_params(*groups, annotate: bool = True):
    """Turn ``f(explicit..., **params)`` into a function whose signature lists every shared
    parameter: QIIME 2 reads names, defaults and view types from a real signature and does
    not accept **kwargs.  The generated function forwards everything to ``f`` by keyword.
    Pipelines take no annotations: ``annotate=False``."""
    merged = {k: v for g in groups for k, v in g.items()}

    def deco(fn):
        sig = inspect.signature(fn)
        explicit = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
        extra = [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v[1],
                                   annotation=_python_type(v[0]) if annotate
                                   else inspect.Parameter.empty)
                 for k, v in merged.items() if k not in sig.parameters]
        params = explicit + extra
        names = [p.name for p in params]
        ns = {"_impl": fn}
        exec(f"def {fn.__name__}({', '.join(names)}):\n"
             f"    return _impl({', '.join(f'{n}={n}' for n in names)})\n", ns)
        new = ns[fn.__name__]
        new.__defaults__ = tuple(p.default for p in params if p.default is not p.empty)
        new.__annotations__ = {p.name: p.annotation for p in params
                               if p.annotation is not p.empty}
        if sig.return_annotation is not sig.empty:
            new.__annotations__["return"] = sig.return_annotation
        new.__doc__, new.__module__, new.__qualname__ = fn.__doc__, fn.__module__, fn.__qualname__
        return new
    return deco

"""The model directory: ``config.json`` + ``weights.safetensors`` (+ ``history.tsv``).

Nothing here unpickles: tensors come from safetensors, everything else is JSON.  A model from
a stranger cannot run code.  :func:`validate_model_dir` checks the directory (JSON keys, format
version, safetensors header: names, dtypes, shapes, offsets) without reading the weights.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .format import FORMAT_VERSION
from ..config import ModelConfig, TrainConfig

CONFIG, WEIGHTS, HISTORY = "config.json", "weights.safetensors", "history.tsv"
# a model card (a shipped encoder's: data, licences, held-out results) may travel with a model
CARD, CARD_JSON = "MODEL_CARD.md", "card.json"
ALLOWED_FILES = {CONFIG, WEIGHTS, HISTORY, CARD, CARD_JSON}
REQUIRED_KEYS = ("format", "format_version", "engine_version", "model", "training", "target",
                 "covariates")
FORMAT_NAME = "q2-aam-model"
SAFE_DTYPES = {"F32", "F16", "BF16", "F64", "I64"}


@dataclass
class ModelBundle:
    """A trained model plus everything needed to use it on new data."""
    model_config: ModelConfig
    train_config: TrainConfig
    state_dict: dict                       # name -> tensor
    target: dict = field(default_factory=dict)      # name, transform, shift, scale, classes
    covariates: dict = field(default_factory=dict)  # column -> ordered levels (code = i + 1)
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)       # data summary, split, seeds
    stack: object = None       # aam_engine.stacked.Stack (None: an encoder, or a model of
    #                            format 2.6 or older, which predicts with its heads)

    @property
    def task(self) -> str:
        return self.model_config.task

    def build_model(self):
        from ..models import AAM
        model = AAM(ModelConfig.from_dict(self.model_config.to_dict()))
        check_state_dict(model, self.state_dict)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def config_json(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "engine_version": __version__, "task": self.task,
                "model": self.model_config.to_dict(), "training": self.train_config.to_dict(),
                "target": self.target, "covariates": self.covariates,
                "history": self.history, "extra": self.extra,
                **({"stack": self.stack.spec()} if self.stack is not None else {})}


def check_state_dict(model, state_dict):
    """Names, shapes and dtypes of loaded tensors must be exactly what the config builds."""
    import torch
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(f"Model weights do not match the model configuration: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}.")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"Weight {k!r} has shape {tuple(v.shape)}, the configuration needs "
                             f"{tuple(expected[k].shape)}.")
        if not (v.is_floating_point() or v.dtype == torch.int64):
            raise ValueError(f"Weight {k!r} has unsupported dtype {v.dtype}.")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"Weight {k!r} contains NaN or infinite values; the model is broken.")


def _atomic_dir(target: Path):
    """Context: write into a temporary sibling directory, then swap it into place."""
    class _Ctx:
        def __enter__(self):
            target.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            return self.tmp

        def __exit__(self, exc_type, exc, tb):
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return False
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old.{os.getpid()}")
                os.replace(target, old)
            os.replace(self.tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return False
    return _Ctx()


def history_tsv(history: list[dict]) -> str:
    keys = ["epoch"] if not history else []
    for rec in history:
        keys += [k for k in rec if k not in keys]
    lines = ["\t".join(keys)]
    for rec in history:
        lines.append("\t".join("" if rec.get(k) is None else f"{rec[k]:.6g}"
                               if isinstance(rec.get(k), float) else str(rec.get(k, ""))
                               for k in keys))
    return "\n".join(lines) + "\n"


def write_model_files(bundle: ModelBundle, directory) -> None:
    """The three files into an existing (empty) directory."""
    import torch
    from safetensors.torch import save_file
    d = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in bundle.state_dict.items()}
    if bundle.stack is not None:
        tensors.update({k: torch.from_numpy(v) for k, v in bundle.stack.tensors().items()})
    save_file(tensors, str(d / WEIGHTS), metadata={"format": FORMAT_NAME})
    (d / CONFIG).write_text(json.dumps(bundle.config_json(), indent=1, default=float))
    (d / HISTORY).write_text(history_tsv(bundle.history))


def write_model_dir(bundle: ModelBundle, path) -> Path:
    """Write atomically: a crash never leaves a half-written model at ``path``."""
    path = Path(path)
    with _atomic_dir(path) as tmp:
        write_model_files(bundle, tmp)
    return path


def read_safetensors_header(path) -> dict:
    """The JSON header of a safetensors file, read without torch and without executing data."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path.name} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or n > min(size - 8, 100_000_000):
            raise ValueError(f"{path.name} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path.name} is not a safetensors file ({e})") from None
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in SAFE_DTYPES:
            raise ValueError(f"{path.name}: tensor {name!r} has unsupported dtype "
                             f"{info.get('dtype') if isinstance(info, dict) else info!r}")
        lo, hi = info["data_offsets"]
        end = max(end, hi)
    if 8 + n + end > size:
        raise ValueError(f"{path.name} is truncated ({size} bytes, header needs {8 + n + end})")
    return header


# ---------------------------------------------------------------- reading older formats
# One step per format minor: step N turns a config.json of format 2.N into one of 2.(N+1)
# (in place) and returns a rename of its tensors (old name -> new, or None) and the names of
# tensors that format lacked and that read as zero.  Each version that these steps reach has a
# stored example, written by the engine of that version (tests/data/model_formats).
OFFSET_WEIGHT = "embed_offset.offset"
HEAD_RENAMES = (("head_pool", "heads.0.pool"), ("head_shift", "heads.0.shift"),
                ("head_scale", "heads.0.scale"), ("covariates", "heads.0.covariates"),
                ("fuse", "heads.0.fuse"), ("head", "heads.0.mlp"), ("out_scale", "heads.0.out_scale"))


def _from_2_0(cfg):
    """2.1 added the learned distance offset: a 2.0 model's distances have none (0)."""
    return None, [OFFSET_WEIGHT]


def _from_2_1(cfg):
    """2.2 made the target head `ensemble` cross-fitted heads heads.K.*: one head, renamed."""
    if cfg["model"].get("task") == "encoder":
        return None, []
    cfg["model"]["ensemble"] = 1

    def rename(name):
        for old, to in HEAD_RENAMES:
            if name == old or name.startswith(old + "."):
                return to + name[len(old):]
        return name
    return rename, []


def _from_2_2(cfg):
    """2.3 let heads read each sample's k-mer spectrum: older heads read none."""
    cfg["model"]["head_kmer_size"] = 0
    return None, []


def _from_2_3(cfg):
    """2.4 had a setting (since retired) that normalised the sample vector; older: off."""
    return None, []


def _from_2_4(cfg):
    """2.5 added the sketch of the sample's ASV set to the embedding: older models have none."""
    cfg["model"]["set_sketch"] = 0
    return None, []


DISTANCE_WEIGHTS = ("embed.", "embed_scale.", "embed_offset.", "sketch_scale.", "mix_scale.",
                    "mix_offset.")


def _from_2_5(cfg):
    """2.6 gathered what turns sample vectors into distances into one module, `distance`."""
    return (lambda name: "distance." + name if name.startswith(DISTANCE_WEIGHTS) else name), []


def _from_2_6(cfg):
    """2.7 predicts with a stack of components (aam_engine.stacked); older regressors and
    classifiers predict with their heads alone."""
    if cfg["model"].get("task") != "encoder":
        cfg["model"]["stack"] = "heads"
    return None, []


def _from_2_7(cfg):
    """2.8 lets a classifier predict the class that stands highest against its training
    share (ModelConfig.decision); older classifiers stored no shares and predict the most
    probable class."""
    if cfg["model"].get("task") != "encoder":
        cfg["model"]["decision"] = "probable"
    return None, []


def _from_2_8(cfg):
    """2.9 adds the clusters block (its centres kept with the stack, and with an encoder
    those of its pretraining reads); no model before it reads one: nothing to change."""
    return None, []


UPGRADES = (_from_2_0, _from_2_1, _from_2_2, _from_2_3, _from_2_4, _from_2_5, _from_2_6,
            _from_2_7, _from_2_8)
MAJOR = int(FORMAT_VERSION.split(".")[0])
READABLE_VERSIONS = tuple(f"{MAJOR}.{m}" for m in range(len(UPGRADES) + 1))
assert READABLE_VERSIONS[-1] == FORMAT_VERSION, "a format minor without its upgrade step"

# settings that were measured and not kept: a file that has them at the value that changes
# nothing reads without them; one trained with them on cannot be read faithfully
RETIRED = {"model": {"sample_norm": False, "count_head": False},
           "training": {"rarefied_copies": 0, "count_penalty": 0.0}}


def refit_error(version, why: str) -> ValueError:
    return ValueError(f"This model was written in format {version} ({why}); this engine "
                      f"({__version__}, format {FORMAT_VERSION}) cannot read it faithfully. "
                      "Refit it with this release (same data and settings).")


def _retire(cfg):
    for part, settings in RETIRED.items():
        for name, idle in settings.items():
            value = cfg[part].pop(name, idle)
            if value != idle:
                raise refit_error(cfg["format_version"],
                                  f"trained with {name}={value!r}, a setting this engine "
                                  "no longer has")


def _upgrade(cfg: dict):
    """Bring a parsed config.json of any readable format up to today's, in place; returns
    (rename: stored tensor name -> today's name, names of tensors that read as zero)."""
    minor = int(str(cfg["format_version"]).split(".")[1])
    renames, zero = [], []
    for step in UPGRADES[minor:]:
        rename, zeros = step(cfg)
        renames += [rename] if rename else []
        zero += zeros
    _retire(cfg)

    def rename(name):
        for r in renames:
            name = r(name)
        return name
    return rename, [rename(name) for name in zero]


def expected_shapes(mcfg: ModelConfig) -> dict:
    """{tensor name: shape} that the configuration builds: the model itself, built on the meta
    device (no memory, no initialisation), so this check cannot drift from the model."""
    import torch
    from ..models import AAM
    with torch.device("meta"):
        model = AAM(mcfg)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _check_version(v: str):
    try:
        major, minor = (int(x) for x in str(v).split("."))
    except ValueError:
        raise ValueError(f"model format version {v!r} is not MAJOR.MINOR") from None
    my_major, my_minor = (int(x) for x in FORMAT_VERSION.split("."))
    if major < my_major:
        raise refit_error(v, "from an early release whose weights mean something else")
    if major != my_major or minor > my_minor:
        raise ValueError(f"This model was written in format {v}; this engine "
                         f"({__version__}) reads {my_major}.0 to {FORMAT_VERSION}. Upgrade q2-aam.")


def validate_model_dir(path, level: str = "max") -> dict:
    """Check a model directory without loading weights; returns the parsed config, upgraded
    to today's format.  ``level='min'`` only checks the files and JSON keys (no torch); 'max'
    also reads the safetensors header and checks every tensor name and shape against the model
    that the configuration builds (on the meta device)."""
    return _validated(path, level)[0]


def _validated(path, level):
    """(upgraded config, tensor rename, names of tensors that read as zero)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a model directory")
    names = {p.name for p in path.iterdir()}
    strange = sorted(names - ALLOWED_FILES)
    if strange:
        raise ValueError(f"Unexpected file(s) in the model directory: {strange}. A model holds "
                         f"only {sorted(ALLOWED_FILES)}; nothing else is ever loaded (and no "
                         "pickle is ever accepted).")
    for req in (CONFIG, WEIGHTS):
        if req not in names:
            raise ValueError(f"The model directory has no {req}")
    if CARD_JSON in names:
        try:
            if not isinstance(json.loads((path / CARD_JSON).read_text()), dict):
                raise ValueError(f"{CARD_JSON} must hold a JSON object")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{CARD_JSON} is not valid JSON: {e}") from None
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{CONFIG} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{CONFIG} must hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"{CONFIG} lacks required keys {missing}")
    if cfg["format"] != FORMAT_NAME:
        raise ValueError(f"{CONFIG} is not a q2-aam model (format {cfg['format']!r})")
    _check_version(cfg["format_version"])
    rename, zero = _upgrade(cfg)
    mcfg = ModelConfig.from_dict(cfg["model"])
    check_centres((cfg.get("extra") or {}).get("clusters"), mcfg.embedding_dim)
    TrainConfig.from_dict(cfg["training"])
    if mcfg.task == "classification":
        classes = cfg["target"].get("classes") or []
        if len(classes) != mcfg.n_outputs:
            raise ValueError(f"classifier has {mcfg.n_outputs} outputs but {len(classes)} class "
                             "labels in config.json")
    if level == "min":
        return cfg, rename, zero
    header = {rename(k): v for k, v in read_safetensors_header(path / WEIGHTS).items()
              if k != "__metadata__"}
    check_stack(cfg, {k for k in header if k.startswith(STACK_PREFIX)})
    centres = header.get(STACK_CENTRES)
    if centres is not None and list(centres["shape"]) != [cfg["stack"]["clusters"]["k"],
                                                          mcfg.embedding_dim]:
        raise ValueError(f"{WEIGHTS}: the stack's cluster centres have shape "
                         f"{centres['shape']}, config.json implies "
                         f"[{cfg['stack']['clusters']['k']}, {mcfg.embedding_dim}]")
    header = {k: v for k, v in header.items() if not k.startswith(STACK_PREFIX)}
    expected = expected_shapes(mcfg)
    for name in zero:
        expected.pop(name)
    names = set(header)
    missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or unexpected:
        raise ValueError(f"{WEIGHTS} does not hold what config.json builds: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}.")
    for name, shape in expected.items():
        if list(header[name]["shape"]) != shape:
            raise ValueError(f"{WEIGHTS}: tensor {name!r} has shape {header[name]['shape']}, "
                             f"config.json implies {shape}")
    return cfg, rename, zero


STACK_PREFIX = "stack."
STACK_CENTRES = STACK_PREFIX + "clusters"      # stacked.CENTRES: the clusters block's centres


def check_centres(clusters, width: int):
    """An encoder's clusters (config.json extra "clusters"): K centres of ``width`` finite
    numbers each, or none."""
    if clusters is None:
        return
    import numpy as np
    try:
        C = np.asarray(clusters["centres"], dtype=np.float64)
        ok = C.ndim == 2 and len(C) >= 1 and C.shape[1] == width and np.isfinite(C).all()
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{CONFIG}: extra.clusters must hold 'centres' of shape [K, {width}] "
                         "(K centres of the encoder's width), finite numbers")


def check_stack(cfg: dict, names: set):
    """A stack's tensors are exactly those its description in config.json names, and only a
    regressor / classifier of format 2.7 or later has one."""
    spec = cfg.get("stack")
    if spec is None:
        if names:
            raise ValueError(f"{WEIGHTS} holds stack tensors but config.json describes no stack")
        return
    try:
        from ..stacked import parse
        parse([c["name"] for c in spec["components"]])
        n = len(spec["components"])
        if len(spec["weights"]) != n or not all(w >= 0 for w in spec["weights"]):
            raise ValueError("one weight >= 0 per component")
        prefixes = {f"{STACK_PREFIX}{i}.{k}." for i, c in enumerate(spec["components"])
                    if c["learner"] != "heads" for k in range(int(c["models"]))}
        clusters = spec.get("clusters")
        if clusters is not None and not (isinstance(clusters, dict) and isinstance(
                clusters.get("k"), int) and clusters["k"] >= 1):
            raise ValueError("its clusters entry must be {'k': centres >= 1, 'from': ...}")
        if any(c.get("block") == "clusters" for c in spec["components"]):
            if clusters is None:
                raise ValueError("a component reads the clusters block but the stack keeps "
                                 "no cluster centres")
        exact = {STACK_CENTRES} if clusters is not None else set()
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"config.json describes a stack this engine cannot read: {e}") from None
    stray = sorted(x for x in names if x not in exact
                   and not any(x.startswith(p) for p in prefixes))
    bare = sorted(p for p in prefixes if not any(x.startswith(p) for x in names)) + sorted(
        exact - names)
    if stray or bare:
        raise ValueError(f"{WEIGHTS} does not hold the stack config.json describes: "
                         f"unexpected {stray[:3]}, missing {bare[:3]}.")


def read_model_dir(path) -> ModelBundle:
    from safetensors.torch import load_file
    path = Path(path)
    cfg, rename, zero = _validated(path, "max")
    state = {rename(k): v for k, v in load_file(str(path / WEIGHTS)).items()}
    stack_tensors = {k: state.pop(k).numpy() for k in list(state) if k.startswith(STACK_PREFIX)}
    if zero:
        import torch
        state.update({name: torch.zeros(1) for name in zero})
    stack = None
    if cfg.get("stack") is not None:
        from ..stacked import Stack
        stack = Stack.load(cfg["stack"], stack_tensors)
    bundle = ModelBundle(ModelConfig.from_dict(cfg["model"]), TrainConfig.from_dict(cfg["training"]),
                         state, cfg["target"], cfg["covariates"], cfg.get("history", []),
                         cfg.get("extra", {}), stack)
    from ..models import AAM
    check_state_dict(AAM(bundle.model_config), state)
    return bundle

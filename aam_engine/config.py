"""Every setting of the engine, declared once: name, default, range or choices, one-line help.

The dataclass fields below are the only declaration.  ``validate()`` checks them (called once,
where a configuration enters: ``api`` and ``from_dict``); the engine CLI derives its flags and
the QIIME 2 plugin derives its parameter types, defaults and descriptions from the same fields
(``plugin`` names the group of actions that expose a setting; None = engine only).
"""
from __future__ import annotations

import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

TASKS = ("encoder", "regression", "classification")
MIN_CLASSES = 2
DEVICES = ("auto", "cpu", "cuda")       # or cuda:N


def setting(default, help: str, *, lo=None, hi=None, lo_open: bool = False, choices=None,
            plugin: str | None = None):
    """A dataclass field with its declaration in ``metadata``: range [lo, hi] (lo excluded when
    ``lo_open``), ``choices``, ``help``, and the plugin group that exposes it."""
    meta = dict(help=help, lo=lo, hi=hi, lo_open=lo_open,
                choices=None if choices is None else tuple(choices), plugin=plugin)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def declared(cls):
    """[(name, default, metadata)] of a config class, in declaration order."""
    return [(f.name, f.default_factory() if f.default is MISSING else f.default, f.metadata)
            for f in fields(cls)]


def defaults(cls) -> dict:
    """{name: declared default} of a config class."""
    return {name: default for name, default, _ in declared(cls)}


def _check_field(name, value, meta):
    choices, lo, hi = meta.get("choices"), meta.get("lo"), meta.get("hi")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        raise ValueError(f"{name} must be {'>' if meta.get('lo_open') else '>='} {lo}; "
                         f"got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}; got {value}")


class _Serial:
    # names written by earlier versions -> today's names (model directories stay readable)
    RENAMED: dict = {}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        d = {cls.RENAMED.get(k, k): v for k, v in d.items()}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
        return cls(**d).validate()

    def validate(self):
        """Every declared range / choice, then the checks that involve several settings."""
        for name, _, meta in declared(type(self)):
            _check_field(name, getattr(self, name), meta)
        self._validate_together()
        return self

    def _validate_together(self):
        pass


# Sizes by name: each fills these settings together (only where they are left at their
# defaults: explicit values win).  Parameter counts in the README.
PRESETS = {
    "none": {},
    "cpu": dict(embedding_dim=64, attention_heads=4, attention_layers=2, token_limit=256,
                batch_size=16),
    "gpu": dict(embedding_dim=128, attention_heads=4, attention_layers=4, token_limit=1024,
                batch_size=32),
    "multi-gpu": dict(embedding_dim=256, attention_heads=8, attention_layers=6,
                      token_limit=1024, batch_size=64),
}


@dataclass
class ModelConfig(_Serial):
    task: str = setting("encoder", "What the model predicts.", choices=TASKS)
    preset: str = setting(
        "none", "Sizes by name: 'cpu' (a laptop: width 64, 2 layers, 256 ASVs, batch 16), "
        "'gpu' (one GPU: 128, 4 layers, 1024 ASVs, batch 32), 'multi-gpu' (pretraining on "
        "several GPUs: 256, 8 heads, 6 layers, 1024 ASVs, batch 64 per GPU). A preset fills "
        "embedding-dim, attention-heads, attention-layers, token-limit and batch-size where "
        "they are left at their defaults; values you give win.",
        choices=tuple(PRESETS), plugin="model")
    embedding_dim: int = setting(
        128, "Width of the transformer (ASV and sample encoders). Must be divisible by "
        "attention-heads.", lo=8, plugin="model")
    attention_heads: int = setting(4, "Attention heads per transformer layer.", lo=1,
                                   plugin="model")
    attention_layers: int = setting(
        4, "Transformer layers in each encoder (nucleotide level and ASV level).", lo=1,
        plugin="model")
    intermediate_ratio: int = setting(4, "Feed-forward width / embedding_dim.", lo=1)
    dropout: float = setting(0.0, "Dropout rate.", lo=0, hi=0.9, plugin="model")
    max_bp: int = setting(
        0, "Nucleotides read per ASV; longer sequences are cut, shorter ones padded. 0: the "
        "longest sequence in the table, at most 150.", lo=0, plugin="model")
    kmer_size: int = setting(
        6, "Length of the k-mers whose profile is added to each ASV's vector, so that ASVs "
        "differing by a few bases are told apart from the start (0 = off).", lo=0, hi=8,
        plugin="model")
    token_limit: int = setting(1024, "Most ASVs read per sample (the most abundant ones are "
                                     "kept).", lo=1, plugin="model")
    embedding_out: int = setting(0, "Size of the UniFrac embedding space (0 = embedding_dim).",
                                 lo=0)
    set_sketch: int = setting(
        1024, "Numbers in the sketch of the sample's ASV set appended to the UniFrac embedding "
        "(0 = off): the normalised sum of a fixed pseudo-random +-1 vector per ASV sequence, "
        "whose distances follow how many ASVs two samples share with no trained weights, so "
        "they hold for new subjects too. Its weight against the learned part (and the offset) "
        "is fitted on the training pairs after pretraining; the encoder and the heads learn "
        "exactly as without it. Lower it (or 0) only to save memory in `embed`.",
        lo=0, hi=4096)
    # fine-tuning head
    head_pools: int = setting(1, "Attention pools over the ASVs that the prediction head reads.",
                              lo=0, hi=64)
    ensemble: int = setting(
        5, "Folds of the cross-fitting: the training samples are split into this many folds "
        "(whole validation groups per fold where given); every component of the stack is "
        "fitted K times, each time without one fold, which it then predicts, and predicts new "
        "samples as the mean of its K fits. The out-of-fold predictions are what the stacker "
        "weighs and the summary scores. Fewer groups than this: one fold per group. 1 = no "
        "cross-fitting (a model trained whole: one head and a validation split).",
        lo=1, hi=20, plugin="fit")
    stack: str = setting(
        "linear:relative,forest:relative,linear:clusters,forest:clusters",
        "The components of the stack, comma-separated, each LEARNER:BLOCK or 'heads'. "
        "Learners: 'linear' (L2-regularised logistic / ridge regression, its strength chosen "
        "on inner folds), 'forest' (random forest). Blocks: 'clr' (centred log-ratio "
        "abundances), 'relative' (relative abundances), 'clusters' (the sample's shares of "
        "the encoder's clusters of reads: each read, seen before or not, joins the cluster "
        "whose centre is nearest its vector; the centres cluster the reads the encoder was "
        "pretrained on), 'composition' (the encoder's ASV vectors weighted by each ASV's "
        "share of the sample). 'heads': the model's own "
        "prediction heads on the frozen encoder. The predictions are the weighted mean of the "
        "components' (weights >= 0 fitted on their out-of-fold predictions). 'heads' alone "
        "gives the model trained whole when freeze-base is off.", plugin="fit")
    decision: str = setting(
        "balanced", "How a classifier picks the class it predicts from its class "
        "probabilities: 'balanced' the class whose probability stands highest against its "
        "share of the training samples (the rule that maximises balanced accuracy: a rare "
        "class is predicted where the model sees more of it than its base rate), 'probable' "
        "the most probable class. The probabilities are the same either way.",
        choices=("balanced", "probable"), plugin="classification")
    head_kmer_size: int = setting(
        6, "Length of the k-mers whose spectrum (each sample's relative-abundance-weighted "
        "k-mer frequencies, 4^k numbers) the prediction heads read beside the encoder's "
        "vectors: the sequence-level detail that tells individual ASVs apart, generalising to "
        "unseen ASVs through the k-mers they share: what pays where new samples come from the "
        "subjects trained on. Not used when samples are grouped (a model for new subjects, "
        "cages, families), unless head_spectrum is 'always'; 0 = never.", lo=0, hi=7,
        plugin="fit")
    head_spectrum: str = setting(
        "auto", "When the heads read the k-mer spectrum (head_kmer_size > 0): 'auto' = not with "
        "validation groups; 'always' = whenever head_kmer_size > 0 (e.g. groups given for "
        "validation but new samples will come from the same subjects).", choices=("auto", "always"),
        plugin="fit")
    n_outputs: int = setting(1, "1 for regression, the number of classes for classification.",
                             lo=1)
    output_activation: str = setting(
        "linear", "Output transform: 'softplus' / 'exp' keep predictions positive, 'bounded' "
        "keeps them within the training range.",
        choices=("linear", "softplus", "exp", "bounded"), plugin="regression")
    covariate_sizes: list = setting([], "Categories per covariate (unknown excluded).")
    covariate_fusion: str = setting("concat", "How covariates join the head's input.",
                                    choices=("concat", "add"))
    freeze_base: bool = setting(
        True, "With a pretrained encoder (--i-encoder): keep it fixed and train only the "
        "prediction head (ASV vectors are computed once per feature and cached, ~20x faster per "
        "epoch). Without an encoder but with a phylogeny or distance matrix, an encoder is "
        "first pretrained on this table's UniFrac (all its samples), then kept fixed. False "
        "fine-tunes the whole model (or trains it from scratch without an encoder).",
        plugin="fit")
    pretrain_from: str = setting(
        "shipped", "Given a phylogeny or distance matrix but no encoder, a fit pretrains an "
        "encoder on the table's UniFrac first: 'shipped' continuing from the encoder that "
        "ships with q2-aam (its sizes; what it learned on public studies adapted to these "
        "reads), 'scratch' from random weights (sizes from the settings, e.g. a preset).",
        choices=("shipped", "scratch"), plugin="fit")
    shipped_encoder: bool = setting(
        True, "Given no encoder, phylogeny or distance matrix: start from the encoder that "
        "ships with q2-aam (pretrained on public studies; `qiime aam pretrained-encoder` hands "
        "it out with its model card) and keep it fixed. False trains the whole model from "
        "scratch instead.", plugin="fit")

    def _validate_together(self):
        from .stacked import parse
        parse(self.stack)
        if self.embedding_dim % self.attention_heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be divisible by "
                             f"attention_heads ({self.attention_heads})")
        if self.task == "classification" and self.n_outputs < MIN_CLASSES:
            raise ValueError(f"a classifier needs at least {MIN_CLASSES} classes")


@dataclass
class TrainConfig(_Serial):
    RENAMED = {"seed": "random_seed"}

    epochs: int = setting(100, "Most passes over the training samples.", lo=1, plugin="train")
    batch_size: int = setting(
        16, "Samples per optimisation step (per device). The UniFrac loss compares every pair "
        "in the batch.", lo=2, plugin="train")
    learning_rate: float = setting(1e-3, "Peak learning rate (AdamW, warm-up then cosine "
                                         "decay).", lo=0, lo_open=True, plugin="train")
    weight_decay: float = setting(0.01, "AdamW weight decay.", lo=0, plugin="train")
    optimizer: str = setting("adamw", "Optimizer.", choices=("adamw", "adam", "sgd"))
    scheduler: str = setting(
        "warmup_cosine", "Learning-rate schedule.",
        choices=("warmup_cosine", "cosine_restarts", "plateau", "onecycle", "constant"))
    warmup_steps: int = setting(100, "Steps of linear learning-rate warm-up.", lo=0)
    gradient_accumulation_steps: int = setting(
        1, "Batches whose gradients are summed before each step.", lo=1, plugin="train")
    max_grad_norm: float = setting(1.0, "Gradient-norm clipping (0 = off).", lo=0)
    precision: str = setting(
        "auto", "Arithmetic precision. 'auto': bf16 on GPUs that support it, fp16 with loss "
        "scaling on older GPUs, fp32 on CPU.", choices=("auto", "fp32", "bf16", "fp16"),
        plugin="train")
    compile: bool = setting(False, "Compile the model with torch.compile (falls back to eager "
                                   "execution where unsupported).", plugin="train")
    device: str = setting(
        "auto", "Where to train: 'auto' uses a CUDA GPU when PyTorch sees one, else the CPU "
        "('cuda:N' picks one GPU).", plugin="train")
    devices: int = setting(
        0, "Training processes on this machine: 0 = every visible GPU when training on CUDA "
        "(one process on CPU); N > 1 trains with PyTorch DDP, each process taking batch-size "
        "samples per step (the UniFrac loss still compares every pair of the global batch).",
        lo=0, plugin="train")
    strategy: str = setting(
        "ddp", "With devices > 1: 'ddp' replicates the model in every process; 'fsdp' shards "
        "parameters, gradients and optimizer state across them (large models).",
        choices=("ddp", "fsdp"), plugin="train")
    activation_checkpointing: bool = setting(
        False, "Recompute each transformer block's activations in the backward pass instead of "
        "keeping them: less memory for large models / token limits, about a third more "
        "compute.", plugin="train")
    memory_budget_mb: float = setting(0.0, "> 0: batch size chosen to fit this many MB (trial "
                                           "steps).", lo=0)
    random_seed: int = setting(
        0, "Seed for the split, batching, masking and initialisation: the same seed on CPU "
        "gives the same model.", plugin="train")
    validation_fraction: float = setting(
        0.1, "Fraction of samples held out for validation, early stopping and the summary "
        "plots.", lo=0, hi=0.9, plugin="train")
    patience: int = setting(10, "Stop after this many epochs without validation improvement "
                                "(0 = never).", lo=0, plugin="train")
    # objectives
    penalty: float = setting(1.0, "Weight of the UniFrac pairwise-distance loss (used when a "
                                  "distance matrix or phylogeny is given).", lo=0, plugin="train")
    nuc_penalty: float = setting(
        0.0, "Weight of the masked-nucleotide loss (0 = off: the encoder then learns from "
        "UniFrac on the same unmasked sequences that prediction reads).", lo=0, plugin="train")
    target_penalty: float = setting(1.0, "Weight of the prediction loss.", lo=0, plugin="fit")
    compare_baselines: bool = setting(
        True, "Also cross-fit, on the same folds, the baselines a user would fit without AAM "
        "(an L2-regularised linear model on CLR abundances and a random forest on relative "
        "abundances) where the stack does not hold them, so that the summary says whether "
        "the stack beats the best of them, with an interval. They do not join the stack. "
        "Turn off to save their time.", plugin="fit")
    mask_ratio: float = setting(0.15, "Fraction of nucleotides masked for the masked-nucleotide "
                                      "objective.", lo=0, hi=0.9, plugin="train")
    read_trim: int = setting(
        0, "Each ASV's read is shortened by a random number of bases up to this (up to 2 of "
        "them from its start, the rest from its end), as another primer or read length would "
        "cut it. Training an encoder: in every batch, so the encoder learns that other trims "
        "of one region are the same ASV. Heads on a frozen encoder: they train on the vectors "
        "of three such trims of every read beside the read itself (one per ASV per batch), so "
        "they may predict better for tables of other trims (0 = off).", lo=0, hi=100, plugin="train")
    mask_strategy: str = setting("random", "Masked nucleotides: single bases or spans.",
                                 choices=("random", "span"))
    asv_selection: str = setting(
        "abundance", "How ASVs are chosen when a sample has more than token-limit: the most "
        "abundant, or drawn in proportion to counts (each epoch anew).",
        choices=("abundance", "sample"), plugin="train")
    regression_loss: str = setting("mse", "Regression loss.", choices=("mse", "huber"),
                                   plugin="regression")
    classification_loss: str = setting("cross_entropy", "Classification loss.",
                                       choices=("cross_entropy", "focal"),
                                       plugin="classification")
    class_weights: str = setting("none", "'balanced' weights classes inversely to their "
                                         "frequency.", choices=("none", "balanced"),
                                 plugin="classification")
    target_transform: str = setting(
        "none", "Transform targets before training (predictions are transformed back).",
        choices=("none", "log1p"), plugin="regression")
    max_steps: int = setting(0, "Stop after this many optimizer steps (0 = run the epochs): "
                                "a budget for pretraining on very large collections.", lo=0)
    max_nan_steps: int = setting(5, "Consecutive non-finite steps before giving up.", lo=1)
    progress: bool = setting(True, "Show a progress bar.")

    def _validate_together(self):
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got "
                             f"{self.device!r}")


def apply_preset(model_cfg: ModelConfig, train_cfg: TrainConfig):
    """(model, training) configurations with the preset's sizes filled in wherever the setting
    is still at its declared default."""
    preset = PRESETS[model_cfg.preset]
    out = []
    for cfg in (model_cfg, train_cfg):
        base = defaults(type(cfg))
        changes = {k: v for k, v in preset.items() if k in base and getattr(cfg, k) == base[k]}
        out.append(replace(cfg, **changes))
    return tuple(out)


# what a fine-tuned model takes from its pretrained encoder
ENCODER_SIZES = ("embedding_dim", "attention_heads", "attention_layers", "intermediate_ratio",
                 "max_bp", "kmer_size", "token_limit", "embedding_out", "set_sketch")


def warn_size_mismatch(asked: dict, encoder: ModelConfig, hint: str = ""):
    """A fit with an encoder uses the encoder's sizes: say so (naming both, and ``hint``: how
    to get the sizes asked for) when the user asked for other sizes than the defaults."""
    base = defaults(ModelConfig)
    differ = [f"{k} {asked[k]} (encoder: {getattr(encoder, k)})" for k in ENCODER_SIZES
              if k in asked and asked[k] != base[k] and asked[k] != getattr(encoder, k)]
    if differ:
        warnings.warn("The pretrained encoder's sizes are used, not the ones asked for: "
                      + "; ".join(differ) + "." + (f" {hint}" if hint else ""), stacklevel=3)


def head_count(cfg: ModelConfig) -> int:
    """How many prediction heads a model of this configuration has: one per fold where the
    stack has the heads (none for an encoder or a stack without them)."""
    from .stacked import HEADS, parse
    if cfg.task == "encoder" or (HEADS, "") not in parse(cfg.stack):
        return 0
    return cfg.ensemble

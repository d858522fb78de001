"""Configuration dataclasses, validated once at the edge and serialised to JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

TASKS = ("encoder", "regression", "classification")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_range(name, value, lo=None, hi=None, lo_open=False):
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}; got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}; got {value}")


class _Serial:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
        obj = cls(**d)
        obj.validate()
        return obj


@dataclass
class ModelConfig(_Serial):
    task: str = "encoder"
    embedding_dim: int = 128
    attention_heads: int = 4
    attention_layers: int = 4          # per encoder (ASV level and sample level)
    intermediate_ratio: int = 4        # feed-forward width / embedding_dim
    dropout: float = 0.0
    max_bp: int = 0                    # nucleotides read per ASV; 0 = from the data (longest, <= 150)
    kmer_size: int = 6                 # k-mer profile of each ASV added to its vector (0 = off)
    token_limit: int = 1024
    embedding_out: int = 0             # size of the UniFrac embedding space (0 = embedding_dim)
    count_head: bool = False
    # fine-tuning head
    head_pools: int = 1                # attention pools over the ASVs that the head reads
    n_outputs: int = 1                 # 1 for regression, n classes for classification
    output_activation: str = "linear"  # linear | softplus | exp | bounded
    covariate_sizes: list = field(default_factory=list)  # categories per covariate (excl. unknown)
    covariate_fusion: str = "concat"   # concat | add
    freeze_base: bool = True           # with a pretrained encoder: train the head only

    def validate(self):
        _check_choice("task", self.task, TASKS)
        _check_range("max_bp", self.max_bp, 0)
        for n in ("embedding_dim", "attention_heads", "attention_layers",
                  "token_limit", "intermediate_ratio", "n_outputs"):
            _check_range(n, getattr(self, n), 1)
        if self.embedding_dim % self.attention_heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be divisible by "
                             f"attention_heads ({self.attention_heads})")
        _check_range("dropout", self.dropout, 0, 0.9)
        _check_range("kmer_size", self.kmer_size, 0, 8)
        _check_range("head_pools", self.head_pools, 0, 64)
        _check_range("embedding_out", self.embedding_out, 0)
        _check_choice("output_activation", self.output_activation,
                      ("linear", "softplus", "exp", "bounded"))
        _check_choice("covariate_fusion", self.covariate_fusion, ("concat", "add"))
        if self.task == "classification" and self.n_outputs < 2:
            raise ValueError("a classifier needs at least 2 classes")
        return self


@dataclass
class TrainConfig(_Serial):
    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"             # adamw | adam | sgd
    scheduler: str = "warmup_cosine"     # warmup_cosine | cosine_restarts | plateau | onecycle | constant
    warmup_steps: int = 100
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    precision: str = "auto"              # auto | fp32 | bf16 | fp16
    compile: bool = False
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    devices: int = 1                     # processes on this node (0 = every visible GPU)
    strategy: str = "ddp"                # ddp | fsdp (parameters sharded across processes)
    memory_budget_mb: float = 0.0        # > 0: batch_size chosen to fit this (trial steps)
    seed: int = 0
    validation_fraction: float = 0.1
    patience: int = 10
    # objectives
    penalty: float = 1.0                 # UniFrac pairwise loss
    nuc_penalty: float = 0.0             # masked nucleotides (0 = off)
    target_penalty: float = 1.0
    count_penalty: float = 0.0
    mask_ratio: float = 0.15
    mask_strategy: str = "random"        # random | span
    asv_selection: str = "abundance"     # abundance | sample
    regression_loss: str = "mse"         # mse | huber
    classification_loss: str = "cross_entropy"  # cross_entropy | focal
    class_weights: str = "none"          # none | balanced
    target_transform: str = "none"       # none | log1p
    max_nan_steps: int = 5               # consecutive non-finite steps before giving up
    progress: bool = True

    def validate(self):
        for n in ("epochs", "batch_size", "gradient_accumulation_steps", "max_nan_steps"):
            _check_range(n, getattr(self, n), 1)
        _check_range("devices", self.devices, 0)
        _check_range("memory_budget_mb", self.memory_budget_mb, 0)
        _check_range("learning_rate", self.learning_rate, 0, lo_open=True)
        _check_range("validation_fraction", self.validation_fraction, 0, 0.9)
        _check_range("patience", self.patience, 0)
        _check_range("mask_ratio", self.mask_ratio, 0, 0.9)
        for n in ("penalty", "nuc_penalty", "target_penalty", "count_penalty", "weight_decay",
                  "max_grad_norm", "warmup_steps"):
            _check_range(n, getattr(self, n), 0)
        _check_choice("optimizer", self.optimizer, ("adamw", "adam", "sgd"))
        _check_choice("strategy", self.strategy, ("ddp", "fsdp"))
        _check_choice("scheduler", self.scheduler,
                      ("warmup_cosine", "cosine_restarts", "plateau", "onecycle", "constant"))
        _check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _check_choice("mask_strategy", self.mask_strategy, ("random", "span"))
        _check_choice("asv_selection", self.asv_selection, ("abundance", "sample"))
        _check_choice("regression_loss", self.regression_loss, ("mse", "huber"))
        _check_choice("classification_loss", self.classification_loss, ("cross_entropy", "focal"))
        _check_choice("class_weights", self.class_weights, ("none", "balanced"))
        _check_choice("target_transform", self.target_transform, ("none", "log1p"))
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")
        return self

"""Parameters shared by the actions: named, typed, defaulted and described in one place."""
import inspect

from qiime2.plugin import Bool, Choices, Float, Int, Range, Str

# name: (QIIME type, default, description).  Every setting that changes results is here, so
# provenance replay re-runs an action exactly; nothing is read from the environment.
MODEL = {
    "embedding_dim": (Int % Range(8, None), 128,
                      "Width of the transformer (ASV and sample encoders). Must be divisible "
                      "by attention-heads."),
    "attention_heads": (Int % Range(1, None), 4, "Attention heads per transformer layer."),
    "attention_layers": (Int % Range(1, None), 4,
                         "Transformer layers in each encoder (nucleotide level and ASV level)."),
    "max_bp": (Int % Range(0, None), 0,
               "Nucleotides read per ASV; longer sequences are cut, shorter ones padded. "
               "0: the longest sequence in the table, at most 150."),
    "kmer_size": (Int % Range(0, 8, inclusive_end=True), 6,
                  "Length of the k-mers whose profile is added to each ASV's vector, so that "
                  "ASVs differing by a few bases are told apart from the start (0 = off)."),
    "token_limit": (Int % Range(1, None), 1024,
                    "Most ASVs read per sample (the most abundant ones are kept)."),
    "dropout": (Float % Range(0, 0.9, inclusive_end=True), 0.0, "Dropout rate."),
}
TRAIN = {
    "epochs": (Int % Range(1, None), 100, "Most passes over the training samples."),
    "batch_size": (Int % Range(2, None), 16,
                   "Samples per optimisation step (per device). The UniFrac loss compares "
                   "every pair in the batch."),
    "learning_rate": (Float % Range(0, None, inclusive_start=False), 1e-3,
                      "Peak learning rate (AdamW, warm-up then cosine decay)."),
    "weight_decay": (Float % Range(0, None), 0.01, "AdamW weight decay."),
    "gradient_accumulation_steps": (Int % Range(1, None), 1,
                                    "Batches whose gradients are summed before each step."),
    "mask_ratio": (Float % Range(0, 0.9, inclusive_end=True), 0.15,
                   "Fraction of nucleotides masked for the masked-nucleotide objective."),
    "penalty": (Float % Range(0, None), 1.0,
                "Weight of the UniFrac pairwise-distance loss (used when a distance matrix "
                "or phylogeny is given)."),
    "nuc_penalty": (Float % Range(0, None), 0.0,
                    "Weight of the masked-nucleotide loss (0 = off: the encoder then learns "
                    "from UniFrac on the same unmasked sequences that prediction reads)."),
    "count_penalty": (Float % Range(0, None), 0.0,
                      "Weight of the relative-abundance prediction loss (0 = off)."),
    "asv_selection": (Str % Choices(["abundance", "sample"]), "abundance",
                      "How ASVs are chosen when a sample has more than token-limit: the most "
                      "abundant, or drawn in proportion to counts (each epoch anew)."),
    "precision": (Str % Choices(["auto", "fp32", "bf16", "fp16"]), "auto",
                  "Arithmetic precision. 'auto': bf16 on GPUs that support it, fp16 with loss "
                  "scaling on older GPUs, fp32 on CPU."),
    "compile": (Bool, False, "Compile the model with torch.compile (falls back to eager "
                             "execution where unsupported)."),
    "device": (Str % Choices(["auto", "cpu", "cuda"]), "auto",
               "Where to train: 'auto' uses a CUDA GPU when PyTorch sees one, else the CPU."),
    "devices": (Int % Range(0, None), 0,
                "Training processes on this machine: 0 = every visible GPU when training on "
                "CUDA (one process on CPU); N > 1 trains with PyTorch DDP, each process taking "
                "batch-size samples per step (the UniFrac loss still compares every pair of the "
                "global batch)."),
    "strategy": (Str % Choices(["ddp", "fsdp"]), "ddp",
                 "With devices > 1: 'ddp' replicates the model in every process; 'fsdp' "
                 "shards parameters, gradients and optimizer state across them (large models)."),
    "random_seed": (Int, 0, "Seed for the split, batching, masking and initialisation: the "
                            "same seed on CPU gives the same model."),
    "validation_fraction": (Float % Range(0, 0.9, inclusive_end=True), 0.1,
                            "Fraction of samples held out for validation, early stopping and "
                            "the summary plots."),
    "patience": (Int % Range(0, None), 10,
                 "Stop after this many epochs without validation improvement (0 = never)."),
    "rarefaction_depth": (Int % Range(1, None), None,
                          "Rarefy every sample to this many reads first (samples with fewer "
                          "are dropped). Default: no rarefaction."),
    "checkpoint_dir": (Str, None,
                       "Directory for the last training checkpoint. Run the same command "
                       "again after a crash to resume from it."),
}
FIT = {
    "target_penalty": (Float % Range(0, None), 1.0, "Weight of the prediction loss."),
    "freeze_base": (Bool, True,
                    "With a pretrained encoder (--i-encoder): keep it fixed and train only the "
                    "prediction head (ASV vectors are computed once per feature and cached, "
                    "~20x faster per epoch). Without an encoder but with a phylogeny or "
                    "distance matrix, an encoder is first pretrained on this table's UniFrac "
                    "(all its samples), then kept fixed. False fine-tunes the whole model (or "
                    "trains it from scratch without an encoder)."),
    "missing_samples": (Str % Choices(["error", "ignore"]), "error",
                        "What to do with table samples that have no target value: 'error' "
                        "names them, 'ignore' trains without them."),
}
DISTANCE = {
    "metric": (Str % Choices(["unweighted", "weighted_normalized", "weighted_unnormalized"]),
               "unweighted", "UniFrac variant computed when a phylogeny is given."),
}
REGRESSION = {
    "output_activation": (Str % Choices(["linear", "softplus", "exp", "bounded"]), "linear",
                          "Output transform: 'softplus' / 'exp' keep predictions positive, "
                          "'bounded' keeps them within the training range."),
    "target_transform": (Str % Choices(["none", "log1p"]), "none",
                         "Transform targets before training (predictions are transformed back)."),
    "loss": (Str % Choices(["mse", "huber"]), "mse", "Regression loss."),
}
CLASSIFICATION = {
    "class_weights": (Str % Choices(["none", "balanced"]), "none",
                      "'balanced' weights classes inversely to their frequency."),
    "loss": (Str % Choices(["cross_entropy", "focal"]), "cross_entropy", "Classification loss."),
}


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

"""One training run from prepared inputs: the batch builder, the model (from an encoder where
one is given), the Trainer, the fitted distance mix and the validation outputs; in this
process, in several on this node (DDP) or as one rank of a torchrun job, with the data shared
once per node.  torch is imported only when a run starts."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .config import TrainConfig
from .data import BatchBuilder, ReadNoise, SampleTable
from .data.reads import known_reads
from .inputs import check_enough, split_samples
from .io import ModelBundle
from .metrics import MAX_DISTANCE_ROWS, capped_rows, embedding_fit


def node_scoped(f):
    """``f`` inside training.distributed.node_scope: under torchrun, data that node_shared
    prepares once per node lives until ``f`` returns (torch imported only when it runs)."""
    @functools.wraps(f)
    def run(*args, **kwargs):
        from .training.distributed import node_scope
        with node_scope():
            return f(*args, **kwargs)
    return run


def on_node(fn, *args):
    """``fn(*args)`` once per node under torchrun, its big arrays shared by the node's ranks
    (training.distributed.node_shared); simply ``fn(*args)`` otherwise."""
    from .training.distributed import node_shared
    return node_shared(functools.partial(fn, *args))


def tokenized(table: SampleTable, max_bp: int) -> SampleTable:
    table.tokens(max_bp)
    return table


@dataclass
class RunInputs:
    """What one training run reads besides the table and the settings (all optional): the
    encoded targets with their class weights and decoder, the distance source, covariate
    codes, the validation groups, each sample's fold (cross-fitted heads) and the encoder
    that the model starts from."""
    targets: np.ndarray | None = None
    distances: object = None
    covariates: np.ndarray | None = None
    class_weights: np.ndarray | None = None
    decode: object = None
    groups: dict | None = None
    folds: np.ndarray | None = None
    encoder: ModelBundle | None = None


@dataclass
class RunDirs:
    """Where a run keeps its checkpoints (resume) and TensorBoard logs; None: nowhere."""
    checkpoint_dir: str | None = None
    log_dir: str | None = None

    def sub(self, name: str) -> "RunDirs":
        """The same places, one folder down (a fit's stages each keep their own)."""
        down = lambda d: None if d is None else f"{d}/{name}"
        return RunDirs(down(self.checkpoint_dir), down(self.log_dir))


def run_training(table, model_cfg, train_cfg, task, inputs: RunInputs | None = None,
                 dirs: RunDirs | None = None):
    """Train in this process, in ``train_cfg.devices`` processes on this node (DDP), or as one
    rank of a torchrun job.  The table's tokens are computed once (per node) and travel with
    it, shared like its counts."""
    from .training.distributed import resolve_world, run_on_node, world_info
    inputs, dirs = inputs or RunInputs(), dirs or RunDirs()
    world = resolve_world(train_cfg)
    table = on_node(tokenized, table, model_cfg.max_bp)
    if world > 1 and world_info()[1] == 1:
        return run_on_node(train_here, world, train_cfg.device,
                           (table, model_cfg, train_cfg, task, inputs, dirs), {})
    return train_here(table, model_cfg, train_cfg, task, inputs, dirs)


def train_here(table, model_cfg, train_cfg, task, inputs: RunInputs, dirs: RunDirs,
               resume: bool = True):
    """Train on the seeded split of the table's samples (whole groups to one side), or with
    heads cross-fitted on the folds given (every sample trains all heads but one)."""
    data = task_data(table, model_cfg, train_cfg, task, inputs)
    model, train_cfg = build_model(model_cfg, train_cfg, data, inputs.encoder)
    from .training import Trainer
    trainer = Trainer(model, data, train_cfg, dirs.checkpoint_dir, dirs.log_dir)
    history = trainer.fit(resume=resume)
    model = trainer.checkpoints.export_model()
    mix = None
    if trainer.use_pair and not trainer.frozen:
        from .training.outputs import fit_sketch_mix
        mix = fit_sketch_mix(model, data.builder, data.train_rows, trainer.device,
                             trainer.asv_cache)
    return model, history, run_summary(table, model_cfg, train_cfg, trainer, data, model, mix)


def task_data(table, model_cfg, train_cfg, task, inputs: RunInputs):
    """The trainer's data: the batch builder over the whole table and the rows it trains and
    validates on (the split, or every row with each row's fold)."""
    from .training import TaskData
    folds = inputs.folds
    if folds is not None:        # cross-fitted heads: every sample trains all heads but one
        train_ids = val_ids = list(table.sample_ids)
    else:
        train_ids, val_ids = split_samples(table.sample_ids, train_cfg, inputs.groups)
    check_enough(len(train_ids), train_cfg)
    builder = BatchBuilder(table, model_cfg.token_limit, model_cfg.max_bp,
                           train_cfg.asv_selection, inputs.distances, inputs.targets,
                           inputs.covariates, ReadNoise(train_cfg.mask_ratio,
                                                        train_cfg.mask_strategy,
                                                        train_cfg.read_trim))
    return TaskData(builder, table.index_of(train_ids), table.index_of(val_ids), task,
                    inputs.class_weights, inputs.decode,
                    None if folds is None else np.asarray(folds))


def build_model(model_cfg, train_cfg, data, encoder):
    """The model to train (the encoder's weights loaded where one is given) and the training
    settings (with the batch size that fits memory_budget_mb, when set)."""
    import torch
    from .models import AAM
    torch.manual_seed(train_cfg.random_seed)
    model = AAM(model_cfg)
    if encoder is not None:
        model.load_encoder_from(encoder.build_model())
    model.set_activation_checkpointing(train_cfg.activation_checkpointing)
    if train_cfg.memory_budget_mb > 0:
        from .training.autobatch import auto_batch_size
        from .runtime import resolve_device
        dev = resolve_device(train_cfg.device)
        pick = auto_batch_size(model.to(dev), data.builder, data.train_rows,
                               train_cfg.memory_budget_mb, dev)
        train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(),
                                           "batch_size": pick["batch_size"]})
        torch.manual_seed(train_cfg.random_seed)     # the trial steps must not shift the RNG
    return model, train_cfg


def run_summary(table, model_cfg, train_cfg, trainer, data, model, mix) -> dict:
    """What a run records of itself (the model's ``extra``)."""
    ids = table.sample_ids
    train_ids = [ids[i] for i in data.train_rows]
    val_ids = [ids[i] for i in data.val_rows]
    best = trainer.state["best"]
    extra = {"n_samples": table.n_samples, "n_features": table.n_features,
             "train_samples": train_ids, "validation_samples": val_ids,
             "cross_fitted_heads": model_cfg.ensemble if data.folds is not None else 0,
             # each training sample's fold (cross-fitted heads), aligned with train_samples
             "folds": data.folds.tolist() if data.folds is not None else None,
             "skipped_steps": trainer.state["skipped_steps"],
             "optimizer_steps": trainer.state["step"],
             "precision": trainer.precision, "device": str(trainer.device),
             "batch_size": train_cfg.batch_size,
             # the monitored validation loss at the kept weights (mean over cross-fitted
             # heads); None without validation samples
             "validation_loss": (float(np.mean(best)) if val_ids and np.isfinite(best).all()
                                 else None)}
    if mix is not None:
        extra["sketch_mix"] = mix
    if data.task != "encoder":
        # the reads the model learned on, most abundant first: prediction reads other trims
        # of them as these (data.reads)
        extra["reads"] = known_reads(table)
    if trainer.rank == 0 and val_ids:
        extra["validation"] = validation_outputs(trainer, model, data, val_ids)
    return extra


MAX_SUMMARY_PAIRS = 2000


def validation_outputs(trainer, model, data, val_ids):
    """Per-sample validation predictions (for the summary plots); with cross-fitted heads
    each sample's prediction by the head that did not train on it."""
    from .inference import run_model
    key = (("embedding", "learned_embedding") if data.task == "encoder" else
           "head_predictions" if data.folds is not None else "prediction")
    out = run_model(model, data.builder, data.val_rows, trainer.device, trainer.asv_cache, key=key)
    if data.task == "encoder":
        out, learned = out
    if data.folds is not None:
        out = out[np.arange(len(out)), data.folds[data.val_rows]]
    if data.task == "regression":
        dec = data.decode
        return {"sample_ids": val_ids,
                "true": dec(data.builder.targets[data.val_rows]).tolist(),
                "predicted": dec(out).tolist()}
    if data.task == "classification":
        return {"sample_ids": val_ids, "true": data.builder.targets[data.val_rows].tolist(),
                "predicted": data.decode(out).tolist()}
    rec = {"sample_ids": val_ids}
    if data.builder.distances is not None and len(val_ids) > 1:
        # the validation pairs' model and UniFrac distances (the encoder summary's scatter),
        # at most MAX_SUMMARY_PAIRS of them, drawn reproducibly
        keep = capped_rows(len(val_ids), MAX_DISTANCE_ROWS)
        block = data.builder.distances.block(data.val_rows[keep])
        scores, d, D = embedding_fit(out[keep], learned[keep], block,
                                     float(model.distance_offset().detach()),
                                     float(model.distance.learned_offset().detach()))
        # the learned part alone (what pretraining fits; the sketch needs no training)
        rec["learned_unifrac_r2"] = scores.pop("learned_r2")
        rec.update({f"unifrac_{k}": v for k, v in scores.items()})
        pick = capped_rows(len(d), MAX_SUMMARY_PAIRS)
        d, D = d[pick], D[pick]
        rec["pairs"] = {"model": np.round(d, 5).tolist(), "unifrac": np.round(D, 5).tolist()}
    return rec

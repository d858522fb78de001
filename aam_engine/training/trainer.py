"""The training loop: mixed precision, optional torch.compile, gradient accumulation, clipping,
schedulers, early stopping, a NaN/Inf guard and the distributed path (DDP / FSDP; pairwise
UniFrac loss over the GLOBAL batch).  What it keeps and restores (best + last checkpoints,
exact resume) lives in checkpoints; outputs outside the loop in outputs."""
from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..data.batching import Batch, BatchBuilder, trim_reads
from ..data.keyed import TRIM, uniform
from . import losses as L
from .distributed import gather_with_grad, world_info
from ..metrics import (MAX_DISTANCE_ROWS, accuracy, capped_rows, known_pairs, macro_f1, mae,
                       r2_score)
from ..models.aam import head_blocks
from .checkpoints import Checkpoints
from ..inference import run_model
from ..runtime import autocast, maybe_compile, resolve_device, resolve_precision
from .schedulers import make_optimizer, make_scheduler


# heads on a frozen encoder with read_trim: the reads as they are and this many - 1 trims
TRIM_VIEWS = 4

@dataclass
class TaskData:
    """What the trainer trains on.  ``builder`` covers the whole table; rows index it."""
    builder: BatchBuilder
    train_rows: np.ndarray
    val_rows: np.ndarray
    task: str                          # encoder | regression | classification
    class_weights: np.ndarray | None = None
    decode: object = None              # normalised prediction -> original units (regression)
    # K-fold cross-fitting of the model's heads: fold of every table row (-1: none); head k
    # learns from the rows outside folds k and k + 1 (mod K), is early-stopped on fold k + 1
    # and scores fold k, so val_rows are the training rows themselves, each scored by the
    # head that neither trained nor stopped on it (stopping_fold)
    folds: np.ndarray | None = None


def stopping_fold(k, n_folds: int):
    """The fold that head k (which scores fold k) is early-stopped on."""
    return (k + 1) % n_folds


class Trainer:
    def __init__(self, model, data: TaskData, cfg: TrainConfig, checkpoint_dir=None,
                 log_dir=None):
        cfg.validate()
        self.cfg, self.data, self.model = cfg, data, model
        self.rank, self.world, self.local_rank = world_info()
        dev = cfg.device
        if self.world > 1 and dev in ("auto", "cuda") and torch.cuda.is_available():
            dev = f"cuda:{self.local_rank}"
        self.device = resolve_device(dev)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.model.to(self.device)
        mcfg = model.cfg
        # an encoder IS the base: freezing applies to predictors only
        self.frozen = bool(mcfg.freeze_base) and mcfg.task != "encoder"
        self.use_pair = cfg.penalty > 0 and data.builder.distances is not None
        self.use_nuc = cfg.nuc_penalty > 0 and cfg.mask_ratio > 0 and not self.frozen
        self.use_target = data.task != "encoder"
        if not (self.use_pair or self.use_nuc or self.use_target):
            raise ValueError("Nothing to train: give a distance matrix / phylogeny (penalty > 0), "
                             "targets, or a masked-nucleotide objective (nuc_penalty > 0).")
        self.asv_cache = self._freeze_base() if self.frozen else None
        self.trim_views = self._trim_views() if self.frozen and cfg.read_trim else None
        self.calibrate()
        self.class_weights = (None if data.class_weights is None else
                              torch.as_tensor(data.class_weights, dtype=torch.float32,
                                              device=self.device))
        self.fsdp = self.world > 1 and cfg.strategy == "fsdp"
        self.eager = self._distribute(model)
        self.forward = maybe_compile(self.eager, cfg.compile)
        self.opt = make_optimizer(model.parameters(), cfg)
        n_train = len(data.train_rows)
        self.global_batch = cfg.batch_size * self.world
        self.steps_per_epoch = max(1, len(self._batch_slices(n_train)))
        total = cfg.epochs * math.ceil(self.steps_per_epoch / cfg.gradient_accumulation_steps)
        self.sched = make_scheduler(self.opt, cfg, total, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.checkpoints = Checkpoints(model, self.device, self.fsdp, self.rank, checkpoint_dir)
        self.writer = self._tensorboard(log_dir)
        # best monitor and epochs without improvement: one per head under cross-fitting
        n = model.cfg.ensemble if data.folds is not None else 1
        self.state = dict(epoch=0, step=0, best=[float("inf")] * n, bad_epochs=[0] * n,
                          nan_steps=0, skipped_steps=0, history=[])
        self.best_state = None

    def _freeze_base(self):
        """A frozen encoder: its weights fixed, in eval mode, and every feature's ASV vector
        computed once (the cache the heads train on)."""
        for m in self.model.base_modules():
            m.requires_grad_(False)
            m.eval()
        return self.model.asv_vectors(self.data.builder.token_tensor(self.device))

    def _distribute(self, model):
        """The model as training calls it: sharded (FSDP), replicated (DDP) or as it is."""
        if self.fsdp:
            if self.frozen:
                raise ValueError("strategy 'fsdp' does not support freeze_base (a frozen encoder "
                                 "is small to train); use strategy 'ddp'.")
            from torch.distributed.fsdp import fully_shard
            for blk in list(model.asv.blocks) + list(model.sample.blocks):
                fully_shard(blk)
            fully_shard(model)
            return model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda"
                       else None, find_unused_parameters=True)
        return model

    def _tensorboard(self, log_dir):
        if not (log_dir and self.rank == 0):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter(str(log_dir))
        except Exception as e:  # tensorboard is optional
            warnings.warn(f"TensorBoard logging is off ({e}); pip install tensorboard")
            return None

    @torch.no_grad()
    def calibrate(self, max_rows: int = MAX_DISTANCE_ROWS):
        """Before the first step (a resumed run then loads its own values): set the distance
        offset to the 1st percentile of the training samples' UniFrac distances and scale the
        embedding so the mean model distance equals the mean UniFrac distance; standardise the
        head's input.  All on (up to ``max_rows``) training samples in eval mode."""
        if not (self.use_pair or self.use_target):
            return
        rows = self.data.train_rows
        if len(rows) > max_rows:
            rows = np.sort(rows[capped_rows(len(rows), max_rows, self.cfg.random_seed)])
        model, was = self.model, self.model.training
        # set_sketch: the learned part, which training fits (the mix: fit_sketch_mix, after)
        keys = ("learned_embedding",) + (
            ("head_features",) if self.use_target else ())
        outs = run_model(model, self.data.builder, rows, self.device, self.asv_cache, keys)
        if self.use_pair and not self.frozen and len(rows) > 1:   # a frozen encoder keeps its scale
            d, target = known_pairs(outs[0], self.data.builder.distances.block(rows))
            offset = float(np.percentile(target, 1)) if len(target) else 0.0
            d, target = (d.mean(), target.mean()) if len(target) else (0.0, 0.0)
            if d > 0 and target > offset:
                model.distance.calibrate(offset, (target - offset) / d)
        if self.use_target:
            f = torch.as_tensor(outs[-1], device=self.device)      # [N, heads, H]
            # every block of the head's input carries the variance of D standardised numbers
            # (the 4^k-wide k-mer spectrum is scaled down by sqrt(4^k / D)): a wide block
            # neither swamps the encoder's vectors at the start nor outruns them under Adam
            widths = head_blocks(model.cfg)
            block = torch.cat([torch.full((w,), (w / model.cfg.embedding_dim) ** 0.5)
                               for w in widths]).to(self.device)
            for k, head in enumerate(model.heads):
                head.shift.copy_(f[:, k].mean(0))
                head.scale.copy_((f[:, k].std(0).clamp_min(1e-4) if len(f) > 1 else
                                  torch.ones_like(f[0, k])) * block)
        model.train(was)
        if self.frozen:
            for m in model.base_modules():
                m.eval()

    # ------------------------------------------------------------------ batches
    def _batch_slices(self, n):
        """Global batches over n training rows: drop a remainder too small to share out."""
        B = self.global_batch
        starts = list(range(0, n, B))
        min_last = max(self.world, 2 if self.use_pair else 1)
        if self.world > 1:
            starts = [s for s in starts if s + B <= n] or [0]
        elif starts and n - starts[-1] < min_last and len(starts) > 1:
            starts = starts[:-1]
        return [(s, min(s + B, n)) for s in starts]

    def _to_device(self, batch: Batch):
        t = batch.to_torch(self.device)
        if self.data.folds is not None:
            t.folds = torch.as_tensor(self.data.folds[batch.sample_index], device=self.device)
        if self.data.task == "classification" and t.targets is not None:
            t.targets = t.targets.long()
        return t

    def _share(self, rows):
        """This rank's contiguous share of a global batch's rows (the whole batch on one
        process).  Each rank builds only its share; the global batch is never built."""
        return np.array_split(rows, self.world)[self.rank] if self.world > 1 else rows

    # ------------------------------------------------------------------ losses
    def _target_loss(self, pred, targets):
        if self.data.task == "regression":
            return L.regression_loss(pred, targets, self.cfg.regression_loss)
        weights = None if self.class_weights is None else self.class_weights.to(pred.device)
        return L.classification_loss(pred, targets, weights, self.cfg.classification_loss)

    def _head_losses(self, out, t):
        """Mean over heads of each head's loss on its own training samples (those outside the
        fold it scores and the fold it stops on; every sample without folds)."""
        per_head, losses = out["head_predictions"], []
        K = per_head.shape[1]
        for k in range(K):
            keep = ((t.folds != k) & (t.folds != stopping_fold(k, K)) if t.folds is not None
                    else slice(None))
            if t.folds is None or bool(keep.any()):
                losses.append(self._target_loss(per_head[keep, k], t.targets[keep]))
        return torch.stack(losses).mean() if losses else per_head.float().sum() * 0.0

    def _losses(self, out, t, pair: bool = True, target: bool = True):
        """Weighted total and parts.  Evaluation leaves out the pairwise loss (``pair``) and
        the target loss (``target``), which it scores over the whole set instead of per
        batch."""
        parts = {}
        if self.use_pair and pair:
            # set_sketch: the encoder learns from its learned part's own fit, exactly as it
            # would without the sketch; the mix is fitted after training (fit_sketch_mix)
            emb, offset = out["learned_embedding"], out["learned_offset"]
            if self.world > 1:
                emb = gather_with_grad(emb)
            parts["pair"] = L.pairwise_loss(emb, t.distances, offset)
        if self.use_nuc and "nuc_logits" in out:
            parts["nuc"] = L.nucleotide_loss(out["nuc_logits"], out["nuc_targets"])
        if self.use_target and target:
            parts["target"] = self._head_losses(out, t)
        return self.weighted_total(parts), parts

    def weighted_total(self, parts: dict):
        """The loss training minimises: each part (pair, nuc, target) times its weight."""
        w = dict(pair=self.cfg.penalty, nuc=self.cfg.nuc_penalty, target=self.cfg.target_penalty)
        return sum(w[k] * v for k, v in parts.items())

    @torch.no_grad()
    def _trim_views(self):
        """Heads on a frozen encoder with read_trim: every feature's ASV vector for its read
        as it is and for TRIM_VIEWS - 1 trims of it (keyed per feature and view): [V, F, D].
        A training batch reads one of them per ASV (``_pick_views``), so the heads learn what
        other trims of the same reads look like; validation and prediction read the reads as
        they are.  (One trim per view for the whole table, as a primer cuts a table, did no
        better on the one development split measured: bench/results/retrim-heads-stored-zeros.md.)"""
        tokens = np.asarray(self.data.builder.feature_tokens).astype(np.int64)
        views = [self.asv_cache]
        for v in range(1, TRIM_VIEWS):
            u = uniform((self.cfg.random_seed, TRIM, v), np.arange(len(tokens))[:, None],
                        np.arange(2))
            trimmed = torch.from_numpy(trim_reads(tokens, self.cfg.read_trim, u))
            views.append(self.model.asv_vectors(trimmed.to(self.device)))
        return torch.stack(views)

    def _pick_views(self, batch, t, key):
        """(ASV vectors of this batch's unique ASVs, each from a view drawn per ASV and step,
        and the batch re-indexed to read them)."""
        u = batch.unique_features
        v = np.floor(uniform(key + (TRIM,), u) * len(self.trim_views)).astype(np.int64)
        cache = self.trim_views[torch.from_numpy(v).to(self.device), t.unique_features]
        return cache, dataclasses.replace(t, unique_features=torch.arange(len(u),
                                                                          device=self.device))

    def _run(self, t, train: bool, asv_cache=None):
        fwd = self.forward if train else self.model
        asv_cache = self.asv_cache if asv_cache is None else asv_cache
        with autocast(self.device, self.precision):
            try:
                out = fwd(t, asv_cache=asv_cache)
            except Exception as e:
                if fwd is self.eager or fwd is self.model or not self.cfg.compile:
                    raise
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); running eagerly.")
                self.forward = fwd = self.eager
                out = fwd(t, asv_cache=asv_cache)
        total, parts = self._losses(out, t)
        return out, total, parts

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int, bar=None):
        cfg, b = self.cfg, self.data.builder
        self.model.train()
        if self.frozen:
            for m in self.model.base_modules():
                m.eval()
        rng = np.random.default_rng([cfg.random_seed, epoch])
        rows = self.data.train_rows[rng.permutation(len(self.data.train_rows))]
        sums, n_seen, nuc_acc = {}, 0, []
        accum = cfg.gradient_accumulation_steps
        slices = self._batch_slices(len(rows))
        self.opt.zero_grad(set_to_none=True)
        for i, (lo, hi) in enumerate(slices):
            if self.out_of_steps():
                break
            # keyed on (seed, epoch, step): the same draws per sample / ASV on any world size;
            # the distance block is the global batch's, for the pair loss over gathered rows
            batch = b.build(self._share(rows[lo:hi]), (cfg.random_seed, epoch, i),
                            mask=self.use_nuc, distance_rows=rows[lo:hi], trim=not self.frozen)
            t = self._to_device(batch)
            cache = None
            if self.trim_views is not None:
                cache, t = self._pick_views(batch, t, (cfg.random_seed, epoch, i))
            out, total, parts = self._run(t, train=True, asv_cache=cache)
            if not self._all_finite(total):
                self._skip(f"loss is {total.item()}")
                continue
            self.scaler.scale(total / accum).backward()
            if ((i + 1) % accum == 0 or i + 1 == len(slices)) and not self._optimizer_step():
                continue
            self.state["nan_steps"] = 0
            n = hi - lo
            n_seen += n
            for k, v in [("loss", total)] + list(parts.items()):
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            if "nuc_logits" in out:
                nuc_acc.append(L.nucleotide_accuracy(out["nuc_logits"].detach(), out["nuc_targets"]))
            if bar is not None:
                bar.update(n)
                bar.set_postfix(self._postfix(sums, n_seen, nuc_acc), refresh=False)
        if nuc_acc:
            sums["nuc_accuracy"] = float(np.nanmean(nuc_acc)) * n_seen
        if self.world > 1:   # metrics of the global batch: sum over ranks
            keys = sorted(sums)
            v = torch.tensor([sums[k] for k in keys] + [n_seen], dtype=torch.float64)
            dist.all_reduce(v)
            sums, n_seen = dict(zip(keys, v[:-1].tolist())), v[-1].item()
        return {f"train_{k}": v / max(1, n_seen) for k, v in sums.items()}

    def _all_finite(self, total) -> bool:
        """Whether this step's loss is finite (on every rank: all must agree to skip)."""
        finite = torch.isfinite(total.detach())
        if self.world > 1:
            f = finite.float().to(self.device)
            dist.all_reduce(f, op=dist.ReduceOp.MIN)
            finite = f > 0
        return bool(finite)

    def _optimizer_step(self) -> bool:
        """Clip and apply the accumulated gradients (False: their norm was not finite and the
        step is skipped), then advance the schedule."""
        cfg = self.cfg
        self.scaler.unscale_(self.opt)
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad],
            cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
        if hasattr(norm, "full_tensor"):       # FSDP: a sharded (DTensor) norm
            norm = norm.full_tensor()
        if not torch.isfinite(norm) and self.precision != "fp16":
            self.opt.zero_grad(set_to_none=True)
            self._skip(f"gradient norm is {norm.item()}")
            return False
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if not isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.sched.step()
        self.state["step"] += 1
        return True

    def _postfix(self, sums, n, nuc_acc):
        """The progress bar's running means, named as the history names them."""
        p = {"loss": f"{sums.get('loss', 0) / max(1, n):.4f}",
             "lr": f"{self.opt.param_groups[0]['lr']:.2e}"}
        for part in ("pair", "nuc", "target"):
            if part in sums:
                p[part] = f"{sums[part] / n:.4f}"
        if "nuc" in sums:
            p["nuc_accuracy"] = f"{np.nanmean(nuc_acc):.3f}"
        return p

    def _skip(self, why: str):
        self.state["nan_steps"] += 1
        self.state["skipped_steps"] += 1
        warnings.warn(f"skipping a training step: {why} "
                      f"({self.state['nan_steps']} in a row)")
        if self.state["nan_steps"] >= self.cfg.max_nan_steps:
            raise FloatingPointError(
                f"Training diverged: {self.state['nan_steps']} consecutive steps had a non-finite "
                f"loss or gradient ({why}). Lower the learning rate (now {self.cfg.learning_rate}), "
                "use precision 'fp32', or check the inputs for extreme values.")

    @torch.no_grad()
    def evaluate(self, rows, epoch: int = 0) -> dict:
        """Losses and task metrics on ``rows`` (the whole set at once for distances)."""
        if len(rows) == 0:
            return {}
        self.model.eval()
        b, cfg = self.data.builder, self.cfg
        key = (cfg.random_seed, 1_000_003)       # the same masks every batch and epoch
        sums, n_seen, embs, preds, targets, offset = {}, 0, [], [], [], 0.0
        for batch in b.batches(rows, max(2, cfg.batch_size), key, mask=self.use_nuc):
            t = self._to_device(batch)
            with autocast(self.device, self.precision):
                out = self.model(t, asv_cache=self.asv_cache)
            emb, offset = out["learned_embedding"], out["learned_offset"]       # what training fits (and selects on)
            embs.append(emb.float().cpu().numpy())
            offset = float(offset)
            if self.use_target:
                key = "head_predictions" if self.data.folds is not None else "prediction"
                preds.append(out[key].float().cpu())
                targets.append(batch.targets)
            _, parts = self._losses(out, t, pair=False, target=False)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * batch.size
            n_seen += batch.size
        res = {f"val_{k}": v / n_seen for k, v in sums.items()}
        emb = np.concatenate(embs)
        if self.use_pair:
            keep = capped_rows(len(rows))
            d, D = known_pairs(emb[keep], b.distances.block(rows[keep]), offset)
            res["val_pair"] = float(np.mean((d - D) ** 2)) if len(D) else 0.0
            res["val_unifrac_r2"] = r2_score(D, d) if len(D) > 1 else float("nan")
        if self.use_target:
            p, y = torch.cat(preds), np.concatenate(targets)
            yt = torch.as_tensor(y, dtype=torch.float32 if self.data.task == "regression"
                                 else torch.long)
            if self.data.folds is not None:
                # head k is monitored on its stopping fold; each row is scored (val_target,
                # the metrics) by the head of its own fold, which never saw it
                K = self.model.cfg.ensemble
                fold = torch.as_tensor(self.data.folds[rows])
                res["val_head_targets"] = [
                    float(self._target_loss(p[on, k], yt[on])) if bool(on.any()) else
                    float("nan") for k in range(K) for on in [fold == stopping_fold(k, K)]]
                p = p[torch.arange(len(p)), fold]
            res["val_target"] = float(self._target_loss(p, yt))
            p = p.numpy()
            if self.data.task == "regression":
                dec = self.data.decode or (lambda v: v)
                res["val_mae"], res["val_r2"] = mae(dec(y), dec(p)), r2_score(dec(y), dec(p))
            else:
                k = p.shape[1]
                res["val_accuracy"] = accuracy(y, p.argmax(1))
                res["val_f1"] = macro_f1(y, p.argmax(1), k)
        res["val_loss"] = self.weighted_total({k: res[f"val_{k}"] for k in ("pair", "nuc", "target")
                                               if f"val_{k}" in res})
        return res

    def _monitor(self, rec: dict) -> float:
        """What early stopping and best-weights selection minimise: the target loss alone
        when there is a target (an auxiliary loss that keeps falling must not mark a worse
        predictor as best), else the whole validation loss; training loss without a
        validation set."""
        key = "target" if self.use_target else "loss"
        return rec.get(f"val_{key}", rec.get(f"train_{key}", float("nan")))

    def out_of_steps(self) -> bool:
        return bool(self.cfg.max_steps) and self.state["step"] >= self.cfg.max_steps

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool = True) -> list[dict]:
        cfg = self.cfg
        restored = self.checkpoints.resume(self.opt, self.sched, self.scaler) if resume else None
        if restored is None:
            torch.manual_seed(cfg.random_seed)
        else:
            self.state, self.best_state = restored
        monitor_rows = self.data.val_rows if len(self.data.val_rows) else None
        from tqdm.auto import tqdm
        start = self.state["epoch"]
        for epoch in range(start, cfg.epochs):
            t0 = time.time()
            bar = None
            if cfg.progress and self.rank == 0:
                bar = tqdm(total=len(self.data.train_rows), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           file=sys.stderr, leave=False, dynamic_ncols=True)
            rec = {"epoch": epoch + 1}
            rec.update(self.train_epoch(epoch, bar))
            if bar is not None:
                bar.close()
            if monitor_rows is not None:
                rec.update(self.evaluate(monitor_rows, epoch))
            rec["lr"] = self.opt.param_groups[0]["lr"]
            rec["seconds"] = time.time() - t0
            heads = rec.pop("val_head_targets", None)
            monitor = self._monitor(rec)
            if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.sched.step(monitor)
            self.best_state, rec["best"] = self.checkpoints.keep_best(
                self.state, self.best_state, heads if heads is not None else [monitor])
            self.state["history"].append(rec)
            self.state["epoch"] = epoch + 1
            if self.writer is not None:
                for k, v in rec.items():
                    self.writer.add_scalar(k, v, epoch + 1)
            if self.rank == 0 and cfg.progress:
                shown = {k: v for k, v in rec.items() if k != "epoch"}
                print(f"epoch {epoch + 1}: " + " ".join(
                    f"{k}={v:.4g}" for k, v in shown.items()), file=sys.stderr)
            self.checkpoints.save(self.opt, self.sched, self.scaler, self.state,
                                  self.best_state)
            if self.out_of_steps():
                break
            if cfg.patience and min(self.state["bad_epochs"]) >= cfg.patience:
                if self.rank == 0 and cfg.progress:
                    print(f"early stop: no improvement for {cfg.patience} epochs", file=sys.stderr)
                break
        if self.best_state is not None:
            self.checkpoints.load_model_state(self.best_state)
        if self.writer is not None:
            self.writer.close()
        return self.state["history"]

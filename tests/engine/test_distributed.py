"""DDP on CPU (gloo, 2 processes): the pairwise UniFrac loss over the GLOBAL batch, its
gradients, and a few training steps equal a single process on the same global batch."""
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aam_engine.config import ModelConfig, TrainConfig
from aam_engine.data import BatchBuilder
from aam_engine.data.simulate import simulate
from aam_engine.data.table import SampleTable
from aam_engine.models import AAM
from aam_engine.training import TaskData, Trainer
from aam_engine.training import losses as L
from aam_engine.training.distributed import gather_with_grad

MC = ModelConfig(task="regression", embedding_dim=16, attention_heads=2, attention_layers=1,
                 max_bp=40, token_limit=16, dropout=0.0, freeze_base=False,   # every weight trains
                 stack="heads")

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


def _data():
    d = simulate(n_samples=16, n_features=30, seq_length=40, seed=11)
    table = SampleTable.from_arrays(d.counts, d.sample_ids, d.feature_ids,
                                    dict(zip(d.feature_ids, d.sequences)))
    x = np.random.default_rng(0).random((16, 3))
    dist_m = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float32)
    y = np.asarray(d.metadata["age"], np.float32)
    return table, dist_m, (y - y.mean()) / y.std()


def _builder():
    """Samples hold 13-24 ASVs for a token limit of 16: 'sample' selection draws, keyed per
    sample, so world 2 must draw what world 1 draws."""
    table, dm, y = _data()
    return BatchBuilder(table, 16, 40, selection="sample", distances=dm, targets=y)


def _init(rank, world, path):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)


def _loss_and_grads(model, tensors, dist_m, world, rank):
    """Pairwise + target loss of this rank's share; grads averaged like DDP."""
    out = model(tensors)
    emb = out["learned_embedding"]             # what training fits
    if world > 1:
        emb = gather_with_grad(emb)
    loss = L.pairwise_loss(emb, dist_m) + L.regression_loss(out["prediction"], tensors.targets)
    loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.clone()
        if world > 1:
            dist.all_reduce(g)
            g /= world
        grads[n] = g
    return loss.detach(), grads


def _worker_grads(rank, world, path, outdir):
    _init(rank, world, path)
    torch.manual_seed(0)
    model = AAM(MC)
    tr = Trainer.__new__(Trainer)           # the trainer's share of a global batch
    tr.world, tr.rank = world, rank
    local = _builder().build(Trainer._share(tr, np.arange(8)), distance_rows=np.arange(8))
    loss, grads = _loss_and_grads(model, local.to_torch(), torch.as_tensor(local.distances),
                                  world, rank)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, os.path.join(outdir, "ddp.pt"))
    dist.barrier()          # nobody tears down while a peer is still talking
    dist.destroy_process_group()


def _worker_train(rank, world, path, outdir, batch_size, strategy="ddp", ckpt=None):
    _init(rank, world, path)
    b = _builder()
    torch.manual_seed(0)
    model = AAM(MC)
    cfg = TrainConfig(epochs=2, batch_size=batch_size, learning_rate=1e-3, nuc_penalty=0,
                      progress=False, validation_fraction=0, warmup_steps=0, random_seed=3,
                      strategy=strategy)
    trainer = Trainer(model, TaskData(b, np.arange(16), np.array([], int), "regression"), cfg,
                      checkpoint_dir=ckpt)
    trainer.fit()
    state = trainer.checkpoints.export_model().state_dict()
    if rank == 0:
        torch.save(state, os.path.join(outdir, "ddp_model.pt"))
    dist.barrier()          # nobody tears down while a peer is still talking
    dist.destroy_process_group()


def _spawn(fn, *args):
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(fn, args=(2, os.path.join(tmp, "rdzv")) + args, nprocs=2, join=True)


def test_gathered_pairwise_loss_and_grads_equal_single_process(tmp_path):
    _spawn(_worker_grads, str(tmp_path))
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    torch.manual_seed(0)
    model = AAM(MC)
    b = _builder().build(list(range(8)))
    # single process: the target loss is a mean over all 8; DDP averages two means of 4
    loss, grads = _loss_and_grads(model, b.to_torch(), torch.as_tensor(b.distances), 1, 0)
    pair_single = L.pairwise_loss(model(b.to_torch())["embedding"], torch.as_tensor(b.distances))
    assert torch.isfinite(pair_single)
    assert set(grads) == set(ddp["grads"])
    for n, g in grads.items():
        torch.testing.assert_close(ddp["grads"][n], g, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_training_world2_equals_world1(tmp_path, strategy):
    ckpt = str(tmp_path / "ck")
    _spawn(_worker_train, str(tmp_path), 4, strategy, ckpt)
    ddp = torch.load(tmp_path / "ddp_model.pt", weights_only=True)
    # the checkpoint holds full tensors: a single process loads it, whatever the strategy
    ck = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    AAM(MC).load_state_dict(ck["model"])
    b = _builder()
    torch.manual_seed(0)
    model = AAM(MC)
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, nuc_penalty=0, progress=False,
                      validation_fraction=0, warmup_steps=0, random_seed=3)
    Trainer(model, TaskData(b, np.arange(16), np.array([], int), "regression"), cfg).fit()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=1e-5, rtol=1e-4, msg=k)


def test_api_devices_spawns_workers_and_returns_rank0_model(example):
    """`devices=2` on CPU: two gloo processes on this node; same model as one process with
    the same global batch."""
    from aam_engine import api
    table, dist_m, md = example
    mc = ModelConfig(embedding_dim=16, attention_heads=2, attention_layers=1, max_bp=60,
                     token_limit=24, dropout=0.0, freeze_base=False)   # one model, all weights
    kw = dict(epochs=2, learning_rate=1e-3, nuc_penalty=0, progress=False,
              validation_fraction=0.2, warmup_steps=0, random_seed=4, device="cpu")
    two = api.fit(table, md["age"].to_dict(), "regression", mc,
                  TrainConfig(batch_size=4, devices=2, **kw),
                  options=api.Options(distances=(table.sample_ids, dist_m)))
    one = api.fit(table, md["age"].to_dict(), "regression", mc,
                  TrainConfig(batch_size=8, devices=1, **kw),
                  options=api.Options(distances=(table.sample_ids, dist_m)))
    for k, v in one.state_dict.items():
        torch.testing.assert_close(two.state_dict[k], v, atol=1e-5, rtol=1e-4)
    assert two.extra["validation"]["sample_ids"] == one.extra["validation"]["sample_ids"]
    assert len(two.history) == 2

"""Node-shared training data (data.shared, training.distributed.node_shared): the big arrays of a
table and a distance source are written once and memory-mapped read-only by every process of a
node instead of being copied into each."""
import os
import tempfile

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from aam_engine.data import BatchBuilder, MatrixDistances, shared
from aam_engine.data.simulate import simulate
from aam_engine.data.table import SampleTable


def _table(n=300, f=400):
    d = simulate(n_samples=n, n_features=f, seq_length=40, seed=3)
    return SampleTable.from_arrays(d.counts, d.sample_ids, d.feature_ids,
                                   dict(zip(d.feature_ids, d.sequences)))


def test_dump_load_maps_big_arrays_read_only(tmp_path):
    table = _table(f=2000)               # tokens 2000 x 41 bytes: above shared.MIN_BYTES
    table.tokens(40)
    m = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    obj = (table, MatrixDistances(m), np.arange(5))
    path = shared.dump(obj, str(tmp_path))
    t2, d2, small = shared.load(path)
    assert (t2.counts != table.counts).nnz == 0 and t2.sample_ids == table.sample_ids
    np.testing.assert_array_equal(t2.tokens(40), table.tokens(40))
    np.testing.assert_array_equal(d2.block([3, 7]), m[np.ix_([3, 7], [3, 7])])
    # the matrix, the table's tokens and its CSR data are mapped, not copied; small ones inline
    assert shared.is_shared(d2.matrix) and shared.is_shared(t2.tokens(40))
    assert shared.is_shared(t2.counts.data)
    assert not shared.is_shared(small)
    with pytest.raises(ValueError):
        d2.matrix[0, 0] = 1.0                       # read-only: no process can change it
    # batches build from the mapped copy exactly as from the original
    a = BatchBuilder(table, 16, 40, distances=MatrixDistances(m)).build([1, 4, 9])
    b = BatchBuilder(t2, 16, 40, distances=d2).build([1, 4, 9])
    for k in ("unique_features", "tokens", "counts", "distances"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_dumping_a_mapped_object_again_writes_no_new_array(tmp_path):
    path = shared.dump(MatrixDistances(np.ones((200, 200), np.float32)), str(tmp_path))
    n_files = len(os.listdir(tmp_path))
    again = shared.load(path)
    assert shared.array_bytes(again) > 0
    shared.dump(again, str(tmp_path))
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npy")]) == 1
    assert len(os.listdir(tmp_path)) == n_files + 1        # one more pickle, no array


def test_shared_copy_removes_its_files_also_on_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AAM_SHARE_DIR", str(tmp_path))
    with shared.shared_copy(np.zeros(100_000)) as p:
        assert os.path.exists(p) and shared.load(p).shape == (100_000,)
    with pytest.raises(RuntimeError):
        with shared.shared_copy(np.zeros(100_000)):
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_unwritable_share_dir_says_what_to_set(tmp_path):
    with pytest.raises(OSError, match="AAM_SHARE_DIR"):
        shared.dump(np.zeros(100_000), str(tmp_path / "missing"))


def _node_worker(rank, world, rdzv, share, out, fail):
    os.environ.update(LOCAL_RANK=str(rank), AAM_SHARE_DIR=share)
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    from aam_engine.training.distributed import node_scope, node_shared
    calls = []

    def build():
        calls.append(rank)
        if fail:
            raise ValueError("bad table on local rank 0")
        return _table(120, 200)

    try:
        with node_scope():
            try:
                table = node_shared(build)
            except ValueError as e:
                np.save(os.path.join(out, f"error{rank}.npy"), np.array(str(e)))
                table = None
            if table is not None:
                np.save(os.path.join(out, f"r{rank}.npy"), np.array(
                    [shared.is_shared(table.counts.data), len(calls), table.counts.sum()]))
            dist.barrier()
            np.save(os.path.join(out, f"inside{rank}.npy"), np.array(len(os.listdir(share))))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
@pytest.mark.parametrize("fail", [False, True])
def test_node_shared_builds_once_per_node_and_cleans_up(tmp_path, fail):
    """As under torchrun on one node: local rank 0 builds the table, both ranks map that one
    copy; an error there reaches every rank; the share directory goes with the scope."""
    share = tmp_path / "share"
    share.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_node_worker, args=(2, os.path.join(tmp, "rdzv"), str(share), str(tmp_path),
                                     fail), nprocs=2, join=True)
    if fail:
        for r in (0, 1):
            assert "bad table" in str(np.load(tmp_path / f"error{r}.npy"))
    else:
        r0, r1 = np.load(tmp_path / "r0.npy"), np.load(tmp_path / "r1.npy")
        assert r0[0] == 1 and r1[0] == 1        # both mapped from the node's files
        assert r0[1] == 1 and r1[1] == 0        # built by local rank 0 only
        assert r0[2] == r1[2]
        assert np.load(tmp_path / "inside0.npy") == 1      # one share directory while running
    assert os.listdir(share) == []              # and none left after


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_torchrun_cli_pretrains_on_node_shared_data(tmp_path):
    """The cluster path end to end: `torchrun --nproc_per_node 2 -m aam_engine.cli pretrain`
    reads the table once per node, trains, clusters the reads once per node, rank 0 writes
    the model, no share files remain."""
    import shutil
    import subprocess
    import sys

    from aam_engine.data.simulate import write_example_data
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    ex = write_example_data(tmp_path / "ex", n_samples=24, n_features=40, seq_length=40)
    share = tmp_path / "share"
    share.mkdir()
    env = dict(os.environ, AAM_SHARE_DIR=str(share), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "aam_engine.cli", "pretrain",
         "--table", str(ex["table"]), "--sequences", str(ex["sequences"]), "--tree", str(ex["tree"]),
         "--output", str(tmp_path / "enc"), "--embedding-dim", "16", "--attention-heads", "2",
         "--attention-layers", "1", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
         "--progress", "false"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "enc").is_dir() and any((tmp_path / "enc").iterdir())
    assert os.listdir(share) == []
    from aam_engine.io import read_model_dir     # its clusters, computed once on the node
    centres = np.asarray(read_model_dir(tmp_path / "enc").extra["clusters"]["centres"])
    assert centres.shape[1] == 16 and len(centres) > 1

"""Big read-only arrays shared by the processes of one node instead of copied into each.

``dump(obj, directory)`` pickles an object graph (a SampleTable, a distance source, targets...)
with every numpy array of at least MIN_BYTES written to its own .npy file; ``load(path)``
unpickles it with those arrays memory-mapped read-only.  Processes that load the same files map
the same pages (tmpfs under /dev/shm, else the page cache), so a node holds the data once, not
once per process.  scipy sparse matrices pickle their data / indices / indptr arrays, so a CSR
table or BatchUniFrac's branch profiles share too; Python objects (ID lists, sequences) stay
per process and are small beside them.

One mechanism for both launchers: torch.multiprocessing.spawn (the parent dumps, the workers
load; training.distributed.run_on_node) and torchrun (local rank 0 dumps, every local rank
loads; training.distributed.node_shared).  The pickles are this run's own files in a private
(0700) directory, never anyone else's input.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import shutil
import tempfile
import uuid

import numpy as np

MIN_BYTES = 1 << 16        # smaller arrays travel inside the pickle
SHM = "/dev/shm"


def is_shared(a) -> bool:
    """Whether ``a`` is (a view of) an array mapped from a file by :func:`load`."""
    while isinstance(a, np.ndarray):
        if isinstance(a.base, mmap.mmap):
            return True
        a = a.base
    return False


class _Writer(pickle.Pickler):
    """Pickler that writes big arrays to ``directory`` (or, without one, only adds up their
    bytes); an array already mapped from a file of ``directory`` is named, not written again."""

    def __init__(self, file, directory=None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.directory, self.names, self.nbytes = directory, {}, 0

    def persistent_id(self, obj):
        if (type(obj) not in (np.ndarray, np.memmap) or obj.dtype.hasobject
                or obj.nbytes < MIN_BYTES):
            return None
        if id(obj) in self.names:
            return self.names[id(obj)]
        if (isinstance(obj.base, mmap.mmap) and self.directory is not None
                and os.path.dirname(obj.filename) == self.directory):
            pid = ("npy", os.path.basename(obj.filename))     # the whole file, already here
        else:
            pid = ("npy", f"{uuid.uuid4().hex}.npy")
            self.nbytes += obj.nbytes
            if self.directory is not None:
                np.save(os.path.join(self.directory, pid[1]), obj, allow_pickle=False)
        self.names[id(obj)] = pid
        return pid


class _Reader(pickle.Unpickler):
    def __init__(self, file, directory):
        super().__init__(file)
        self.directory = directory

    def persistent_load(self, pid):
        kind, name = pid
        if kind != "npy" or os.path.basename(name) != name:
            raise pickle.UnpicklingError(f"unexpected shared array reference {pid!r}")
        return np.load(os.path.join(self.directory, name), mmap_mode="r")


class _Sink:
    def write(self, b):
        return len(b)


def array_bytes(obj) -> int:
    """Bytes :func:`dump` would write for ``obj``'s big arrays."""
    w = _Writer(_Sink())
    w.dump(obj)
    return w.nbytes


def dump(obj, directory) -> str:
    """Write ``obj`` to ``directory`` (big arrays as .npy files); the path to :func:`load`."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, f"{uuid.uuid4().hex}.pkl")
    try:
        with open(path, "wb") as fh:
            _Writer(fh, directory).dump(obj)
    except OSError as e:
        raise OSError(f"Could not write shared training data to {directory} ({e}). Set "
                      "AAM_SHARE_DIR to a writable node-local directory with room for it.") from e
    return path


def load(path):
    """The object :func:`dump` wrote, its big arrays memory-mapped read-only."""
    with open(path, "rb") as fh:
        return _Reader(fh, os.path.dirname(os.path.abspath(path))).load()


def share_root(nbytes: int) -> str:
    """Where shared arrays go: $AAM_SHARE_DIR; else /dev/shm (memory, never written to disk)
    when it has room for twice ``nbytes``; else the temporary directory (a file there is
    still mapped once per node, through the page cache)."""
    if os.environ.get("AAM_SHARE_DIR"):
        return os.environ["AAM_SHARE_DIR"]
    try:
        st = os.statvfs(SHM)
        if os.access(SHM, os.W_OK) and st.f_bavail * st.f_frsize > 2 * nbytes + (64 << 20):
            return SHM
    except OSError:
        pass
    return tempfile.gettempdir()


def make_dir(nbytes: int) -> str:
    """A new private directory for shared arrays (the caller removes it: :func:`remove`)."""
    return tempfile.mkdtemp(prefix="aam-share-", dir=share_root(nbytes))


def remove(directory):
    """Delete a directory of shared arrays; processes that mapped them keep their pages until
    they let go of the arrays (POSIX unlink semantics)."""
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def shared_copy(obj):
    """(path to load ``obj`` from, with its big arrays shared); the files are removed on exit,
    also on error."""
    directory = make_dir(array_bytes(obj))
    try:
        yield dump(obj, directory)
    finally:
        remove(directory)

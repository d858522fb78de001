"""The benchmarks' split discipline (bench/datasets.py): a report split is never one that
development drew, on a real dataset small enough to repeat splits (pd-mice: six cages)."""
import importlib.util
from pathlib import Path

from ..conftest import shared_data


def bench_datasets():
    """bench/datasets.py as a module of its own name (bench/ is not put on sys.path: its
    module names, e.g. tables, would shadow installed packages for every later test)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "datasets.py"
    spec = importlib.util.spec_from_file_location("aam_bench_datasets", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_splits_skip_every_development_split():
    shared_data("pd-mice")
    ds = bench_datasets()
    table, md = ds.load("pd-mice")
    dev = {frozenset(te) for _, _, te in ds.splits("pd-mice", table, md, ds.DEV_SEEDS)}
    report, passed = ds.report_splits("pd-mice", table, md)
    tests = [frozenset(te) for _, _, te in report]
    assert len(tests) == ds.REPORT_SPLITS and len(set(tests)) == len(tests)
    assert not dev & set(tests)
    assert passed > 0          # pd-mice's seeds 100-104 do redraw development splits
    cages = ds.unit("pd-mice", md)
    for _, train, test in report:      # whole cages on one side
        assert not {cages[s] for s in train} & {cages[s] for s in test}

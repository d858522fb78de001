import os
import warnings
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not SHARED.exists():
    SHARED = Path(os.environ.get("AAM_SHARED_DATA", "/work/shared/data"))


def shared_data(name: str) -> Path:
    """Path to a real dataset in ../shared/data, or skip the test with the reason."""
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"real dataset {name!r} not found at {p} (../shared/data is absent)")
    return p


def qza_biom(path):
    """The biom.Table inside a FeatureTable .qza, read without qiime2."""
    from aam_engine.data.table import read_biom
    return read_biom(path)


@pytest.fixture(scope="session")
def example_paths(tmp_path_factory):
    from aam_engine.data.simulate import write_example_data
    return write_example_data(tmp_path_factory.mktemp("example"), n_samples=40, n_features=80,
                              seq_length=60, seed=3)


@pytest.fixture(scope="session")
def example(example_paths):
    """(table, distances aligned to table, metadata DataFrame) of the simulated example."""
    import pandas as pd
    from aam_engine.data import compute_unifrac, load_biom, read_fasta
    table = load_biom(example_paths["table"], read_fasta(example_paths["sequences"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, dist = compute_unifrac(table, example_paths["tree"])
    md = pd.read_csv(example_paths["metadata"], sep="\t", index_col=0, comment=None,
                     skiprows=[1], dtype={"sample-id": str})
    return table, dist, md


def pytest_addoption(parser):
    parser.addoption("--untrained", action="store_true",
                     help="learning tests train with learning rate 1e-12 (training switched "
                          "off): each of them must then FAIL")


@pytest.fixture(scope="session")
def learning_rate(request):
    """The learning rate of the learning tests: the default, or ~0 under --untrained, where
    the stack's learners also learn nothing (each predicts the class it saw most, or the mean
    value: the constant learner of aam_engine.fit.estimators)."""
    if not request.config.getoption("--untrained"):
        return 1e-3
    from aam_engine.fit import components, estimators

    def nothing(X, y, n_classes, *args):
        if n_classes:
            y = np.full(len(y), np.bincount(y).argmax())
        return estimators.constant(y, np.asarray(X).shape[1], n_classes)
    patch = pytest.MonkeyPatch()
    for name in components.LEARNERS:
        patch.setitem(components.LEARNERS, name, nothing)
    request.addfinalizer(patch.undo)
    return 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def require_qiime2():
    """QIIME 2, imported.  A machine where it is missing or broken fails the plugin tests,
    unless AAM_ENGINE_ONLY=1 declares an engine-only machine (then they skip, saying so)."""
    if os.environ.get("AAM_ENGINE_ONLY") == "1":
        return pytest.importorskip("qiime2", reason="AAM_ENGINE_ONLY=1: an engine-only machine")
    import qiime2
    return qiime2


# ---------------------------------------------------------------------------- no silent skips
# A skipped test fails the run unless tests/skip_allowlist.txt names it (with its reason), or
# AAM_ENGINE_ONLY=1 declares an engine-only machine, or AAM_ALLOW_SKIPS=1 is set by hand.
ALLOWLIST = Path(__file__).with_name("skip_allowlist.txt")
_skipped = []


def _allowed():
    rows = [l.split("|", 1) for l in ALLOWLIST.read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    return [r[0].strip() for r in rows]


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):     # an expected failure is no skip
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("AAM_ALLOW_SKIPS") == "1" or os.environ.get("AAM_ENGINE_ONLY") == "1":
        return
    allowed = _allowed()
    unexpected = [(n, r) for n, r in _skipped if not any(a in n for a in allowed)]
    if unexpected and exitstatus == 0:
        print(f"\n{len(unexpected)} test(s) skipped outside tests/skip_allowlist.txt "
              "(a skip is a failure here):")
        for n, r in unexpected:
            print(f"  {n}: {r}")
        session.exitstatus = 1

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


@pytest.fixture
def rng():
    return np.random.default_rng(0)

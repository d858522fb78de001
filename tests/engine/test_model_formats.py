"""Every model format version that today's engine reads has a stored example, written by the
engine of that version (tests/data/model_formats/make_example.py, run at the commit that last
wrote it): today's reader must load it and compute the same numbers that engine computed."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aam_engine import FORMAT_VERSION, api
from aam_engine.io.model_dir import READABLE_VERSIONS, validate_model_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "model_formats"


def stored(version):
    d = EXAMPLES / version
    table = api.SampleTable.from_dataframe(pd.read_csv(d / "table.tsv", sep="\t", index_col=0))
    return d, table, json.loads((d / "expected.json").read_text())


def test_every_readable_version_has_a_stored_example():
    have = sorted(p.name for p in EXAMPLES.iterdir() if (p / "expected.json").exists())
    assert set(READABLE_VERSIONS) <= set(have), sorted(set(READABLE_VERSIONS) - set(have))
    assert FORMAT_VERSION in READABLE_VERSIONS


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_a_stored_model_of_each_version_reads_and_computes_what_its_engine_did(version):
    d, table, expected = stored(version)
    assert expected["format_version"] == version
    encoder = api.read_model_dir(d / "encoder")
    ids, emb = api.embed(encoder, table, device="cpu")
    assert list(ids) == expected["samples"]
    np.testing.assert_allclose(api.embedding_distances(encoder, emb), expected["distances"],
                               rtol=1e-4, atol=1e-5)
    clf = api.read_model_dir(d / "classifier")
    _, labels, proba, classes = api.predict(clf, table, device="cpu")
    assert list(classes) == expected["classes"]
    np.testing.assert_allclose(proba, expected["probabilities"], rtol=1e-4, atol=1e-5)
    # classifiers before 2.8 predicted the most probable class, and still do
    old = tuple(map(int, version.split("."))) < (2, 8)
    assert (clf.model_config.decision == "probable") == old
    if old:
        assert labels == [classes[i] for i in np.asarray(proba).argmax(1)]
    # and the encoder, read, fits a new head (it is a usable starting point, not only readable)
    targets = {sid: "ab"[i % 2] for i, sid in enumerate(table.sample_ids)}
    head = api.fit(table, targets, "classification", api.ModelConfig(ensemble=1),
                   api.TrainConfig(epochs=1, batch_size=8, progress=False,
                                   compare_baselines=False), encoder=encoder)
    assert head.model_config.embedding_dim == encoder.model_config.embedding_dim


@pytest.mark.parametrize("version", sorted(p.name for p in EXAMPLES.iterdir()
                                           if p.is_dir() and p.name.startswith("1.")))
def test_a_model_of_a_format_that_cannot_be_upgraded_names_its_version_and_how_to_refit(version):
    d, _, _ = stored(version)
    for kind in ("encoder", "classifier"):
        with pytest.raises(ValueError, match=rf"format {version}.*[Rr]efit"):
            validate_model_dir(d / kind)
        with pytest.raises(ValueError, match=rf"format {version}.*[Rr]efit"):
            api.read_model_dir(d / kind)


@pytest.mark.parametrize("part,name,value", [("model", "sample_norm", True),
                                             ("model", "count_head", True),
                                             ("training", "rarefied_copies", 1)])
def test_a_model_trained_with_a_retired_setting_says_so_and_how_to_refit(part, name, value,
                                                                         tmp_path):
    """Settings measured and not kept are gone; a stored file with them at their idle value
    reads (above), one trained with them on cannot be read faithfully: refused by name."""
    import shutil
    d = tmp_path / "m"
    shutil.copytree(EXAMPLES / "2.4" / "encoder", d)
    cfg = json.loads((d / "config.json").read_text())
    assert name in cfg[part]                      # that engine wrote it, idle
    cfg[part][name] = value
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"format 2\.4.*{name}={value!r}.*[Rr]efit"):
        api.read_model_dir(d)

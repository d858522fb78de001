"""Which feature blocks carry what pretraining learned, on reads no training sample had: the
synthetic clade table of tests/engine/test_learning.py (a label carried by a clade of the
tree that no k-mer tells apart; test samples hold only reads no training sample holds), an
encoder pretrained on its UniFrac (40 epochs) and the same encoder untrained, learners on
each block (the stack `linear:BLOCK,forest:BLOCK`), accuracy on the test samples.

    python bench/clade_blocks.py        # -> bench/results/clade-blocks.md (about 5 min)
"""
from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tables import commit  # noqa: E402  (bench/tables.py)

BLOCKS = ("clusters", "composition", "relative")


def main() -> int:
    from aam_engine import api
    from aam_engine.config import ModelConfig, TrainConfig
    from tests.engine.test_learning import clade_table
    warnings.simplefilter("ignore")
    t0 = time.time()
    table, dist, labels, train, test = clade_table(Path(tempfile.mkdtemp()))
    size = dict(embedding_dim=32, attention_heads=2, attention_layers=1, token_limit=32)

    def encoder(lr, epochs):
        return api.pretrain(table, ModelConfig(**size),
                            TrainConfig(epochs=epochs, patience=0, progress=False,
                                        learning_rate=lr),
                            distances=(table.sample_ids, dist))

    def accuracy(enc, block):
        m = api.fit(table.subset(train), {s: labels[s] for s in train}, "classification",
                    ModelConfig(**size, stack=f"linear:{block},forest:{block}"),
                    TrainConfig(progress=False, compare_baselines=False), encoder=enc)
        ids, predicted = api.predict(m, table.subset(test))[:2]
        return np.mean([labels[s] == p for s, p in zip(ids, predicted)])
    encoders = {"pretrained": encoder(3e-3, 40), "untrained": encoder(1e-12, 1)}
    rows = [f"| {b} | " + " | ".join(f"{accuracy(e, b):.3f}" for e in encoders.values()) + " |"
            for b in BLOCKS]
    k = len(encoders["pretrained"].extra["clusters"]["centres"])
    text = "\n".join([
        "# Which blocks carry what pretraining learned, on reads never labelled", "",
        f"`python bench/clade_blocks.py`, commit {commit()}, {(time.time() - t0) / 60:.0f} "
        f"min: the clade table of tests/engine/test_learning.py ({table.n_samples} samples, "
        f"{table.n_features} reads; {len(train)} training samples, {len(test)} test samples "
        f"holding only reads no training sample holds; chance 0.5), learners "
        f"`linear:BLOCK,forest:BLOCK` on an encoder pretrained on its UniFrac and on the same "
        f"encoder untrained ({k} clusters of its reads each). Accuracy on the test samples, "
        "one draw.", "",
        "| block | pretrained encoder | untrained encoder |", "|---|---|---|", *rows, ""])
    (ROOT / "bench" / "results" / "clade-blocks.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

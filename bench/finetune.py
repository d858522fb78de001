"""How long a fit takes when it starts from the shipped encoder: ibd-2538's labelled samples
(rarefied to 5,000 reads), Crohn's disease vs control, validation groups = subjects, the
plugin's defaults (five cross-fitted heads on the frozen, cached encoder; then the comparison
with a random forest and an L2 linear model on the same folds), against the same fit that
first pretrains an encoder on the table (10 epochs, CPU size) and a random forest alone.

    python bench/finetune.py            # -> bench/results/finetune.md
"""
from __future__ import annotations

import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer import RESULTS, load, STUDIES  # noqa: E402


def main():
    import torch
    from aam_engine import api, pretrained
    from aam_engine.baselines import rf_q2
    warnings.simplefilter("ignore")
    table, md = load("ibd-2538")
    y = {s: md.at[s, "ibd"] for s in table.sample_ids}
    groups = {s: md.at[s, "host_subject_id"] for s in table.sample_ids}
    rows = []

    def timed(label, fn):
        t0 = time.time()
        out = fn()
        rows.append((label, (time.time() - t0) / 60, out))
        print(f"{label}: {rows[-1][1]:.2f} min", file=sys.stderr)
        return out

    shipped = pretrained.default_encoder()
    tc = dict(progress=False)
    m = timed("AAM from the shipped encoder, defaults (heads + comparison with baselines)",
              lambda: api.fit(table, y, "classification", api.ModelConfig(),
                              api.TrainConfig(**tc), encoder=shipped, groups=groups))
    timed("AAM from the shipped encoder, heads only (compare_baselines off)",
          lambda: api.fit(table, y, "classification", api.ModelConfig(),
                          api.TrainConfig(compare_baselines=False, **tc), encoder=shipped,
                          groups=groups))
    tree = STUDIES["ibd-2538"]["dir"] / STUDIES["ibd-2538"]["tree"]
    timed("AAM pretraining an encoder on the table first, then heads (CPU size, epochs 10 for both)",
          lambda: api.fit(table, y, "classification",
                          api.ModelConfig(preset="cpu"),
                          api.TrainConfig(epochs=10, compare_baselines=False, **tc),
                          tree=tree, groups=groups))
    X = table.counts.toarray()
    lab = np.array([y[s] for s in table.sample_ids])
    timed("random forest (q2-sample-classifier defaults), one fit on every sample",
          lambda: rf_q2(X, lab, X[:1], True))
    head = (f"Fit times on {table.n_samples} samples ({len(set(groups.values()))} subjects) of "
            f"ibd-2538, {time.strftime('%Y-%m-%d')}, {platform.platform()}, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads; `python bench/finetune.py`")
    lines = [head, "", "| what | minutes |", "|---|---|"]
    lines += [f"| {label} | {minutes:.2f} |" for label, minutes, _ in rows]
    lines += ["", f"The defaults' verdict on these samples: {m.extra['baselines']['verdict']}"]
    text = "\n".join(lines) + "\n"
    (RESULTS / "finetune.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

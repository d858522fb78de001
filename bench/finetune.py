"""How long a fit and a prediction take with the defaults, on a table of the size a user
brings: ibd-2538's labelled samples (rarefied to 5,000 reads), Crohn's disease vs control,
grouped by family (bench/datasets.py).  Measured side by side in one run: the default fit
(the stack on the shipped encoder, with the baselines scored on the same folds), the same
without the baselines, with AAM's heads added to the stack, the prediction of every sample,
and a random forest with q2-sample-classifier's defaults fitted once.

    python bench/finetune.py            # -> bench/results/finetune.md (quiet machine)
"""
from __future__ import annotations

import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import rf_q2  # noqa: E402
from datasets import RESULTS, labelled, load, unit  # noqa: E402
from tables import commit  # noqa: E402

STUDY, TARGET = "ibd-2538", "ibd"


def main():
    import torch
    from aam_engine import api
    warnings.simplefilter("ignore")
    table, md = load(STUDY)
    ids, y = labelled(md, TARGET, True, table.sample_ids)
    table = table.subset(ids)
    table = table.filter_features([f for f, n in zip(table.feature_ids,
                                                     np.asarray(table.counts.sum(0)).ravel())
                                   if n > 0])
    groups = {s: g for s, g in unit(STUDY, md).items() if s in set(ids)}
    targets = dict(zip(ids, y))
    rows = []

    def timed(label, fn):
        t0 = time.time()
        out = fn()
        rows.append((label, time.time() - t0))
        print(f"{label}: {rows[-1][1]:.1f} s", file=sys.stderr, flush=True)
        return out
    fit = lambda **kw: api.fit(table, targets, "classification", api.ModelConfig(**kw.pop(
        "model", {})), api.TrainConfig(progress=False, **kw), groups=groups)
    m = timed("fit, the defaults (the stack on the shipped encoder + the baselines on the "
              "same folds)", fit)
    timed("fit, the stack alone (compare_baselines off)", lambda: fit(compare_baselines=False))
    timed("fit, the stack with AAM's heads added (stack + heads)",
          lambda: fit(model={"stack": api.ModelConfig().stack + ",heads"},
                      compare_baselines=False))
    timed(f"predict all {table.n_samples} samples", lambda: api.predict(m, table))
    X = table.counts.toarray()
    timed("random forest (q2-sample-classifier defaults), one fit on every sample",
          lambda: rf_q2(X, np.asarray(y), X[:1], True))
    lines = [f"# Fit and prediction time, {table.n_samples} samples x {table.n_features} ASVs",
             "", f"ibd-2538 ({len(set(groups.values()))} families / subjects), Crohn's disease "
             f"vs control; `python bench/finetune.py`, commit {commit()}, "
             f"{time.strftime('%Y-%m-%d')}, {platform.platform()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads.", "", "| what | seconds |", "|---|---|"]
    lines += [f"| {label} | {seconds:.1f} |" for label, seconds in rows]
    lines += ["", f"The default fit's verdict on these samples: {m.extra['stack']['verdict']}"]
    text = "\n".join(lines) + "\n"
    (RESULTS / "finetune.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

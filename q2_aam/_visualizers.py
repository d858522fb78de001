"""`summarize`: loss curves, validation predictions and the configuration of a model."""

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
import q2templates

from aam_engine.api import (REGRESSION_TIE, ModelBundle, accuracy, constant_fraction,
                            distance_scores, history_tsv, macro_f1, mae, r2_score)

# package data beside this module (pkg_resources is deprecated in current setuptools)
TEMPLATES = str(Path(__file__).resolve().parent / "assets" / "summarize")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plot_history(hist: pd.DataFrame, path):
    plt = _pyplot()
    loss_cols = [c for c in hist.columns if c.endswith(("_loss", "_pair", "_nuc", "_target", "_count"))]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for c in loss_cols:
        ax.plot(hist.index, hist[c], label=c, ls="-" if c.startswith("train") else "--")
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_r2_history(hist: pd.DataFrame, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3))
    ax.plot(hist.index, hist["val_unifrac_r2"], "o-", ms=3)
    ax.axhline(0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("epoch"), ax.set_ylabel("validation UniFrac R²")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_distances(model_d, unifrac, path):
    plt = _pyplot()
    s = distance_scores(model_d, unifrac)
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.scatter(unifrac, model_d, s=6, alpha=0.35, lw=0)
    lo = float(min(np.min(unifrac), np.min(model_d)))
    hi = float(max(np.max(unifrac), np.max(model_d)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("UniFrac distance"), ax.set_ylabel("AAM embedding distance")
    ax.set_title(f"validation pairs: R² = {s['r2']:.3f}\nPearson {s['pearson']:.3f}, "
                 f"Spearman {s['spearman']:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_regression(true, pred, path, name):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, pred, s=14, alpha=0.7)
    lo, hi = float(min(np.min(true), np.min(pred))), float(max(np.max(true), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"true {name}"), ax.set_ylabel(f"predicted {name}")
    const = constant_fraction(pred, REGRESSION_TIE * float(np.std(true)))
    ax.set_title(f"validation: R² = {r2_score(true, pred):.3f}, MAE = {mae(true, pred):.3g}\n"
                 f"{const:.0%} of predictions at the most common value", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_confusion(true, pred, classes, path):
    plt = _pyplot()
    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(true, pred):
        cm[t, p] += 1
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, cm[i, j], ha="center", va="center")
    ax.set_xticks(range(k), classes, rotation=45, ha="right"), ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"validation: accuracy {accuracy(true, pred):.3f}, "
                 f"macro F1 {macro_f1(true, pred, k):.3f}\n"
                 f"{constant_fraction(pred):.0%} of predictions are the most common class",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(output_dir: str, model: ModelBundle) -> None:
    hist = pd.DataFrame(model.history).set_index("epoch") if model.history else pd.DataFrame()
    figures = []
    if len(hist):
        _plot_history(hist, os.path.join(output_dir, "history.png"))
        figures.append(("Training history", "history.png"))
        with open(os.path.join(output_dir, "history.tsv"), "w") as fh:
            fh.write(history_tsv(model.history))
    val = model.extra.get("validation") or {}
    name = model.target.get("name") or "target"
    if "val_unifrac_r2" in hist.columns and hist["val_unifrac_r2"].notna().any():
        _plot_r2_history(hist, os.path.join(output_dir, "unifrac-r2.png"))
        figures.append(("Validation UniFrac R² per epoch, of the embedding's learned part "
                        "(what training fits)", "unifrac-r2.png"))
    const = None
    heads = model.extra.get("cross_fitted_heads", 0)
    folds = max(model.extra.get("folds") or [0]) + 1
    held_out = (f"out of fold: each of {len(val.get('true', []))} samples by the stack fitted "
                f"without its fold, one of {folds}" if model.extra.get("stack") else
                f"out of fold: each of {len(val.get('true', []))} samples by the one of "
                f"{heads} cross-fitted heads that never trained on it" if heads else
                f"{len(val.get('true', []))} held-out samples")
    if model.task == "encoder" and val.get("pairs"):
        _plot_distances(np.array(val["pairs"]["model"]), np.array(val["pairs"]["unifrac"]),
                        os.path.join(output_dir, "distances.png"))
        figures.append((f"Embedding distance against UniFrac ({len(val['sample_ids'])} held-out "
                        f"samples, {len(val['pairs']['model'])} pairs)", "distances.png"))
    if model.task == "regression" and val.get("true"):
        const = constant_fraction(val["predicted"], REGRESSION_TIE * float(np.std(val["true"])))
        _plot_regression(np.array(val["true"]), np.array(val["predicted"]),
                         os.path.join(output_dir, "validation.png"), name)
        figures.append((f"Validation predictions ({held_out})", "validation.png"))
    if model.task == "classification" and val.get("true"):
        const = constant_fraction(val["predicted"])
        _plot_confusion(val["true"], val["predicted"], model.target["classes"],
                        os.path.join(output_dir, "validation.png"))
        figures.append((f"Validation confusion matrix ({held_out})", "validation.png"))
    cfg = {**model.model_config.to_dict(), **model.train_config.to_dict()}
    rows = [(k, html.escape(str(v))) for k, v in cfg.items()]
    final = {k: (f"{v:.4g}" if isinstance(v, float) else v)
             for k, v in (model.history[-1].items() if model.history else [])}
    facts = [("task", model.task), ("samples", model.extra.get("n_samples")),
             ("features", model.extra.get("n_features")),
             ("training / validation samples", f"{len(model.extra.get('train_samples', []))} / "
                                               f"{len(model.extra.get('validation_samples', []))}"
                                               + (f" ({heads}-fold cross-fitted heads: every "
                                                  "sample trains all heads but one, which "
                                                  "validates it)" if heads else "")),
             ("device / precision", f"{model.extra.get('device')} / {model.extra.get('precision')}"),
             ("epochs run", len(model.history)),
             ("skipped (non-finite) steps", model.extra.get("skipped_steps", 0))]
    if const is not None:
        facts.append(("validation predictions equal to the most common one",
                      f"{const:.0%}" + (" (a constant model!)" if const > 0.9 else "")))
    choice = model.extra.get("head_choice")
    if choice:      # heads fitted with and without the k-mer spectrum, the lower loss kept
        loss = {k == str(choice["head_kmer_size"]): v
                for k, v in choice["validation_loss"].items()}
        fmt = lambda v: "none" if v is None else f"{v:.4g}"
        facts.append(("heads read the k-mer spectrum",
                      f"{'yes' if choice['head_kmer_size'] else 'no'}: out-of-fold target loss "
                      f"{fmt(loss.get(True))}, against {fmt(loss.get(False))} the other way"))
    if model.task == "encoder" and val.get("pairs"):
        facts.append(("validation UniFrac R² / Pearson / Spearman of the distances that "
                      "`embed` gives",
                      " / ".join(f"{val.get('unifrac_' + k, float('nan')):.3f}"
                                 for k in ("r2", "pearson", "spearman"))))
        if "learned_unifrac_r2" in val:
            facts.append(("validation UniFrac R² of the embedding's learned part alone "
                          "(without the ASV-set sketch, which needs no training)",
                          f"{val['learned_unifrac_r2']:.3f}"))
    q2templates.render(os.path.join(TEMPLATES, "index.html"), output_dir, context={
        "title": f"AAM {model.task} model", "figures": figures, "config": rows,
        "facts": facts, "final": sorted(final.items()),
        "has_history": bool(len(hist)), **_comparison(model)})


BASELINE_ROWS = (("aam", "AAM"), ("rf_q2", "random forest (100 trees)"),
                 ("l2_linear", "L2 linear model (CLR abundances)"))
METRICS = {"classification": (("accuracy", "accuracy"), ("macro_f1", "macro F1"),
                              ("balanced_accuracy", "balanced accuracy"),
                              ("const", "predictions equal to the most common one")),
           "regression": (("mae", "MAE"), ("r2", "R²"),
                          ("const", "predictions at the most common value"))}
COMPONENT_NAMES = {"linear": "L2 linear model", "forest": "random forest", "clr": "CLR abundances",
                   "relative": "relative abundances",
                   "composition": "the encoder's ASV vectors, abundance-weighted",
                   "clusters": "the encoder's clusters of reads"}


def component_label(name: str) -> str:
    if name == "heads":
        return "AAM prediction heads"
    learner, _, block = name.partition(":")
    return f"{COMPONENT_NAMES[learner]} on {COMPONENT_NAMES[block]} ({name})"


def _fmt(key, v):
    return f"{v:.0%}" if key == "const" else f"{v:.3f}"


def _comparison(model: ModelBundle) -> dict:
    """The fit's out-of-fold report (a stack: every component, the stack, the stack without
    its encoder components, with intervals over groups, and the verdict), or the comparison
    with the baselines of a model of format 2.6 or older."""
    if model.task not in METRICS:
        return {"comparison": None}
    rep = model.extra.get("stack")
    if rep:
        return {"comparison": _stack_table(model, rep)}
    base = model.extra.get("baselines")
    if not base:
        return {"comparison": None}
    cols = METRICS[model.task]
    rows = [(label, [_fmt(k, base[key][k]) for k, _ in cols]) for key, label in BASELINE_ROWS
            if key in base]
    how = ("each sample predicted by the fit (of each model) that did not see it, on the same "
           "folds" if base.get("cross_fitted") else "the same held-out validation samples")
    return {"comparison": {"header": [c for _, c in cols], "rows": rows,
                           "verdict": base["verdict"],
                           "caption": f"AAM against two baselines ({base['samples']} samples; "
                                      f"{how})"}}


def _stack_table(model, rep) -> dict:
    cols = METRICS[model.task]
    main = dict(cols)[rep["metric"]]
    interval = lambda s: "{:.3f} to {:.3f}".format(*s["interval"]) if np.isfinite(
        s["interval"]).all() else "(too few groups)"
    row = lambda label, s, w: (label, [w, interval(s)] + [_fmt(k, s[k]) for k, _ in cols])
    weights = rep.get("weights", {})
    rows = [row("the stack (what the model predicts with)", rep["stack"], "")]
    if "without_encoder" in rep:
        rows.append(row("the stack without its encoder components", rep["without_encoder"], ""))
    for name, s in rep["components"].items():
        w = f"{weights[name]:.2f}" if name in weights else "not in the stack (baseline)"
        rows.append(row(component_label(name), s, w))
    rule = ""
    if model.task == "classification":
        rule = ("; every model predicts the class whose probability stands highest against "
                "its share of the training samples (decision: balanced)"
                if model.model_config.decision == "balanced" else
                "; every model predicts its most probable class (decision: probable)")
    return {"header": ["stack weight", f"{main} 95% interval"] + [c for _, c in cols],
            "rows": rows, "verdict": rep["verdict"],
            "caption": f"Out-of-fold scores: each of {rep['samples']} samples predicted by "
                       f"fits that never saw it ({rep['groups']} groups; intervals resample "
                       f"whole groups){rule}"}

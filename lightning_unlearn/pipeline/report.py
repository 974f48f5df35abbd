"""``report.md`` and its figures: the mean ± std table, RMIA ROC curves, Avg. Gap, spectral norms.

Figures (PNG, matplotlib's Agg backend, nothing shown on screen):

* ``rmia_roc.png`` -- RMIA ROC curve of every row on the first seed, FPR on a log axis;
* ``avg_gap.png`` -- Avg. Gap per method (mean ± std; RMIA- and SVC-based side by side);
* ``spectral_norms.png`` -- per-layer spectral norms logged by FastClip (``--fastclip`` only).

:func:`plot_paired_differences` draws the forest plot of paired differences to the best method
(:mod:`lightning_unlearn.stats`); the report does not write it yet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_unlearn.pipeline.stages import ExperimentResult
from lightning_unlearn.stats import PairedDifference

COLUMNS = (
    ("ua", "UA"),
    ("ua_test", "UA test"),
    ("ra", "RA"),
    ("ta", "TA"),
    ("mia", "MIA (SVC)"),
    ("rmia_auc", "RMIA AUC"),
    ("mia_nn_auc", "MIA-NN AUC"),
    ("mia_nn_acc", "MIA-NN acc"),
    ("mia_nn_retrain_acc", "MIA-NN retrain acc"),
    ("sym_kl", "sym KL"),
    ("avg_gap", "Avg. Gap"),
    ("avg_gap_mis", "Avg. Gap (SVC)"),
    ("seconds", "time (s)"),
)

# class forgetting: MIA-NN both ways, each figure beside its gap to retrain (docs/metrics.md, section 6)
MIA_NN_COLUMNS = (
    ("mia_nn_auc", "membership AUC"),
    ("mia_nn_auc_gap", "gap"),
    ("mia_nn_acc", "membership acc"),
    ("mia_nn_acc_gap", "gap"),
    ("mia_nn_retrain_acc", "retrain acc T_f"),
    ("mia_nn_retrain_acc_gap", "gap"),
    ("mia_nn_retrain_acc_gap_loo", "gap (LOO)"),
    ("mia_nn_retrain_acc_train", "retrain acc D_f"),
    ("mia_nn_retrain_acc_train_gap", "gap"),
)
MIA_NN_LOGIT_COLUMNS = (
    ("mia_nn_retrain_logit_acc", "retrain acc T_f"),
    ("mia_nn_retrain_logit_acc_gap", "gap"),
    ("mia_nn_retrain_logit_acc_gap_loo", "gap (LOO)"),
    ("mia_nn_retrain_logit_acc_train", "retrain acc D_f"),
    ("mia_nn_retrain_logit_acc_train_gap", "gap"),
)


def _fmt(mean: float | None, std: float | None, n: int, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n > 1 and std is not None:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def table_markdown(results: dict[str, Any], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """The Markdown table of ``results["methods"]`` (mean ± std over seeds; '–' where n/a).

    ``columns``: ``(figure, header)`` pairs, default :data:`COLUMNS`; a figure no row has is left out.
    """
    methods = results["methods"]
    present = [(k, name) for k, name in columns if any(m.get(k) is not None for m in methods.values())]
    lines = ["| method | " + " | ".join(name for _, name in present) + " |", "|---|" + "---:|" * len(present)]
    for row, m in methods.items():
        n = len(m.get("per_seed", []))
        cells = [_fmt(m.get(k), m.get("std", {}).get(k), n, 1 if k == "seconds" else (3 if k == "sym_kl" else 2)) for k, _ in present]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_rmia_roc(result: ExperimentResult, seed: int, path: Path) -> bool:
    """ROC curves of the RMIA scores of each row on replicate ``seed``; False if there are none."""
    from sklearn.metrics import roc_curve

    curves = [(r.row, r.evaluation.rmia_scores, r.evaluation.rmia_labels) for r in result.runs if r.seed == seed and r.evaluation.rmia_scores is not None]
    seen, unique = set(), []
    for row, s, lab in curves:  # one curve per row (the first retrained model for retrain)
        if row not in seen:
            seen.add(row)
            unique.append((row, s, lab))
    if not unique:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    lo = 1.0
    for row, scores, labels in unique:
        fpr, tpr, _ = roc_curve(labels.numpy(), scores.numpy())
        n_neg = int((labels == 0).sum())
        lo = min(lo, 1.0 / max(n_neg, 1))
        style = {"original": dict(color="tab:red", ls=":", lw=2), "retrain": dict(color="black", ls="--", lw=2)}.get(row, dict(lw=1.3))
        # an ROC curve is a step function: draw it as one (straight segments would bend on a log axis)
        run = next(r for r in result.runs if r.row == row and r.seed == seed)
        auc, tpr1 = run.evaluation.values.get("rmia_auc"), run.evaluation.values.get("rmia_tpr_at_1pct_fpr")
        label = row if auc is None else f"{row} (AUC {auc:.1f}, TPR@1% {tpr1:.1f})"
        ax.step(np.clip(fpr, 1.0 / max(n_neg, 1), 1), tpr, where="post", label=label, **style)
    grid = np.logspace(np.log10(lo), 0, 50)
    ax.plot(grid, grid, color="grey", lw=0.8, ls="-.", label="chance")
    ax.set_xscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"RMIA: forget set vs non-members (seed {seed})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_avg_gap(results: dict[str, Any], path: Path) -> bool:
    """Bars of Avg. Gap (RMIA-based and SVC-based) per method, with std error bars."""
    rows = [r for r, m in results["methods"].items() if r != "retrain" and (m.get("avg_gap") is not None or m.get("avg_gap_mis") is not None)]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    main_label = "Avg. Gap (RMIA AUC)" if results["config"]["avg_gap_mia"] == "rmia_auc" else "Avg. Gap (SVC MIA)"
    for off, key, label in ((-0.2, "avg_gap", main_label), (0.2, "avg_gap_mis", "Avg. Gap (SVC MIA)")):
        vals = [results["methods"][r].get(key) for r in rows]
        errs = [results["methods"][r]["std"].get(key) or 0.0 for r in rows]
        ax.bar(x + off, [v if v is not None else 0 for v in vals], width=0.4, yerr=errs, label=label, capsize=2)
    ax.set_xticks(x, rows, rotation=30, ha="right")
    ax.set_ylabel("Avg. Gap to retrain (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_spectral_norms(norms: dict[str, dict[str, list[list[float]]]], path: Path, *, max_norm: float | None = None) -> bool:
    """FastClip's per-layer spectral norms: the last value per layer (left) and the trajectories of
    the original model's layers over optimizer steps (right). ``norms[role][layer] = [[step, sigma], ...]``."""
    norms = {role: layers for role, layers in norms.items() if layers}
    if not norms:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for role, layers in norms.items():
        names = list(layers)
        left.plot(range(len(names)), [layers[n][-1][1] for n in names], "o-", label=role)
        left.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    first_role = "original" if "original" in norms else next(iter(norms))
    for name, series in norms[first_role].items():
        right.plot([p[0] for p in series], [p[1] for p in series], lw=1, label=name)
    for ax in (left, right):
        if max_norm is not None:
            ax.axhline(max_norm, color="black", ls="--", lw=0.8, label=f"max_norm = {max_norm:g}")
        ax.set_ylabel("spectral norm")
    left.set_title("per-layer spectral norm at the end of training")
    right.set_title(f"{first_role}: per-layer norm over optimizer steps")
    right.set_xlabel("optimizer step")
    left.legend(fontsize=8)
    right.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


VERDICT_COLORS = {"better": "tab:green", "worse": "tab:red", "not distinguishable": "tab:gray"}


def plot_paired_differences(differences: Sequence[PairedDifference], path: Path, *, quantity: str = "Avg. Gap") -> bool:
    """Forest plot of :func:`lightning_unlearn.stats.paired_differences`: one row per method, its mean
    difference to the best method with the interval as a horizontal bar, coloured by verdict, and a
    line at 0 (the best method). False if there is nothing to draw. Not yet written by :func:`write_report`.
    """
    if not differences:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(differences) + 1.6))
    y = np.arange(len(differences))[::-1]  # the first difference at the top
    for yi, d in zip(y, differences):
        has_interval = math.isfinite(d.low) and math.isfinite(d.high)
        err = [[d.mean - d.low], [d.high - d.mean]] if has_interval else None
        ax.errorbar(d.mean, yi, xerr=err, fmt="o", color=VERDICT_COLORS[d.verdict], capsize=3, lw=1.5)
    ax.axvline(0.0, color="black", ls="--", lw=0.8)
    ax.set_yticks(y, [d.method for d in differences])
    for verdict_name, color in VERDICT_COLORS.items():  # legend entries for the verdicts present
        if any(d.verdict == verdict_name for d in differences):
            ax.plot([], [], "o", color=color, label=verdict_name)
    first = differences[0]
    unit = first.unit.replace("_", " ")
    ax.set_xlabel(f"{quantity} difference to {first.reference} ({first.confidence:.0%} CI, unit: {unit})")
    ax.set_title(f"{quantity}: each method minus the best ({first.reference})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------- files
def write_report(folder: Path, results: dict[str, Any], result: ExperimentResult) -> list[str]:
    """Write ``results.json``, ``report.md`` and the figures into ``folder``; returns the file names."""
    folder = Path(folder)
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    cfg = results["config"]
    figures = []
    if plot_rmia_roc(result, cfg["seeds"][0], folder / "rmia_roc.png"):
        figures.append(("rmia_roc.png", "RMIA ROC curves (log FPR)"))
    if plot_avg_gap(results, folder / "avg_gap.png"):
        figures.append(("avg_gap.png", "Avg. Gap to retrain per method"))
    if plot_spectral_norms(result.fastclip_norms, folder / "spectral_norms.png", max_norm=cfg.get("fastclip")):
        figures.append(("spectral_norms.png", "Per-layer spectral norms (FastClip)"))
    (folder / "report.md").write_text(render_markdown(results, figures))
    return ["results.json", "report.md"] + [f for f, _ in figures]


def render_markdown(results: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    cfg = results["config"]
    seeds = ", ".join(map(str, cfg["seeds"]))
    setting = f"{cfg['forget']} forgetting, {'forget set only' if cfg['no_remain'] else 'remain set available'}"
    lines = [
        "# Unlearning audit report",
        "",
        *_noise_note(results),
        f"**{cfg['dataset']}**, {cfg['model']} ({cfg['epochs']} epochs), {setting}; seeds {seeds}; "
        f"{cfg['rmia_references']} RMIA reference models ({cfg['rmia_signal']} signal, γ = {cfg['rmia_gamma']:g}).",
        "",
        *_recipe_lines(results),
        "Figures in percent (mean ± std over seeds); the target of every column is the `retrain` row. "
        f"`Avg. Gap` = ¼(|UA−UA*| + |RA−RA*| + |TA−TA*| + |MIA−MIA*|) with {'RMIA AUC' if cfg['avg_gap_mia'] == 'rmia_auc' else 'SVC MIA efficacy'} "
        "as its MIA term; `Avg. Gap (SVC)` uses the SVC MIA efficacy. Lower gaps are better. "
        "`time` is the unlearning wall time (training time for `original` and `retrain`).",
        "",
        _retrain_note(results),
        "",
        table_markdown(results),
        "",
        *mia_nn_section(results),
    ]
    lines += _adversarial_lines(results)
    if results.get("tuning"):
        tuned_on = results.get("tuned_on") or f"the forget set of seed {cfg['tune_seed']}"
        lines += ["## Hyperparameters", "", f"Tuned on {tuned_on} by the smallest Avg. Gap; {cfg['unlearn_epochs']} unlearning epochs.", ""]
        lines += ["| method | chosen | trials (hyperparameters: Avg. Gap) |", "|---|---|---|"]
        for m, trials in results["tuning"].items():
            tuned = sorted({k for t in trials for k in t["hparams"]})
            hp = results["methods"].get(m, {}).get("hparams", {})
            chosen = ", ".join(f"{k}={hp.get(k)}" for k in tuned)
            tried = "; ".join(
                f"{', '.join(f'{k}={v}' for k, v in t['hparams'].items())}: {'–' if t['avg_gap'] is None else format(t['avg_gap'], '.2f')}" for t in trials
            )
            lines.append(f"| {m} | {chosen} | {tried} |")
        lines.append("")
    for fname, title in figures:
        lines += [f"## {title}", "", f"![{title}]({fname})", ""]
    lines += ["## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    prov = results.get("provenance")
    if prov:
        dirty = {True: " (with uncommitted changes)", False: "", None: ""}[prov.get("dirty")]
        lines += ["## Provenance", "", f"Command: `{prov['command']}`", "", f"Commit {prov['commit']}{dirty}; torch {prov['torch']}, "
                  f"lightning {prov['lightning']}; {prov['device']}.", ""]
    return "\n".join(lines)


def mia_nn_section(results: dict[str, Any]) -> list[str]:
    """The MIA-NN tables of a class-forgetting run (both protocols, then the logit variant); ``[]`` otherwise."""
    methods = results["methods"]
    if not any(m.get("mia_nn_retrain_acc") is not None or m.get("mia_nn_auc") is not None for m in methods.values()):
        return []
    return [
        "## MIA-NN, both protocols",
        "",
        "Membership protocol: a discriminator fitted (5-fold cross-validation) on the audited model's own outputs "
        "tells the forget class's training samples D_f from its test samples T_f (AUC and accuracy; a retrained model "
        "scores about 50). Retrain protocol: a discriminator fitted once on the retrained models' outputs (forget-class "
        "against neighbour-class training samples, feature: the neighbour-class probability) is applied unchanged to "
        "every model; `retrain acc` is the percentage of T_f (and D_f) it recognises as forget-class. Each `gap` is the "
        "distance to the retrained models' value (per run, then mean ± std over seeds; a retrained row is audited "
        "leave-one-model-out). For T_f, `gap` takes as retrain value the retrained models' accuracy under the "
        "discriminator fitted on them, `gap (LOO)` the `retrain` row's (each retrained model audited by a discriminator "
        "fitted on the others, as every audited model is); the `retrain` row's own gaps are the noise floor. "
        "Lower gaps are better.",
        "",
        table_markdown(results, MIA_NN_COLUMNS),
        "",
        "### Retrain protocol with logit features",
        "",
        "The same discriminator fitted on the whole logit vector instead of the neighbour-class probability.",
        "",
        table_markdown(results, MIA_NN_LOGIT_COLUMNS),
        "",
    ]


def _augmentation_words(name: str) -> str:
    return {"crop_flip": "crop+flip", "none": "no augmentation"}.get(name, name)


def _recipe_lines(results: dict[str, Any]) -> list[str]:
    """The two data recipes of the run (originals' and unlearning phase's), resolved, as one paragraph."""
    recipes = results.get("recipes") or {}
    o, u = recipes.get("original"), recipes.get("unlearning")
    if not o or not u:
        return []
    width = f", width {o['width']}" if o.get("width") is not None else ""
    clip = f", FastClip to spectral norm {o['fastclip']:g} every {o['fastclip_every']} steps" if o.get("fastclip") is not None else ""
    adv = u.get("adversarial_set") or {}
    adv_words = ""
    if adv:
        kinds = sorted(set(adv.values()))
        adv_words = f"; {' / '.join(_augmentation_words(k) for k in kinds)} on the adversarial set D_A ({', '.join(adv)})"
    return [
        f"Data recipes: **originals** (original, retrained and reference models): {_augmentation_words(o['augmentation'])} "
        f"(`augmentation={o['setting']}`), batch {o['batch_size']}, {o['epochs']} epochs, {o['schedule']} lr {o['lr']:g}, "
        f"{o['model']}{width}{clip}. **Unlearning phase** (the same for every method): {_augmentation_words(u['augmentation'])} "
        f"on D_R and D_F (`unlearn_augmentation={u['setting']}`){adv_words}, batch {u['batch_size']}, {u['epochs']} epochs.",
        "",
    ]


def _adversarial_lines(results: dict[str, Any]) -> list[str]:
    """AMUN's theory check: how the adversarial set of each AMUN-family run transfers to the retrained models."""
    summary = results.get("adversarial_transfer") or {}
    if not summary:
        return []
    lines = [
        "## Transfer of the adversarial examples to retrain",
        "",
        "AMUN's bound shrinks as the retrained model's loss on the adversarial pairs (x_adv, y_adv) shrinks: "
        "`P(y_adv|x_adv)` is the retrained model's mean probability of the adversarial label, `top-1` how often it predicts it "
        "(over all of D_A, and over the rows with ‖δ‖ > 0); ‖δ‖ is the attack's mean L2 distance ‖x_adv − x‖.",
        "",
        "| method | runs | D_A | mean ‖δ‖ | P(y_adv \\| x_adv) | top-1 | P, ‖δ‖ > 0 | top-1, ‖δ‖ > 0 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rec in summary.items():
        n, sd = rec["runs"], rec.get("std", {})
        digits = (("n_adv", 0), ("mean_delta", 3), ("prob", 2), ("top1", 2), ("prob_perturbed", 2), ("top1_perturbed", 2))
        cells = [_fmt(rec.get(k), sd.get(k), n, d) for k, d in digits]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _noise_note(results: dict[str, Any]) -> list[str]:
    """One line at the top when the untouched original is already within the noise of retrain."""
    noise = results.get("original_within_noise") or {}
    if not noise.get("within"):
        return []
    terms = ", ".join(f"{k.upper() if k != 'rmia_auc' else 'RMIA AUC'} {t['difference']:+.2f} (noise ±{t['noise']:.2f})" for k, t in noise["terms"].items())
    return [
        "> **Smoke test, not a result:** the untouched `original` model is already within the sampling noise of `retrain` "
        f"on every Avg. Gap term (original − retrain: {terms}), so this run cannot tell unlearning methods apart.",
        "",
    ]


def _retrain_note(results: dict[str, Any]) -> str:
    cfg = results["config"]
    per = results["methods"]["retrain"]["per_seed"]
    seeds = ", ".join(str(p.get("model_seed", p["seed"])) for p in per)
    if cfg["forget_kind"] == "class":
        return (
            f"Retrained models: {len(per)} (model seeds {seeds}), shared by every seed; starred values are their mean, "
            "and each retrained model is scored against the others (leave-one-out). MIA-NN takes its neighbour class from them."
        )
    return (
        f"Retrained models: {cfg['retrain_models']} per seed, on that seed's remain set (model seeds {seeds}); "
        "each seed's figures are measured against its own retrained model(s)."
    )


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)

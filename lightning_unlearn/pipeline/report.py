"""``report.md`` and its figures: verdicts, the tables with intervals and the noise floor, forest plots, RMIA ROC curves.

Everything here reads the ``results.json`` dictionary (:func:`lightning_unlearn.pipeline.results.build_results`)
and the figure data of the run's storage (:func:`lightning_unlearn.pipeline.results.figure_data`).
Figures (PNG, matplotlib's Agg backend, nothing shown on screen):

* ``paired_differences_<objective>.png`` -- per declared objective, the forest plot of every
  method's paired difference to the best one (:func:`plot_paired_differences`; ``+`` in the
  objective's name written ``-``);
* ``rmia_roc.png`` -- RMIA ROC curve of every row on the first cell (first original, first forget set), FPR on a log axis;
* ``avg_gap.png`` -- Avg. Gap per method (mean ± SD over the unit; RMIA- and SVC-based side by side);
* ``spectral_norms.png`` -- per-layer spectral norms logged by FastClip (``--fastclip`` only).

A figure of another audit (one number per run, e.g. U-LiRA's) becomes a column by adding it to
the run's figures (:func:`lightning_unlearn.pipeline.evaluation.evaluate`), to
:data:`lightning_unlearn.pipeline.results.FIGURES` (summarised over the unit like every figure)
and a ``(figure, header)`` pair to :data:`COLUMNS` here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_unlearn.search_space import SCHEDULE_SPACE
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


def status_words(entry: dict[str, Any]) -> str | None:
    """What a row without numbers says instead (``None`` for a row with numbers)."""
    status = entry.get("status", "ok")
    if status == "ok":
        return None
    if status == "diverged":
        n = len(entry.get("diverged", []))
        return f"**diverged** in {n} of {n + entry.get('runs', 0)} runs"
    if status == "not tuned":
        return "**every tuning trial diverged**: not evaluated"
    return "incomplete (the run was not finished)"


def table_markdown(results: dict[str, Any], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """The Markdown table of ``results["methods"]`` (mean ± SD over the declared unit; '–' where n/a).

    ``columns``: ``(figure, header)`` pairs, default :data:`COLUMNS`; a figure no row has is left out.
    A row that diverged (or is otherwise without numbers) says so in its first column instead of
    printing numbers.
    """
    methods = results["methods"]
    present = [(k, name) for k, name in columns if any(m.get(k) is not None for m in methods.values())]
    lines = ["| method | " + " | ".join(name for _, name in present) + " |", "|---|" + "---:|" * len(present)]
    for row, m in methods.items():
        n = len(m.get("per_seed", []))
        words = status_words(m)
        if words is not None:
            cells = [words] + ["–"] * (len(present) - 1)
        else:
            cells = [_fmt(m.get(k), m.get("std", {}).get(k), n, 1 if k == "seconds" else (3 if k == "sym_kl" else 2)) for k, _ in present]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _unit_words(summary: dict[str, Any]) -> str:
    unit, n = summary.get("unit", ""), summary.get("n")
    names = {"forget_set": "forget sets", "original": "originals", "cell": "cells", "retrained_model": "retrained models",
             "two_way_bootstrap": "cells (two-way bootstrap)", "forget_set_bootstrap": "forget sets (bootstrap)"}
    return f"{n} {names.get(unit, unit)}"


def interval_table(section: dict[str, Any], quantity: str) -> list[str]:
    """Mean, SD, 95% CI, n and unit of every row's objective value, the noise floor among them."""
    lines = [f"| row | {quantity}: mean | SD | 95% CI | n (unit) |", "|---|---:|---:|---|---|"]
    for row, m in section["methods"].items():
        words = status_words(m)
        s = (m.get("summary") or {}).get("objective")
        name = "retrain (noise floor)" if row == "retrain" else row
        if words is not None or s is None:
            lines.append(f"| {name} | {words or '–'} | – | – | – |")
            continue
        ci = "–" if s.get("low") is None else f"[{s['low']:.2f}, {s['high']:.2f}]"
        lines.append(f"| {name} | {_num(s['mean'])} | {_num(s.get('sd'))} | {ci} | {_unit_words(s)} |")
    return lines


def paired_table(section: dict[str, Any], quantity: str) -> list[str]:
    """The paired differences to the best method, each with its 95% CI and verdict."""
    paired = section.get("paired") or []
    if not paired:
        return []
    best = section["best"]
    lines = [f"| method | {quantity} − {best} | 95% CI | n (unit) | verdict |", "|---|---:|---|---|---|"]
    for d in paired:
        ci = "–" if d.get("low") is None else f"[{d['low']:.2f}, {d['high']:.2f}]"
        lines.append(f"| {d['method']} | {_num(d['mean'])} | {ci} | {_unit_words(d)} | {d['verdict']} |")
    return lines


def cost_phrase(cost: dict[str, Any] | None, *, note: str = "") -> str:
    """``"the stored units took N s when they ran, one thread each (tuning T s in n runs, evaluation E s in m[; note])"``
    from results.json's ``cost`` (:func:`~lightning_unlearn.pipeline.results.stored_cost`), or ``""`` without one."""
    if not cost:
        return ""
    tail = f"; {note}" if note else ""
    return (f"the stored units took {cost['seconds']:.0f} s when they ran, one thread each (tuning {cost['tuning']['seconds']:.0f} s in "
            f"{cost['tuning']['n']} runs, evaluation {cost['evaluation']['seconds']:.0f} s in {cost['evaluation']['n']}{tail})")


# ---------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_rmia_roc(roc: dict[str, dict[str, list]], path: Path, *, title: str = "", values: dict[str, dict[str, Any]] | None = None) -> bool:
    """ROC curves of the RMIA scores of each row (``roc[row] = {"scores", "labels"}``); False if there are none.

    ``values[row]`` may give the row's ``rmia_auc`` and ``rmia_tpr_at_1pct_fpr`` for the legend.
    """
    from sklearn.metrics import roc_curve

    if not roc:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    lo = 1.0
    for row, data in roc.items():
        scores, labels = np.asarray(data["scores"]), np.asarray(data["labels"])
        fpr, tpr, _ = roc_curve(labels, scores)
        n_neg = int((labels == 0).sum())
        lo = min(lo, 1.0 / max(n_neg, 1))
        style = {"original": dict(color="tab:red", ls=":", lw=2), "retrain": dict(color="black", ls="--", lw=2)}.get(row, dict(lw=1.3))
        v = (values or {}).get(row, {})
        auc, tpr1 = v.get("rmia_auc"), v.get("rmia_tpr_at_1pct_fpr")
        label = row if auc is None or tpr1 is None else f"{row} (AUC {auc:.1f}, TPR@1% {tpr1:.1f})"
        # an ROC curve is a step function: draw it as one (straight segments would bend on a log axis)
        ax.step(np.clip(fpr, 1.0 / max(n_neg, 1), 1), tpr, where="post", label=label, **style)
    grid = np.logspace(np.log10(lo), 0, 50)
    ax.plot(grid, grid, color="grey", lw=0.8, ls="-.", label="chance")
    ax.set_xscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "RMIA: forget set vs non-members")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_avg_gap(results: dict[str, Any], path: Path) -> bool:
    """Bars of Avg. Gap (RMIA-based and SVC-based) per method, with std error bars."""
    rows = [r for r, m in results["methods"].items() if m.get("avg_gap") is not None or m.get("avg_gap_mis") is not None]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    main_label = "Avg. Gap (RMIA AUC)" if results["config"]["avg_gap_mia"] == "rmia_auc" else "Avg. Gap (SVC MIA)"
    for off, key, label in ((-0.2, "avg_gap", main_label), (0.2, "avg_gap_mis", "Avg. Gap (SVC MIA)")):
        vals = [results["methods"][r].get(key) for r in rows]
        errs = [results["methods"][r].get("std", {}).get(key) or 0.0 for r in rows]
        ax.bar(x + off, [v if v is not None else 0 for v in vals], width=0.4, yerr=errs, label=label, capsize=2)
    ax.set_xticks(x, rows, rotation=30, ha="right")
    ax.set_ylabel("Avg. Gap to retrain, ± SD (lower is better)")
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
    line at 0 (the best method). False if there is nothing to draw.
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
def paired_figure_name(objective: str) -> str:
    """``paired_differences_<objective>.png`` (``+`` written ``-``)."""
    return f"paired_differences_{objective.replace('+', '-')}.png"


def write_report(folder: Path, results: dict[str, Any], figures: dict[str, Any] | None = None) -> list[str]:
    """Write ``results.json``, ``report.md`` and the figures into ``folder``; returns the file names.

    ``figures``: :func:`~lightning_unlearn.pipeline.results.figure_data` of the run (ROC scores,
    FastClip norms); without it the ROC and spectral-norm figures are left out.
    """
    folder = Path(folder)
    figures = figures or {}
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    cfg = results["config"]
    written = []
    for name, section in (results.get("objectives") or {}).items():
        diffs = [PairedDifference.from_dict(d) for d in section.get("paired", [])]
        if plot_paired_differences(diffs, folder / paired_figure_name(name), quantity=name):
            written.append((paired_figure_name(name), f"Paired differences to the best method ({name})"))
    cell = figures.get("cell") or {}
    values = _first_cell_values(results, cell)
    title = f"RMIA: forget set vs non-members (original {cell.get('original')}, {cell.get('forget_set')})" if cell else ""
    if plot_rmia_roc(figures.get("roc") or {}, folder / "rmia_roc.png", title=title, values=values):
        written.append(("rmia_roc.png", "RMIA ROC curves (log FPR)"))
    if plot_avg_gap(results, folder / "avg_gap.png"):
        written.append(("avg_gap.png", "Avg. Gap to retrain per method"))
    if plot_spectral_norms(figures.get("fastclip_norms") or {}, folder / "spectral_norms.png", max_norm=cfg.get("fastclip")):
        written.append(("spectral_norms.png", "Per-layer spectral norms (FastClip)"))
    (folder / "report.md").write_text(render_markdown(results, written))
    return ["results.json", "report.md"] + [f for f, _ in written]


def _first_cell_values(results: dict[str, Any], cell: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each row's figures in the first cell (the ROC figure's legend)."""
    out = {}
    for row, m in results.get("methods", {}).items():
        for p in m.get("per_seed", []):
            if p.get("forget_set") == cell.get("forget_set") and (row == "retrain" or p.get("original") == cell.get("original")):
                out[row] = p
                break
    return out


def render_markdown(results: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    """``report.md`` of a ``results.json`` dictionary; ``figures``: ``(file, title)`` pairs written beside it."""
    cfg = results["config"]
    lines = ["# Unlearning audit report", "", *_noise_note(results), *_budget_note(cfg), *_header_lines(results), "", *_recipe_lines(results)]
    lines += [
        "Figures in percent; each is the mean over the run's cells (original × forget set) ± its SD over the declared unit "
        f"({_unit_phrase(cfg)}); the target of every column is the `retrain` row. "
        f"`Avg. Gap` = ¼(|UA−UA*| + |RA−RA*| + |TA−TA*| + |MIA−MIA*|) with {'RMIA AUC' if cfg.get('avg_gap_mia') == 'rmia_auc' else 'SVC MIA efficacy'} "
        "as its MIA term, starred values being the mean of the forget set's retrained models; `Avg. Gap (SVC)` uses the SVC MIA efficacy. "
        "Lower gaps are better. The `retrain` row holds the retrained models themselves, each scored against the others of its "
        "forget set (leave-one-out): its gaps are the noise floor. `time` is the unlearning wall time (training time for `original` and `retrain`).",
        "",
    ]
    objectives = results.get("objectives") or {}
    if objectives:
        lines += ["## Verdicts", ""]
        lines += [f"- **{name}**: {section['statement']}" for name, section in objectives.items()]
        lines.append("")
    names = list(objectives) or [None]
    for name in names:
        section = objectives.get(name) if name else {"methods": results["methods"]}
        if name is not None and len(names) > 1:
            lines += [f"## Objective `{name}`", "", f"Every method tuned on its own under `{name}` = {section['formula']}.", ""]
        view = {**results, "methods": section["methods"]}
        lines += [table_markdown(view), ""]
        if name is not None:
            lines += [f"### Intervals and paired differences ({name})", "",
                      f"The objective's value per cell, summarised over the unit ({_unit_phrase(cfg)}); 95% Student's t intervals "
                      "(percentile intervals for the bootstrap unit). A method is worse than the best only where the interval of its "
                      "paired difference (cell by cell, both measured against the same retrained models) excludes 0.", ""]
            lines += interval_table(section, name) + [""]
            lines += paired_table(section, name) + [""]
            fig = paired_figure_name(name)
            if any(f == fig for f, _ in figures):
                lines += [f"![Paired differences ({name})]({fig})", ""]
        lines += mia_nn_section(view)
    lines += _adversarial_lines(results)
    lines += _tuning_lines(results)
    for fname, title in figures:
        if not fname.startswith("paired_differences"):
            lines += [f"## {title}", "", f"![{title}]({fname})", ""]
    lines += ["## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    prov = results.get("provenance")
    if prov:
        dirty = {True: " (with uncommitted changes)", False: "", None: ""}[prov.get("dirty")]
        lines += ["## Provenance", "", f"Command: `{prov['command']}`", "", f"Commit {prov['commit']}{dirty}; torch {prov['torch']}, "
                  f"lightning {prov['lightning']}; {prov['device']}.", ""]
    return "\n".join(lines)


def _unit_phrase(cfg: dict[str, Any]) -> str:
    unit = cfg.get("stats_unit", "forget_set")
    return {"forget_set": "the forget-set means: each forget set's cells averaged over the originals",
            "original": "the originals' means over the forget sets", "cell": "every cell as independent",
            "two_way_bootstrap": "a two-way bootstrap over originals and forget sets"}.get(unit, unit)


def _header_lines(results: dict[str, Any]) -> list[str]:
    cfg = results["config"]
    design = results.get("design") or {}
    setting = f"{cfg['forget']} forgetting, {'forget set only' if cfg['no_remain'] else 'remain set available'}"
    size = f"{cfg.get('max_train') or 'all'} training images"
    lines = [f"**{cfg['dataset']}** ({size}), {cfg['model']} ({cfg['epochs']} epochs), {setting}; "
             f"{cfg['rmia_references']} RMIA reference models ({cfg['rmia_signal']} signal, γ = {cfg['rmia_gamma']:g})."]
    if design:
        sets = design.get("forget_sets", [])
        lines += ["", f"Design: {len(design['originals'])} originals (model seeds {', '.join(map(str, design['originals']))}) × {len(sets)} forget sets "
                  f"({', '.join(s['name'] for s in sets)}), {design.get('retrain_models')} retrained models per forget set; "
                  f"hyperparameters tuned on {results.get('tuned_on', '')}."]
    return lines


def _budget_note(cfg: dict[str, Any]) -> list[str]:
    """One line when the tuning budget is smaller than the shared schedule grid (or zero)."""
    n, grid = cfg.get("max_trials", 0), int(SCHEDULE_SPACE.grid_size())
    if n == 0:
        return ["> **Not tuned:** `max_trials` is 0, so every method runs with its defaults (and `hparams`).", ""]
    if n < grid:
        return [f"> **Small tuning budget:** every method had {n} trials per objective, fewer than the {grid} points of the shared "
                f"schedule grid alone, so seeded TPE sampled {n} of them (decisive runs: the presets' budget of {grid} or more, "
                "`benchmarks/configs/`).", ""]
    return []


def _tuning_lines(results: dict[str, Any]) -> list[str]:
    objectives = results.get("objectives") or {}
    if not any(s.get("tuning") for s in objectives.values()):
        return []
    lines = ["## Tuning", "", f"Tuned on {results.get('tuned_on')}; every method had the same budget, "
             f"{results['config'].get('max_trials')} trials per objective (its whole grid when it has fewer points), each the mean objective "
             "over the tuning sets. The declaration of every study (space, budget, objective, sets, seed) is in `results.json` under "
             "`declaration`.", "", "| objective | method | sampler | trials | diverged | chosen | mean objective |", "|---|---|---|---:|---:|---|---:|"]
    for name, section in objectives.items():
        for m, rec in section.get("tuning", {}).items():
            chosen = rec.get("chosen")
            tuned = ", ".join(f"{k}={_short(v)}" for k, v in (chosen or {}).items() if k in (rec.get("trials") or [{}])[0].get("hparams", {}))
            lines.append(f"| {name} | {m} | {rec.get('sampler', '–')} | {rec.get('n_trials', 0)} | {rec.get('n_diverged', 0)} | "
                         f"{tuned or ('–' if chosen is None else 'nothing tuned')} | {_num(rec.get('best_value'))} |")
    lines.append("")
    return lines


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


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
        "distance to the retrained models' value (per cell, then mean ± SD over the unit; a retrained row is audited "
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


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)

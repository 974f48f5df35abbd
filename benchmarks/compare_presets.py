"""Several random-forgetting presets side by side: Avg. Gap per method, preset and setting, beside the paper's.

Reads the output folders of ``benchmarks/random_forget.py`` (``random_forget_<preset>/``, holding
``random_forget_<preset>.json``) or single pipeline output folders (holding ``results.json``), and
writes one Markdown file: per setting (forget fraction, with D_R / D_F only) a table with one row
per method and, per preset, the RMIA-based and the SVC-based Avg. Gap to retrain (mean ± SD as
each folder records it: the population SD over seeds in folders made before the fair-comparison
protocol, the sample SD over the forget sets after it), then the paper's Avg. Gap ([P] Tables
1-2, CIFAR-10 ResNet-18, RMIA-based). Below it, per preset: both data recipes, the originals' fit
(train / test accuracy, the original's RMIA AUC, retrain's forget vs test accuracy), AMUN's
transfer rate to retrain and how many tuning trials each method ran (as recorded in
``results.json``: under the protocol every method's budget; before it, the distinct points of a
grid diagonal, which could be fewer than ``max_trials``).

    PYTHONPATH=. python benchmarks/compare_presets.py benchmarks/results/random_forget_cifar1k-crop \\
        benchmarks/results/random_forget_cifar1k-crop-fullgrid benchmarks/results/random_forget_cifar1k-crop-fullgrid-dfonly \\
        benchmarks/results/random_forget_cifar5k --out benchmarks/results/random_forget_compare.md

Numbers of different devices are never put in one table: folders whose provenance names different
devices are refused.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _paper() -> dict:
    """The paper's numbers, from random_forget.py (one copy)."""
    spec = importlib.util.spec_from_file_location("random_forget", HERE / "random_forget.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PAPER


def load_folder(path: Path) -> tuple[str, dict[str, dict]]:
    """``(label, {setting key: results.json dict})`` of one output folder.

    A ``random_forget.py`` folder gives every run it holds under its keys (``0.1_with_remain``,
    ...); a single pipeline folder gives its one run under the key of its config.

    Raises:
        SystemExit: a folder with neither file.
    """
    combined = sorted(path.glob("random_forget_*.json"))
    if combined:
        data = json.loads(combined[0].read_text())
        return data.get("folder", path.name).removeprefix("random_forget_"), {k: v["results"] for k, v in data["runs"].items()}
    single = path / "results.json"
    if single.is_file():
        res = json.loads(single.read_text())
        cfg = res["config"]
        frac = cfg["forget"].split(":", 1)[1] if cfg["forget"].startswith("random:") else cfg["forget"]
        key = f"{frac}_{'forget_only' if cfg['no_remain'] else 'with_remain'}"
        label = path.parent.name.removeprefix("random_forget_") if path.name == key else path.name  # random_forget_<preset>/<key>/
        return label, {key: res}
    raise SystemExit(f"{path}: neither random_forget_*.json nor results.json found (pass output folders of benchmarks/random_forget.py)")


def _cell(entry: dict | None, key: str) -> str:
    if not entry or entry.get(key) is None:
        return "–"
    n = len(entry.get("per_seed", []))
    std = (entry.get("std") or {}).get(key)
    return f"{entry[key]:.2f}" + (f" ± {std:.2f}" if n > 1 and std is not None else "")


def trials_per_method(res: dict) -> str:
    """How many tuning trials each method ran (distinct grid points, from ``results.json`` → ``tuning``)."""
    tuning = res.get("tuning")
    if not isinstance(tuning, dict) or not tuning:
        return "tuning trials not recorded"
    return "tuning trials: " + ", ".join(f"{m} {len(trials)}" for m, trials in tuning.items() if isinstance(trials, list))


def _setting_title(key: str) -> tuple[str, bool]:
    frac, _, setting = key.partition("_")
    return frac, setting == "with_remain"


def compare(folders: list[Path]) -> str:
    """The Markdown comparison of the given output folders."""
    paper = _paper()
    merged: dict[str, dict[str, dict]] = {}
    for p in folders:  # folders of one preset (e.g. its two setting folders) merge under its label
        label, runs = load_folder(p)
        merged.setdefault(label, {}).update(runs)
    presets = list(merged.items())
    devices = {res.get("provenance", {}).get("device") for _, runs in presets for res in runs.values()}
    devices.discard(None)
    if len(devices) > 1:
        raise SystemExit(f"these folders come from different devices ({'; '.join(sorted(devices))}): compare numbers of one device only")
    keys = list(dict.fromkeys(k for _, runs in presets for k in runs))
    lines = [
        "# Random forgetting: presets side by side",
        "",
        f"Device: {next(iter(devices), 'unknown')}. Avg. Gap to retrain, RMIA-based / SVC-based (mean ± SD as each folder records it; lower is better); "
        "paper: [P] Tables 1-2 (CIFAR-10, ResNet-18, 200 epochs, 27 runs), RMIA-based.",
        "",
        "Folders: " + ", ".join(f"`{p}`" for p in folders),
        "",
    ]
    for key in keys:
        frac, with_remain = _setting_title(key)
        lines += [f"## forget {float(frac):.0%}, {'with D_R' if with_remain else 'D_F only'}", ""]
        cols = [label for label, runs in presets if key in runs]
        methods = list(dict.fromkeys(m for _, runs in presets if key in runs for m in runs[key]["methods"]))
        ref = paper.get((frac, with_remain), {})
        lines.append("| method | " + " | ".join(f"{c}: RMIA | {c}: SVC" for c in cols) + " | paper |")
        lines.append("|---|" + "---:|---:|" * len(cols) + "---:|")
        for m in methods:
            cells = []
            for _, runs in presets:
                if key in runs:
                    entry = runs[key]["methods"].get(m)
                    cells += [_cell(entry, "avg_gap"), _cell(entry, "avg_gap_mis")]
            paper_gap = f"{ref[m][4]:.2f}" if m in ref else "–"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {paper_gap} |")
        lines.append("")
    lines += ["## The presets", ""]
    for label, runs in presets:
        first = next(iter(runs.values()))
        lines += [f"### {label}", ""]
        rec = first.get("recipes")
        if rec:
            o, u = rec["original"], rec["unlearning"]
            clip = f", FastClip c = {o['fastclip']:g} every {o['fastclip_every']} steps" if o.get("fastclip") is not None else ""
            lines += [
                f"- originals: {o['augmentation']} (`augmentation={o['setting']}`), {o['model']}"
                f"{'' if o.get('width') is None else ' width ' + str(o['width'])}, {first['config'].get('max_train')} training images, "
                f"batch {o['batch_size']}, {o['epochs']} epochs, lr {o['lr']:g}{clip}",
                f"- unlearning: {u['augmentation']} on D_R and D_F (`unlearn_augmentation={u['setting']}`), none on D_A, "
                f"batch {u['batch_size']}, {u['epochs']} epochs; tuned on {first.get('tuned_on')}, at most "
                f"{first['config'].get('max_trials')} trials per method (trials per method below)",
            ]
        else:
            lines.append("- recipes not recorded (a run from before the unlearning recipe was separate: the unlearning phase used the originals' augmentation)")
        for key, res in runs.items():
            m = res["methods"]
            o, r = m.get("original", {}), m.get("retrain", {})
            t = (res.get("adversarial_transfer") or {}).get("amun")
            lines.append(
                f"- {key}: original RA {_cell(o, 'ra')}, TA {_cell(o, 'ta')}, RMIA AUC {_cell(o, 'rmia_auc')}; retrain UA {_cell(r, 'ua')} "
                f"vs TA {_cell(r, 'ta')}"
                + (f"; AMUN's D_A → retrain: P(y_adv | x_adv) {t['prob']:.1f}%, top-1 {t['top1']:.1f}%, mean ‖δ‖ {t['mean_delta']:.3f}" if t else "")
                + f"; {trials_per_method(res)}"
                + f" ({len(res['config']['seeds'])} seeds, commit {res.get('provenance', {}).get('commit', '?')[:10]})"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path, help="output folders of benchmarks/random_forget.py (or of one pipeline run)")
    p.add_argument("--out", type=Path, default=None, help="Markdown file to write (default: print)")
    args = p.parse_args(argv)
    text = compare(args.folders)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()

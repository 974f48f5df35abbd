"""CPU preset search: which small-CNN recipe fits CIFAR-10 *with* crop+flip, like the papers' models?

AMUN's and TRW's papers train their originals with crop+flip until they fit the training set
(ResNet-18, 200 epochs: train 100%, test 94%). A faithful CPU regime needs the same two
properties at a size a CPU can train a dozen times: the original fits its training set under
augmentation (train accuracy >= 95%, so forget samples are memorised and membership leaks: the
RMIA AUC of the original on D_F vs D_T is clearly above 50), and a model retrained without the
forget set classifies it about as well as the test set (forget accuracy ~ test accuracy).

Each candidate trains one original (all ``--images`` training images) and, when the original
fits (train accuracy >= ``--fit-threshold``), one retrained model (the remain set of a 10% random
forget set), both with the public API (``UnlearningDataModule(..., augmentation="crop_flip")``,
``train_classifier``; model seed 0, forget seed 0, one-cycle SGD), on **one** thread.
Measured per candidate: train / test accuracy of the original (eval mode, no augmentation),
seconds per model, the original's membership AUCs on D_F vs D_T (``loss``: the true-label
probability p_y, no reference model; ``rmia_1ref``: RMIA's ratio p_y(x|θ_o) / Pr(x) with the
retrained model as the single OUT reference, offline a = 0.3, γ = 2, population D_T — for one
target model the AUC equals that of the ratio), and the retrained model's forget / test accuracy.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/preset_search.py \\
        --data $LIGHTNING_UNLEARN_DATA/cifar10 --candidates w32-n1000-e100,w24-n1000-e80

A candidate name is ``w<width>-n<images>-e<epochs>[-b<batch>][-lr<lr>][-fc<every>[-c<max_norm>]][-noaug]``
(batch default 128, lr default 0.05; ``-fc10``: FastClip to spectral norm 1 every 10 steps on every
conv and linear layer, BatchNorm free; ``-fc10-c2``: the same to spectral norm 2). Results are appended to
``--out``/results.json after every model, and README.md is rewritten from them, so a stopped run
keeps what it measured. Timings share two cores with other jobs: read them as upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "preset_search"
GRAMMAR = "w<width>-n<images>-e<epochs>[-b<batch>][-lr<lr>][-fc<every>[-c<max_norm>]][-noaug]"
NAME = re.compile(
    r"^w(?P<width>\d+)-n(?P<images>\d+)-e(?P<epochs>\d+)(?:-b(?P<batch>\d+))?(?:-lr(?P<lr>[0-9.]+))?(?:-fc(?P<fc>\d+)(?:-c(?P<c>[0-9.]+))?)?(?P<noaug>-noaug)?$"
)


def parse_candidate(name: str) -> dict:
    m = NAME.match(name)
    if not m:
        raise SystemExit(f"bad candidate {name!r}: expected {GRAMMAR}, e.g. w24-n1000-e80-b32")
    return {
        "name": name,
        "width": int(m["width"]),
        "images": int(m["images"]),
        "epochs": int(m["epochs"]),
        "batch_size": int(m["batch"]) if m["batch"] else 128,
        "lr": float(m["lr"]) if m["lr"] else 0.05,
        "augmentation": None if m["noaug"] else "crop_flip",
        "fastclip_every": int(m["fc"]) if m["fc"] else None,
        "fastclip": (float(m["c"]) if m["c"] else 1.0) if m["fc"] else None,
    }


def membership_aucs(orig_logits, orig_y, retrain_logits, is_forget, is_test) -> dict:
    """Loss-attack AUC and one-reference RMIA AUC of the original on D_F (1) vs D_T (0), percent.

    For one target model RMIA's score is a monotone function of its ratio
    ``p_y(x|θ_o) / Pr(x)`` (the empirical CDF of the population's ratios at ratio(x)/γ), so its AUC
    is the AUC of the ratio up to ties; the ratio is used directly (no saturation at 0 or 1).
    """
    from lightning_unlearn.metrics.functional import rmia_ratios, roc_auc, softmax_signal

    s_o = softmax_signal(orig_logits, orig_y)
    s_r = softmax_signal(retrain_logits, orig_y)
    cand = is_forget | is_test
    labels = is_forget[cand].long()
    ratio = rmia_ratios(s_o[cand], s_r[cand][None], offline_a=0.3)
    return {"loss_auc": roc_auc(s_o[cand], labels), "rmia_1ref_auc": roc_auc(ratio, labels)}


def run_candidate(c: dict, args, record) -> None:
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.inference import accuracy, predict_logits
    from lightning_unlearn.models import build_model
    from lightning_unlearn.training import train_classifier

    dm = UnlearningDataModule(
        args.data, forget="random:0.1", seed=0, max_train=c["images"], max_test=args.max_test, augmentation=c["augmentation"],
        batch_size=c["batch_size"], cache_dir=args.cache_dir,
    )
    dm.setup()

    def fit(on: str):
        net = build_model("small-cnn", in_channels=3, num_classes=dm.num_classes, mean=dm.mean, std=dm.std, width=c["width"])
        callbacks = []
        if c["fastclip_every"]:  # every conv / linear layer clipped to spectral norm c (FastClip; c = 1 unless -c<max_norm>)
            from lightning_unlearn.callbacks import FastClip

            callbacks.append(FastClip(max_norm=c.get("fastclip") or 1.0, every_n_steps=c["fastclip_every"]))
        t0, c0 = time.perf_counter(), time.process_time()
        module = train_classifier(
            dm, on=on, model=net, epochs=c["epochs"], seed=0, lr=c["lr"], accelerator="cpu", devices=1, callbacks=callbacks
        )
        return module.model, time.perf_counter() - t0, time.process_time() - c0

    pool = torch.cat([dm.pool.train_index, dm.pool.test_index])
    is_forget = torch.isin(pool, dm.pool.train_index[dm.split.forget])
    is_test = torch.cat([torch.zeros(len(dm.pool.train_index), dtype=torch.bool), torch.ones(len(dm.pool.test_index), dtype=torch.bool)])
    from lightning_unlearn.data import IndexedTensorDataset

    everything = IndexedTensorDataset(torch.cat([dm.pool.train_x, dm.pool.test_x]), torch.cat([dm.pool.train_y, dm.pool.test_y]), pool)

    orig, t_orig, cpu_orig = fit("train")
    lo, y, _ = predict_logits(orig, everything)
    row = {
        **c,
        "augmentation": c["augmentation"] or "none",
        "n_forget": int(is_forget.sum()),
        "n_test": int(is_test.sum()),
        "threads": torch.get_num_threads(),
        "seconds_original": t_orig,
        "cpu_seconds_original": cpu_orig,
        "train_acc": accuracy(lo[~is_test], y[~is_test]),
        "test_acc": accuracy(lo[is_test], y[is_test]),
        "forget_acc_original": accuracy(lo[is_forget], y[is_forget]),
    }
    record(row)
    if row["train_acc"] < args.fit_threshold:
        row["skipped_retrain"] = f"train accuracy {row['train_acc']:.1f} < {args.fit_threshold}"
        record(row)
        return
    retr, t_retr, cpu_retr = fit("remain")
    lr_, _, _ = predict_logits(retr, everything)
    row.update(
        seconds_retrain=t_retr,
        cpu_seconds_retrain=cpu_retr,
        retrain_forget_acc=accuracy(lr_[is_forget], y[is_forget]),
        retrain_test_acc=accuracy(lr_[is_test], y[is_test]),
        retrain_remain_acc=accuracy(lr_[~is_test & ~is_forget], y[~is_test & ~is_forget]),
        **membership_aucs(lo, y, lr_, is_forget, is_test),
    )
    record(row)


def time_epochs(c: dict, args) -> float:
    """CPU seconds per epoch of the candidate's original training, over ``args.timing_epochs`` epochs."""
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.models import build_model
    from lightning_unlearn.training import train_classifier

    dm = UnlearningDataModule(
        args.data, forget="random:0.1", seed=0, max_train=c["images"], max_test=args.max_test, augmentation=c["augmentation"],
        batch_size=c["batch_size"], cache_dir=args.cache_dir,
    )
    net = build_model("small-cnn", in_channels=3, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3, width=c["width"])
    c0 = time.process_time()
    train_classifier(dm, on="train", model=net, epochs=args.timing_epochs, seed=0, lr=c["lr"], accelerator="cpu", devices=1)
    return (time.process_time() - c0) / args.timing_epochs


def readme(rows: list[dict], out: Path) -> str:
    """The results table (rewritten from ``rows``), followed by ``<out>/NOTES.md`` (the hand-written reading) if present."""
    f = lambda v, d=1: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# CPU preset search: small CNN on CIFAR-10 subsets, originals trained with crop+flip",
        "",
        "Goal: a CPU regime like the papers' (originals trained with crop+flip that still fit their",
        "training set): train accuracy >= 95%, the original's membership AUC on D_F vs D_T clearly above",
        "50, and a retrained model whose forget accuracy is close to its test accuracy; at most about",
        "3 minutes per model on one thread (a decisive setting trains 12-16 models).",
        "",
        "Commands (results.json holds every row with its command):",
        "",
        *[f"    {c}" for c in dict.fromkeys(c for r in rows for c in (r.get("command"), r.get("timing_command")) if c)],
        "",
        f"Device: {rows[0].get('device', 'CPU') if rows else 'CPU'}, {rows[0].get('threads', 1) if rows else 1} thread; "
        "the machine's two cores were shared with other jobs, so times are upper bounds.",
        "Model seed 0, forget set `random:0.1` with seed 0, one-cycle SGD (momentum 0.9, wd 5e-4), test subset "
        f"{rows[0]['n_test'] if rows else '–'} images (stratified).",
        "",
        "| candidate | aug | images | width | epochs | batch | lr | train acc | test acc | CPU s / model | wall s / model | loss AUC | "
        "RMIA-1ref AUC | "
        "retrain UA | retrain TA | retrain RA |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        secs = [s for s in (r.get("seconds_original"), r.get("seconds_retrain")) if s is not None]
        cpu = [s for s in (r.get("cpu_seconds_original"), r.get("cpu_seconds_retrain")) if s is not None]
        cpu_s = f(sum(cpu) / len(cpu), 0) if cpu else (f(r["cpu_seconds_per_epoch"] * r["epochs"], 0) + "*" if "cpu_seconds_per_epoch" in r else "–")
        lines.append(
            f"| {r['name']} | {r['augmentation']} | {r['images']} | {r['width']} | {r['epochs']} | {r.get('batch_size', 128)} | {r['lr']:g} | "
            f"{f(r.get('train_acc'))} | "
            f"{f(r.get('test_acc'))} | {cpu_s} | {f(sum(secs) / len(secs), 0) if secs else '–'} | {f(r.get('loss_auc'))} | "
            f"{f(r.get('rmia_1ref_auc'))} | {f(r.get('retrain_forget_acc'))} | {f(r.get('retrain_test_acc'))} | {f(r.get('retrain_remain_acc'))} |"
        )
    lines += [
        "",
        "Columns: train / test acc of the original (eval mode, no augmentation); CPU s / model: mean CPU seconds",
        "(process time, one thread) of the trainings of this candidate (original, and retrain when run), the",
        "machine-load-independent cost; `*`: from a short timing run (`--timing-epochs`), CPU seconds per epoch x epochs;",
        "wall s / model: the same in wall seconds under the shared machine's load; loss AUC: ROC-AUC of the original's true-label",
        "probability on D_F (members) vs D_T; RMIA-1ref AUC: RMIA ratio with the retrained model as the only (OUT)",
        "reference, offline a = 0.3; retrain UA / TA / RA: the retrained model's accuracy on D_F, D_T and D_R.",
        "A candidate whose original stays below the fit threshold gets no retrained model (`–`).",
    ]
    notes = out / "NOTES.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(os.environ.get("LIGHTNING_UNLEARN_DATA", ""), "cifar10"), help="CIFAR-10 ImageFolder tree")
    p.add_argument("--candidates", required=True, help=f"comma-separated names {GRAMMAR}")
    p.add_argument("--max-test", type=int, default=1000)
    p.add_argument("--fit-threshold", type=float, default=95.0, help="train accuracy needed before a retrained model is trained")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--timing-epochs", type=int, default=0, help="only time N epochs of each candidate's original (CPU s / epoch) into its row")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not os.path.isdir(os.path.join(args.data, "train")):
        raise SystemExit(f"no CIFAR-10 tree at {args.data!r} (set LIGHTNING_UNLEARN_DATA or pass --data)")
    cands = [parse_candidate(n.strip()) for n in args.candidates.split(",") if n.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    command = "OMP_NUM_THREADS=1 PYTHONPATH=. python " + " ".join(["benchmarks/preset_search.py", *(sys.argv[1:] if argv is None else argv)])
    from lightning_unlearn.environment import device_name

    if args.timing_epochs:
        for c in cands:
            row = next((r for r in rows if r["name"] == c["name"]), None)
            if row is None:  # a candidate only timed, not trained to the end
                row = {**c, "augmentation": c["augmentation"] or "none", "threads": torch.get_num_threads(), "timing_only": True}
                rows.append(row)
            row["cpu_seconds_per_epoch"] = time_epochs(c, args)
            row["timing_command"] = command
            path.write_text(json.dumps(rows, indent=1))
            (out / "README.md").write_text(readme(rows, out))
            print(c["name"], row["cpu_seconds_per_epoch"], flush=True)
        return
    for c in cands:
        rows = [r for r in rows if r["name"] != c["name"]]
        slot = len(rows)
        rows.append({})

        def record(row, slot=slot, rows=rows):
            rows[slot] = {**row, "device": device_name("cpu"), "command": command}
            path.write_text(json.dumps(rows, indent=1))
            (out / "README.md").write_text(readme([r for r in rows if r], out))

        print(f"== {c['name']}", flush=True)
        run_candidate(c, args, record)
        print(json.dumps(rows[slot]), flush=True)


if __name__ == "__main__":
    main()

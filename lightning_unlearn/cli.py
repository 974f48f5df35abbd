"""The ``lightning-unlearn`` command line.

``lightning-unlearn benchmark --out DIR`` runs the whole pipeline (data, original / retrained /
reference models, hyperparameter tuning, every unlearning method, the audit) and writes
``DIR/results.json``, ``DIR/report.md`` and PNG figures; see
:func:`lightning_unlearn.pipeline.run_experiment`. Bad input prints one line naming the value
and the allowed ones and exits with code 2, leaving the output directory untouched.

Exit codes: 0 done, 1 failure, 2 bad input (also: ``--out`` holds a previous run's results and
``--overwrite`` is not given), 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM. An
interrupted run prints one line saying what was kept (the models trained so far stay in the
cache and a rerun reuses them) and writes no results; ``--out`` is left as it was.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

PROG = "lightning-unlearn"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}") from None

    parse.__name__ = f"{kind.__name__} list"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Machine unlearning benchmarks and audits on PyTorch Lightning.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    b = sub.add_parser(
        "benchmark",
        help="train, unlearn with every method and audit the result against retraining",
        description="From data to an unlearning audit report: original and retrained models, every unlearning method, "
        "accuracies, SVC MIA, RMIA (and MIA-NN for class forgetting), Avg. Gap to retrain.",
    )
    d = b.add_argument_group("data")
    d.add_argument("--dataset", default="digits", help="digits (default), cifar10, cifar100, mnist, fashion-mnist, svhn, or an ImageFolder path")
    d.add_argument("--data-dir", default=None, help="folder of the torchvision data sets")
    d.add_argument("--download", action="store_true", help="let torchvision download a missing data set into --data-dir")
    d.add_argument("--max-train", type=int, default=None, help="stratified subset of the training set")
    d.add_argument("--max-test", type=int, default=None, help="stratified subset of the test set")
    d.add_argument("--forget", default="random:0.1", help="random:FRACTION (default random:0.1) or class:K[,K]")
    d.add_argument("--no-remain", action="store_true", help="methods see only the forget set")
    m = b.add_argument_group("models")
    m.add_argument("--model", default="small-cnn", help="small-cnn (default) or resnet18")
    m.add_argument("--width", type=int, default=None, help="small CNN width (channels of its first layer; default the model's, 16)")
    m.add_argument("--epochs", type=int, default=None, help="epochs of original, retrained and reference models (default per data set and model)")
    m.add_argument("--lr", type=float, default=None, help="peak learning rate of those fits (default per model)")
    m.add_argument("--batch-size", type=int, default=128)
    m.add_argument("--retrain-models", type=int, default=None, help="retrained models (default 1 per seed; 3 shared for class forgetting)")
    m.add_argument("--augmentation", default="auto", help="auto (default: crop+flip on RGB 32x32+), crop_flip or none (lets small models memorise)")
    m.add_argument("--fastclip", type=float, default=None, metavar="MAX_NORM", help="clip every layer's spectral norm to MAX_NORM during training (FastClip)")
    m.add_argument("--fastclip-every", type=int, default=10, metavar="N", help="clip every N optimizer steps (default 10)")
    u = b.add_argument_group("unlearning")
    u.add_argument("--methods", type=_csv(str), default=None, help="comma-separated rows (default: original, retrain and every method that applies)")
    u.add_argument("--seeds", type=_csv(int), default=(0,), help="comma-separated replicate seeds (default 0)")
    u.add_argument("--tune-seed", type=int, default=100, help="seed of the forget set the hyperparameters are tuned on (default 100)")
    u.add_argument("--unlearn-epochs", type=int, default=5, help="epochs of every unlearning phase (default 5)")
    u.add_argument("--unlearn-augmentation", default="auto",
                   help="unlearning phase's recipe for every method, independent of --augmentation: auto (default: the papers' code, crop+flip on D_R "
                   "and D_F for RGB 32x32+, none otherwise; AMUN's D_A unaugmented), crop_flip or none")
    u.add_argument("--unlearn-batch-size", type=int, default=128, help="batch size of every unlearning phase (default 128)")
    u.add_argument("--tune-lrs", type=_csv(float), default=None, help="learning-rate grid of every method (default: each method's own grid)")
    u.add_argument("--max-trials", type=int, default=3, help="grid points tried per method (default 3; 0: no tuning)")
    u.add_argument("--tune-class", type=int, default=None, help="class forgetting: the held-out class tuned on (default: the next class not forgotten)")
    u.add_argument("--hparams", default=None, metavar="METHOD.NAME=VALUE,...", help="fixed hyperparameters, not tuned (e.g. trw.tau=0.5,amun.lr=0.01)")
    a = b.add_argument_group("audit")
    a.add_argument("--rmia-references", type=int, default=4, help="RMIA reference models (default 4; 0 disables RMIA)")
    a.add_argument("--rmia-signal", default="softmax", help="softmax (default) or sm_taylor_softmax")
    a.add_argument("--rmia-gamma", type=float, default=2.0, help="RMIA likelihood-ratio threshold (default 2)")
    x = b.add_argument_group("execution")
    x.add_argument("--accelerator", default="auto", help="passed to every Lightning Trainer (default auto: a GPU if present)")
    x.add_argument("--devices", default="auto", help="passed to every Lightning Trainer")
    x.add_argument("--strategy", default="auto", help="passed to every Lightning Trainer")
    x.add_argument("--precision", default="32-true", help="passed to every Lightning Trainer (e.g. bf16-mixed on a GPU; default 32-true)")
    x.add_argument("--channels-last", action="store_true", help="channels-last memory format for the trained models (GPU speed)")
    x.add_argument("--device-data", action="store_true", help="keep the training set on the accelerator (one device)")
    x.add_argument("--cache-dir", default=None, help="trained models and decoded data (default ~/.cache/lightning_unlearn)")
    x.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads per process for torch (default 1: reproducible, and fastest for small models and on a shared machine)")
    x.add_argument("--out", required=True, help="output directory (results.json, report.md, figures); may exist and hold other files")
    x.add_argument("--overwrite", action="store_true",
                   help="replace the results of a previous run in --out (only files lightning-unlearn wrote; others are kept)")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    x.add_argument("-v", "--verbose", action="store_true", help="log every step")
    return parser


def config_from_args(args: argparse.Namespace):
    from lightning_unlearn.pipeline import BenchmarkConfig

    return BenchmarkConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        max_train=args.max_train,
        max_test=args.max_test,
        forget=args.forget,
        no_remain=args.no_remain,
        model=args.model,
        width=args.width,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        retrain_models=args.retrain_models,
        augmentation=args.augmentation,
        fastclip=args.fastclip,
        fastclip_every=args.fastclip_every,
        methods=args.methods,
        seeds=args.seeds,
        tune_seed=args.tune_seed,
        unlearn_epochs=args.unlearn_epochs,
        unlearn_augmentation=args.unlearn_augmentation,
        unlearn_batch_size=args.unlearn_batch_size,
        tune_lrs=args.tune_lrs,
        max_trials=args.max_trials,
        tune_class=args.tune_class,
        hparams=args.hparams,
        rmia_references=args.rmia_references,
        rmia_signal=args.rmia_signal,
        rmia_gamma=args.rmia_gamma,
        accelerator=args.accelerator,
        devices=str(args.devices),
        strategy=args.strategy,
        precision=args.precision,
        channels_last=args.channels_last,
        device_data=args.device_data,
        cache_dir=args.cache_dir,
    )


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*defined a `validation_step` but have no `val_dataloader`.*")


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _model_files(cache_root) -> set:
    """The trained-model files in the cache: ``models/*.pt`` and the RMIA references' ``references/*/ref*.pt``."""
    if cache_root is None:
        return set()
    from pathlib import Path

    root = Path(cache_root)
    return {p for pattern in ("models/*.pt", "references/*/ref*.pt") for p in root.glob(pattern) if not p.name.startswith(".")}


def _interrupted_message(err, out: str, cache_root, models_before: set, manifest_before) -> str:
    from lightning_unlearn.pipeline.output import manifest_digest

    if manifest_digest(out) not in (None, manifest_before):  # the signal came right after the report was put in place
        return f"{PROG}: interrupted by {err.signal_name} after the results were written to {out}"
    kept = len(_model_files(cache_root) - models_before)
    if cache_root is None:
        models = "nothing was trained yet"
    elif kept == 0:
        models = f"no model had finished training (the cache {cache_root} keeps what earlier runs trained)"
    else:
        one = kept == 1
        models = (f"{kept} model{'' if one else 's'} trained before the interruption {'is' if one else 'are'} kept in the cache {cache_root} "
                  f"(a rerun reuses {'it' if one else 'them'})")
    return f"{PROG}: interrupted by {err.signal_name}: no results were written ({out} is unchanged); {models}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-unlearn``; returns the exit code (0 ok, 2 bad input, 130 / 143 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        return _error(str(err))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command != "benchmark":
        parser.print_help()
        return 2
    if args.threads < 1:
        return _error(f"--threads must be a positive number of threads, got {args.threads}")
    from lightning_unlearn.pipeline.interrupt import Interrupted, handle_signals
    from lightning_unlearn.pipeline.output import manifest_digest
    from lightning_unlearn.pipeline.runner import is_rank_zero

    state: dict = {"cache_root": None, "models_before": set(), "manifest_before": manifest_digest(args.out), "progress": None}
    try:
        with handle_signals():
            return _benchmark(args, state)
    except Interrupted as err:
        if state["progress"] is not None:
            state["progress"].close()
        if is_rank_zero():
            print(_interrupted_message(err, args.out, state["cache_root"], state["models_before"], state["manifest_before"]), file=sys.stderr)
        return err.exit_code


def _benchmark(args: argparse.Namespace, state: dict) -> int:
    """The ``benchmark`` command after parsing; ``state`` records what an interruption message needs."""
    import torch

    from lightning_unlearn.pipeline import ConfigError, run_experiment, table_markdown
    from lightning_unlearn.pipeline.progress import NullProgress, make_progress, print_table
    from lightning_unlearn.pipeline.runner import is_rank_zero

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning()
    try:
        config = config_from_args(args).validate()
    except ConfigError as err:
        return _error(str(err))
    state["cache_root"] = config.cache_root
    state["models_before"] = _model_files(config.cache_root)
    progress = state["progress"] = NullProgress() if not is_rank_zero() else make_progress(quiet=args.quiet)
    try:
        results = run_experiment(config, args.out, progress=progress, overwrite=args.overwrite)
    except ConfigError as err:
        progress.close()
        state["progress"] = None
        return _error(str(err))
    progress.close()
    state["progress"] = None
    if not is_rank_zero():
        return 0
    cfg = results["config"]
    remain = "no remain" if cfg["no_remain"] else "remain"
    print_table(table_markdown(results), title=f"{cfg['dataset']} · {cfg['model']} · {cfg['forget']} · {remain} · seeds {','.join(map(str, cfg['seeds']))}")
    run = results["run"]
    print(f"report: {args.out}/report.md  ({run['seconds']:.0f} s; {run['models_trained']} models trained, {run['models_loaded']} from cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

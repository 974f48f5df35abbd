"""The ``lightning-unlearn`` command line.

``lightning-unlearn benchmark --out DIR`` runs the whole pipeline (data, original / retrained /
reference models, hyperparameter tuning, every unlearning method, the audit) and writes
``DIR/results.json``, ``DIR/report.md`` and PNG figures; see
:func:`lightning_unlearn.pipeline.run_experiment`. Its settings are the fields of
:class:`~lightning_unlearn.pipeline.BenchmarkConfig`, derived from that schema
(:mod:`lightning_unlearn.pipeline.config_file`): ``--config FILE.yaml`` reads a YAML file of
settings, ``--print_config`` prints the settings as such a file and exits, and every field is
an option in its nested spelling (``--data.max_train 400``) and its flat one (``--max-train
400``). Bad input prints one line naming the value and the allowed ones and exits with code 2,
leaving the output directory untouched.

Exit codes: 0 done, 1 failure, 2 bad input (also: ``--out`` holds a previous run's results and
``--overwrite`` is not given, or its storage holds a run with other settings), 130 / 143
interrupted by SIGINT (Ctrl-C) / SIGTERM. An interrupted run prints one line saying what was
kept and writes no results: the models trained so far stay in the cache, and every run measured
so far stays in the run's storage (``--out/study.sqlite3`` unless ``--storage`` says otherwise),
so the same command resumes where it stopped.

Many workers (:mod:`lightning_unlearn.pipeline.workers`): ``benchmark --workers N`` starts N worker
processes on this machine (one GPU each when there are GPUs); ``lightning-unlearn worker --storage
URL`` joins the run declared in that storage from anywhere (one per GPU, one per SLURM array task),
sharing the cache given by ``--cache-dir``, and exits when nothing is left; ``lightning-unlearn
report --storage URL --out DIR`` writes the report from the storage alone.
``lightning-unlearn ulira --out DIR`` adds the U-LiRA audit to the finished benchmark run in
``DIR`` (:func:`lightning_unlearn.pipeline.ulira.run_ulira`) and writes ``DIR/ulira/ulira.md``.

A subcommand is a :class:`Command` in :data:`COMMANDS`: its options, how its arguments are
rewritten before parsing, and the function that runs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jsonargparse import ArgumentParser

from lightning_unlearn.pipeline.config_values import ConfigError

if TYPE_CHECKING:
    from jsonargparse import Namespace

PROG = "lightning-unlearn"


@dataclass(frozen=True)
class Command:
    """One subcommand of ``lightning-unlearn``."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[ArgumentParser], None]
    """Adds the command's options to its parser."""
    run: Callable[[Namespace], int]
    """Runs the command on its parsed arguments; returns the exit code."""
    expand: Callable[[Sequence[str]], list[str]] = list
    """Rewrites the command's arguments before parsing (e.g. flat options to nested ones)."""


class _Parser(ArgumentParser):
    """The root parser: errors raise (one line, exit code 2, printed by :func:`main`), and each
    command's arguments are rewritten by its :attr:`Command.expand` before parsing."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(exit_on_error=False, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any):  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)  # the command's name
        if at is not None and argv[at] in COMMANDS:
            argv = argv[: at + 1] + COMMANDS[argv[at]].expand(argv[at + 1 :])
        return super().parse_args(argv, *rest, **kwargs)


def build_parser() -> ArgumentParser:
    """The parser of every command (a jsonargparse parser; ``parse_args`` raises on bad input)."""
    parser = _Parser(prog=PROG, description="Machine unlearning benchmarks and audits on PyTorch Lightning.")
    commands = parser.add_subcommands(dest="command")
    for command in COMMANDS.values():
        sub = ArgumentParser(exit_on_error=False, description=command.description)
        command.add_arguments(sub)
        commands.add_subcommand(command.name, sub, help=command.help)
    return parser


# ---------------------------------------------------------------------------- benchmark
def _benchmark_arguments(parser: ArgumentParser) -> None:
    """Every :class:`BenchmarkConfig` field (nested and flat), ``--config``, ``--print_config``, and the run's own options."""
    from lightning_unlearn.pipeline.config_file import add_config_arguments, add_run_arguments

    add_config_arguments(parser)
    add_run_arguments(parser)


def _expand_benchmark(argv: Sequence[str]) -> list[str]:
    from lightning_unlearn.pipeline.config_file import expand_flat_options

    return expand_flat_options(argv)


def config_from_args(args: Namespace):
    """The :class:`BenchmarkConfig` of parsed ``benchmark`` arguments (the root namespace or the command's)."""
    from lightning_unlearn.pipeline.config_file import config_from_namespace

    return config_from_namespace(args.benchmark if "benchmark" in args else args)


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise; the progress bar says it
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


def _stored_words(storage: str | None, study: str = "runs") -> str:
    """What the storage keeps after an interruption, or ``""`` when it holds nothing."""
    from lightning_unlearn.pipeline.store import RunStore
    from lightning_unlearn.tuning.sharing import storage_file

    if storage is None:
        return ""
    store = RunStore(storage, study=study)
    try:
        n = sum(1 for _ in store.outcomes().values()) if store.exists() else 0
    except Exception:  # a storage that cannot be read now: say nothing rather than fail the message
        return ""
    if n == 0:
        return ""
    where = storage_file(storage) or storage
    return f"; the {n} run{'' if n == 1 else 's'} measured so far {'is' if n == 1 else 'are'} kept in {where} (the same command resumes)"


def _interrupted_message(err, out: str, cache_root, models_before: set, manifest_before, storage: str | None = None, study: str = "runs") -> str:
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
    stored = _stored_words(storage, study)
    unchanged = f"{out} holds no results" if stored else f"{out} is unchanged"
    return f"{PROG}: interrupted by {err.signal_name}: no results were written ({unchanged}); {models}{stored}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-unlearn``; returns the exit code (0 ok, 2 bad input, 130 / 143 interrupted)."""
    from lightning_unlearn.pipeline.config_file import one_line

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ConfigError as err:
        return _error(str(err))
    except argparse.ArgumentError as err:
        return _error(one_line(err))
    except SystemExit as exc:  # --help, --print_config
        return int(exc.code or 0)
    return COMMANDS[args.command].run(args[args.command])


def _interrupted(run: Callable[[Namespace, dict], int], args: Namespace, message: Callable[[Any, dict], str | None]) -> int:
    """Run ``run(args, state)`` under the signal handlers; on SIGINT / SIGTERM close ``state["progress"]``, print
    ``message(err, state)`` (when not ``None``) and return 130 / 143. ``run`` records in ``state`` what the message needs."""
    from lightning_unlearn.pipeline.interrupt import Interrupted, handle_signals

    state: dict = {"progress": None}
    try:
        with handle_signals():
            return run(args, state)
    except Interrupted as err:
        if state["progress"] is not None:
            state["progress"].close()
        text = message(err, state)
        if text:
            print(text, file=sys.stderr)
        return err.exit_code


def _run_benchmark(args: Namespace) -> int:
    """The ``benchmark`` command: checks the run's options, then runs :func:`_benchmark` under the signal handlers."""
    if args.threads < 1:
        return _error(f"--threads must be a positive number of threads, got {args.threads}")
    if args.workers < 1:
        return _error(f"--workers must be a positive number of worker processes, got {args.workers}")
    from lightning_unlearn.pipeline.output import manifest_digest
    from lightning_unlearn.pipeline.runner import is_rank_zero

    manifest_before = manifest_digest(args.out)

    def message(err, state: dict) -> str | None:
        if not is_rank_zero():
            return None
        return _interrupted_message(err, args.out, state.get("cache_root"), state.get("models_before", set()), manifest_before, state.get("storage"),
                                    state.get("study", "runs"))

    return _interrupted(_benchmark, args, message)


def _benchmark(args: Namespace, state: dict) -> int:
    """The ``benchmark`` command after parsing; ``state`` records what an interruption message needs."""
    import torch

    from lightning_unlearn.pipeline import run_experiment, table_markdown
    from lightning_unlearn.pipeline.progress import NullProgress, make_progress, print_table
    from lightning_unlearn.pipeline.runner import is_rank_zero

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning()
    try:
        config = config_from_args(args).validate()
    except ConfigError as err:
        return _error(str(err))
    from pathlib import Path

    from lightning_unlearn.pipeline.runner import storage_url

    state["cache_root"] = config.cache_root
    state["models_before"] = _model_files(config.cache_root)
    state["storage"] = storage_url(config, Path(args.out).expanduser().absolute())
    state["study"] = args.study
    progress = state["progress"] = NullProgress() if not is_rank_zero() else make_progress(quiet=args.quiet)
    try:
        results = run_experiment(config, args.out, progress=progress, overwrite=args.overwrite, workers=args.workers, study=args.study)
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
    design = results["design"]
    o, f = design["shape"]
    print_table(table_markdown(results), title=f"{cfg['dataset']} · {cfg['model']} · {cfg['forget']} · {remain} · {o} originals × {f} forget sets")
    for name, section in results["objectives"].items():
        print(f"{name}: {section['statement']}")
    run = results["run"]
    print(f"report: {args.out}/report.md  ({run['seconds']:.0f} s; {run['models_trained']} models trained, {run['models_loaded']} from cache; "
          f"{run['units_run']} runs measured, {run['units_reused']} from the storage)")
    return 0


# ---------------------------------------------------------------------------- worker
def _worker_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="The run's storage URL: sqlite:///PATH, journal://PATH (a journal file on a shared "
                        "file system), or a database URL (postgresql://...); the one lightning-unlearn benchmark declared the run in.")
    parser.add_argument("--study", default="runs", help="The run's study name (the benchmark's --study; default runs).")
    parser.add_argument("--cache-dir", default=None,
                        help="This worker's cache folder (default: the declared one); workers sharing one train every model once.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1).")
    parser.add_argument("--wait", type=float, default=600.0,
                        help="Seconds to wait for the run's declaration when the storage holds none yet (default 600).")
    parser.add_argument("--name", default=None, help="Prefix of this worker's progress lines (default: worker <pid>).")
    parser.add_argument("--quiet", action="store_true", help="No progress lines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log every step.")


def _run_worker(args: Namespace) -> int:
    """The ``worker`` command: works on the run declared in ``--storage`` until nothing is left."""
    if args.threads < 1:
        return _error(f"--threads must be a positive number of threads, got {args.threads}")
    if args.wait < 0:
        return _error(f"--wait must be a number of seconds >= 0, got {args.wait}")

    def message(err, state: dict) -> str:
        return (f"{PROG} worker: interrupted by {err.signal_name}; every unit it finished stays in {args.storage}, the one it was running "
                "is taken again by the next worker (rerun this command to continue)")

    return _interrupted(_worker, args, message)


def _worker(args: Namespace, state: dict) -> int:
    import os

    import torch

    from lightning_unlearn.pipeline.progress import make_progress
    from lightning_unlearn.pipeline.store import check_study_name
    from lightning_unlearn.pipeline.workers import run_worker

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning()
    name = args.name or f"worker {os.getpid()}"
    progress = state["progress"] = make_progress(quiet=args.quiet, prefix=name)
    try:
        summary = run_worker(args.storage, study=check_study_name(args.study), cache_dir=args.cache_dir, progress=progress, wait_s=args.wait)
    except ConfigError as err:
        progress.close()
        state["progress"] = None
        return _error(str(err))
    progress.close()
    state["progress"] = None
    print(f"{name}: done ({summary['seconds']:.0f} s; {summary['models_trained']} models trained, {summary['models_loaded']} from cache; "
          f"{summary['units_run']} runs measured, {summary['units_reused']} measured by others or before)")
    return 0


# ---------------------------------------------------------------------------- report
def _report_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="The run's storage URL (as given to benchmark and worker).")
    parser.add_argument("--out", required=True, help="Output directory (results.json, report.md, figures); may exist and hold other files.")
    parser.add_argument("--study", default="runs", help="The run's study name (the benchmark's --study; default runs).")
    parser.add_argument("--overwrite", action="store_true", help="Replace the results of a previous run in --out (only files lightning-unlearn wrote).")


def _run_report(args: Namespace) -> int:
    """The ``report`` command: ``results.json``, ``report.md`` and the figures from the storage alone."""
    from lightning_unlearn.pipeline.store import check_study_name
    from lightning_unlearn.pipeline.workers import report_from_storage

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning()
    try:
        results = report_from_storage(args.storage, args.out, study=check_study_name(args.study), overwrite=args.overwrite)
    except ConfigError as err:
        return _error(str(err))
    incomplete = sorted(m for section in results["objectives"].values() for m, row in section["methods"].items() if row.get("status") == "incomplete")
    for name, section in results["objectives"].items():
        print(f"{name}: {section['statement']}")
    run = results["run"]
    tail = f"; incomplete rows: {', '.join(sorted(set(incomplete)))} (the run is not finished)" if incomplete else ""
    print(f"report: {args.out}/report.md  ({run['workers']} worker records: {run['units_run']} runs measured, {run['models_trained']} models trained){tail}")
    return 0


# ---------------------------------------------------------------------------- ulira
def _ulira_arguments(parser: ArgumentParser) -> None:
    """The options of ``lightning-unlearn ulira`` (:func:`lightning_unlearn.pipeline.ulira.run_ulira`)."""
    parser.add_argument("--out", required=True, help="The benchmark's output folder (lightning-unlearn benchmark --out); the audit writes OUT/ulira/.")
    parser.add_argument("--shadows", type=int, default=None,
                        help="Shadow pairs per forget set (default: 8 observations per example and world: 8 for class, 16 for random forgetting).")
    parser.add_argument("--seed", type=int, default=0, help="The shadows' seed (forget tables, models, unlearning runs).")
    parser.add_argument("--variance", default="auto", help="auto (one pooled variance per world below 64 observations), global or per_example.")
    parser.add_argument("--objective", default=None, help="The benchmark objective whose chosen hyperparameters are audited (default: its first; 'all').")
    parser.add_argument("--claim", default=None, help="Comma list of rows whose gap reduction is computed (default: TRW's or AMUN's rows).")
    parser.add_argument("--storage", default=None, help="The benchmark's storage URL when it is not OUT/study.sqlite3.")
    parser.add_argument("--cache-dir", default=None, help="The cache holding the benchmark's models (default: the benchmark's).")
    parser.add_argument("--accelerator", default=None, help="Override the benchmark's accelerator.")
    parser.add_argument("--devices", default=None, help="Override the benchmark's devices.")
    parser.add_argument("--overwrite", action="store_true", help="Start the audit afresh when OUT/ulira holds one with other settings.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process for torch.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def _run_ulira(args: Namespace) -> int:
    """The ``ulira`` command: the audit under the signal handlers; bad input exits 2, an interruption 130 / 143."""
    if args.threads < 1:
        return _error(f"--threads must be a positive number of threads, got {args.threads}")
    import torch

    from lightning_unlearn.pipeline.interrupt import Interrupted, handle_signals
    from lightning_unlearn.pipeline.progress import make_progress
    from lightning_unlearn.pipeline.ulira import run_ulira

    torch.set_num_threads(args.threads)
    _quiet_lightning()
    progress = make_progress(quiet=args.quiet)
    try:
        with handle_signals():
            results = run_ulira(
                args.out, shadows=args.shadows, seed=args.seed, variance=args.variance, objectives=args.objective,
                claimants=tuple(c for c in args.claim.split(",") if c) if args.claim else None, storage=args.storage, cache_dir=args.cache_dir,
                accelerator=args.accelerator, devices=args.devices, overwrite=args.overwrite, progress=progress,
            )
    except ConfigError as err:
        progress.close()
        return _error(str(err))
    except Interrupted as err:
        progress.close()
        print(f"{PROG}: interrupted by {err.signal_name}: the audit's units measured so far are kept in {args.out}/ulira/study.sqlite3 "
              "(the same command resumes)", file=sys.stderr)
        return err.exit_code
    progress.close()
    for name, section in results["objectives"].items():
        print(f"{name}: {section['statement']}")
        for claimant, claim in section["claims"].items():
            print(f"  {claimant}: {claim['reading']}")
    run = results["run"]
    print(f"report: {args.out}/ulira/ulira.md  ({run['seconds']:.0f} s; {run['units_run']} units run, {run['units_reused']} from the storage)")
    return 0


#: the subcommands, by name
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "benchmark",
            help="train, unlearn with every method and audit the result against retraining",
            description="From data to an unlearning audit report: original and retrained models, every unlearning method, "
            "accuracies, SVC MIA, RMIA (and MIA-NN for class forgetting), Avg. Gap to retrain. Settings: --config FILE.yaml, "
            "then options in their nested (--data.max_train 400) or flat (--max-train 400) spelling; --print_config prints them as YAML.",
            add_arguments=_benchmark_arguments,
            run=_run_benchmark,
            expand=_expand_benchmark,
        ),
        Command(
            "worker",
            help="work on a benchmark run declared in a storage, beside any number of other workers",
            description="Join the benchmark run declared in --storage (by lightning-unlearn benchmark ... --storage URL): train the models "
            "nobody else trains, take tuning trials and evaluation runs nobody has taken, until none is left. Run one per GPU "
            "(CUDA_VISIBLE_DEVICES) or one per SLURM array task; point them all at one cache (--cache-dir).",
            add_arguments=_worker_arguments,
            run=_run_worker,
        ),
        Command(
            "report",
            help="write results.json, report.md and the figures of a run from its storage",
            description="Build the report of the run in --storage from the storage alone (the numbers of a single-process run, "
            "whoever measured them) and write it to --out.",
            add_arguments=_report_arguments,
            run=_run_report,
        ),
        Command(
            "ulira",
            help="add the U-LiRA audit to a finished benchmark run (shadow models, every method's chosen hyperparameters)",
            description="U-LiRA (per-example likelihood-ratio attack, unlearned vs retrained) of every method of a finished benchmark run in "
            "--out, with the hyperparameters its tuning chose: shadow pairs from the cache, each method's unlearning runs as units in "
            "OUT/ulira/study.sqlite3 (an interrupted audit resumes), OUT/ulira/ulira.json and ulira.md.",
            add_arguments=_ulira_arguments,
            run=_run_ulira,
        ),
    )
}


if __name__ == "__main__":
    sys.exit(main())

"""The engine behind ``lightning-unlearn benchmark``: one call from data to an unlearning audit, under a declared protocol.

>>> from lightning_unlearn.pipeline import BenchmarkConfig, load_config, run_experiment
>>> results = run_experiment(BenchmarkConfig(forget="random:0.2", seeds=(0, 1, 2)), "out/")  # doctest: +SKIP
>>> results = run_experiment(load_config("benchmarks/configs/random_forget/digits.yaml", seeds=(0,)), "out/")  # doctest: +SKIP

Files, one job each: :mod:`.config` (the settings in six sections, validated, hashable; the seeds
contract), :mod:`.config_values` (their text forms and checks), :mod:`.config_file` (YAML files and
the command-line options, derived from the schema with jsonargparse), :mod:`.design` (originals x
forget sets, retrained models per set, tuning sets), :mod:`.protocol` (the tuning plans, the units
of work and their keys, the run's declaration), :mod:`.store` (the optuna storage holding every
measured unit), :mod:`.models` (training original and retrained models through
:func:`lightning_unlearn.training.train_classifier`, kept in the library's cache,
:mod:`lightning_unlearn.cache`), :mod:`.evaluation` (the figures of one model), :mod:`.stages`
(the run, unit by unit), :mod:`.results` (``results.json`` from the storage: cells, intervals,
paired differences, verdicts), :mod:`.report` (``report.md`` and the figures), :mod:`.output`
(atomic output directory), :mod:`.runner` (:func:`run_experiment`), :mod:`.workers` (the ``worker`` and
``report`` commands: many processes on one run, the report from a storage), :mod:`.progress` (progress
bars, table).
The U-LiRA audit stage, added to a finished run: :mod:`.ulira` (:func:`~lightning_unlearn.pipeline.ulira.run_ulira`),
:mod:`.ulira_source` (what it reads of the run), :mod:`.ulira_stage` (its units) and :mod:`.ulira_results` (``ulira.json``).
"""

from lightning_unlearn.pipeline.config import (
    AuditConfig,
    BenchmarkConfig,
    ConfigError,
    DataConfig,
    ExecutionConfig,
    ModelsConfig,
    TuningConfig,
    UnlearningConfig,
)
from lightning_unlearn.pipeline.config_file import dump_config, load_config
from lightning_unlearn.pipeline.report import table_markdown
from lightning_unlearn.pipeline.runner import run_experiment

__all__ = [
    "AuditConfig", "BenchmarkConfig", "ConfigError", "DataConfig", "ExecutionConfig", "ModelsConfig", "TuningConfig", "UnlearningConfig",
    "dump_config", "load_config", "run_experiment", "table_markdown",
]

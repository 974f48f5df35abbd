"""The engine behind ``lightning-unlearn benchmark``: one call from data to an unlearning audit.

>>> from lightning_unlearn.pipeline import BenchmarkConfig, run_experiment
>>> results = run_experiment(BenchmarkConfig(forget="random:0.1", seeds=(0, 1, 2)), "out/")  # doctest: +SKIP

Files, one job each: :mod:`.config` (the settings, validated, hashable), :mod:`.models`
(training original and retrained models through :func:`lightning_unlearn.training.train_classifier`,
kept in the library's cache, :mod:`lightning_unlearn.cache`), :mod:`.evaluation` (the figures of one model), :mod:`.stages` (the run),
:mod:`.results` (aggregation into ``results.json``), :mod:`.report` (``report.md`` and the
figures), :mod:`.output` (atomic output directory), :mod:`.progress` (progress bars, table).
"""

from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError
from lightning_unlearn.pipeline.report import table_markdown
from lightning_unlearn.pipeline.runner import run_experiment

__all__ = ["BenchmarkConfig", "ConfigError", "run_experiment", "table_markdown"]

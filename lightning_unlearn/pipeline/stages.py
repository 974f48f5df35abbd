"""The stages of a benchmark run: data, models, references, tuning and evaluation, as units of work in its storage.

:class:`Experiment` opens the data and resolves the replicate design
(:mod:`lightning_unlearn.pipeline.design`), trains (or loads from the cache) the O originals, the
R retrained models of every forget set and tuning set and the RMIA references, tunes every
method under every declared objective (:mod:`lightning_unlearn.tuning`), then measures every
cell. Every measurement is a unit of work in the run's storage
(:class:`~lightning_unlearn.pipeline.store.RunStore`): a unit already stored is not run again, so
an interrupted run resumes where it stopped and the same unlearning run needed twice runs once.
Nothing is returned: :func:`lightning_unlearn.pipeline.results.build_results` reads the storage.
See :mod:`lightning_unlearn.pipeline.config` for the seeds contract.

**One worker among any number.** :meth:`Experiment.run` is what every worker of a run does, the
single process of ``lightning-unlearn benchmark`` as well as each ``lightning-unlearn worker``
sharing its storage and cache: train the models nobody else is training (a model another live
process trains is loaded once it is stored), then take tuning trials (:func:`~lightning_unlearn.tuning.run_next_trial`)
and evaluation units (:meth:`~lightning_unlearn.pipeline.store.RunStore.try_run`) that nobody has
taken, in a fixed order, until none is left; when everything left is being done by others it waits
(polling) and finishes once the run is complete. Since every unit is seeded by its cell alone and a
TPE slot starts only after the slots before it, the stored results do not depend on how many
workers there were or which one ran what.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from lightning_unlearn.cache import ArtefactCache, BuildBusyError, CacheNotWritableError, build_count, no_waiting
from lightning_unlearn.data import UnlearningDataModule, load_source
from lightning_unlearn.pipeline import evaluation as ev
from lightning_unlearn.pipeline import protocol
from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError, training_settings
from lightning_unlearn.pipeline.design import Design, ForgetSet, design_of, run_seed
from lightning_unlearn.pipeline.models import (
    TrainedModel,
    UnlearnableClassifier,
    original_model,
    pool_dataset,
    retrained_model,
    trainer_kwargs,
)
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.pipeline.store import Outcome, RunStore, Task, take_next, work_through
from lightning_unlearn.training import seed_everything
from lightning_unlearn.tuning import DivergedError, StudyMismatchError, TuningPlan, check_finite, open_study
from lightning_unlearn.tuning.divergence import MAX_ABS_LOGIT
from lightning_unlearn.tuning.engine import next_trial, run_next_trial, tuning_result
from lightning_unlearn.unlearning import UnlearningRequest, get_method, unlearn

log = logging.getLogger(__name__)


def open_data(config: BenchmarkConfig, seed: int = 0, *, spec: str | None = None) -> UnlearningDataModule:
    """The data module of forget spec ``spec`` (default: the first forget set's) drawn with ``seed``;
    bad data input becomes :class:`ConfigError`."""
    dm = UnlearningDataModule(
        config.data.dataset,
        forget=spec or str(config.forget_spec),
        seed=seed,
        data_dir=config.data.data_dir,
        download=config.data.download,
        max_train=config.data.max_train,
        max_test=config.data.max_test,
        batch_size=config.models.batch_size,
        cache_dir=config.cache_root,
        augmentation=config.models.augmentation,
    )
    try:
        dm.setup()
    except (ValueError, FileNotFoundError, NotADirectoryError, CacheNotWritableError) as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    return dm


def adversarial_diagnostics(method: Any, retrained: list) -> dict[str, Any]:
    """How a method's adversarial set transfers to the retrained models (empty for methods without one).

    AMUN's analysis bounds the unlearned model's distance to retraining by the retrained model's
    loss on the adversarial pairs ``(x_adv, y_adv)``, so it predicts that AMUN works when its
    examples, built on the original model, *transfer* to a model that never saw the forget set.
    For a method with a public ``adversarial`` attribute holding an
    :class:`~lightning_unlearn.unlearning.AdversarialSet` (AMUN, AMUN+SalUn, adv-only; read after
    the fit), this measures :func:`~lightning_unlearn.audit.adversarial_transfer` on each
    model of ``retrained`` and averages over them:

    * ``transfer_to_retrain``: ``{"prob", "top1", "n", "retrain_models"}``: mean
      ``P_retrain(y_adv | x_adv)`` and top-1 agreement with ``y_adv`` in percent, over all of D_A;
    * ``transfer_to_retrain_perturbed``: the same over the rows with ``||delta|| > 0`` (leaving out
      forget samples the original already misclassified, whose x_adv is x itself), when any.
    """
    from lightning_unlearn.audit import adversarial_transfer
    from lightning_unlearn.unlearning import AdversarialSet

    adv = getattr(method, "adversarial", None)
    if not isinstance(adv, AdversarialSet) or len(adv) == 0 or not retrained:
        return {}

    def mean_over_models(**kwargs: Any) -> dict[str, float]:
        per = [adversarial_transfer(net, adv, **kwargs) for net in retrained]
        return {"prob": float(np.mean([p["prob"] for p in per])), "top1": float(np.mean([p["top1"] for p in per])),
                "n": per[0]["n"], "retrain_models": len(per)}

    out: dict[str, Any] = {"transfer_to_retrain": mean_over_models()}
    if bool((adv.delta > 0).any()):
        out["transfer_to_retrain_perturbed"] = mean_over_models(perturbed_only=True)
    return out


def _roc(evaluation: ev.Evaluation) -> dict[str, list] | None:
    """The RMIA scores and labels of one model (for the ROC figure), or ``None`` without RMIA."""
    if evaluation.rmia_scores is None:
        return None
    return {"scores": evaluation.rmia_scores.tolist(), "labels": evaluation.rmia_labels.tolist()}


class Experiment:
    """Runs the stages of one benchmark configuration (already validated) into ``store``.

    Call :meth:`open` (data checks and the design; the declaration is then :meth:`declaration`)
    before :meth:`run`.
    """

    def __init__(self, config: BenchmarkConfig, store: RunStore, *, progress: Progress | None = None) -> None:
        self.config = config
        self.store = store
        self.progress = progress or NullProgress()
        self.cache = ArtefactCache(config.cache_root, "models")
        self.tkw = trainer_kwargs(config)
        self.design: Design | None = None
        self.refs: ev.References | None = None
        self.originals: dict[int, TrainedModel] = {}
        self.retrains: dict[str, list[TrainedModel]] = {}
        self.mia_key = "rmia_auc" if config.audit.rmia_references > 0 else "mia"
        self._dms: dict[str, UnlearningDataModule] = {}
        self._sets: dict[str, ev.Sets] = {}
        self._outputs: dict[tuple, ev.Outputs] = {}
        self._first: UnlearningDataModule | None = None
        self._builds_before = build_count("models")

    # ------------------------------------------------------------------ data and design
    def open(self) -> Design:
        """Open the data (bad data input fails here, before any training) and resolve the design."""
        if self.design is None:
            self._first = open_data(self.config, self.config.resolved_forget_seeds[0] if self.config.kind == "random" else 0)
            self.design = design_of(self.config, self._first.num_classes)
            for fs in self.design.all_sets():  # every forget spec and class is checked before any work
                self.data(fs)
        return self.design

    def declaration(self) -> dict[str, Any]:
        design = self.open()
        assert self._first is not None
        return protocol.declaration(self.config, design, self.config.recipes(self._first.image_shape))

    def data(self, forget_set: ForgetSet) -> UnlearningDataModule:
        if forget_set.name not in self._dms:
            self._dms[forget_set.name] = open_data(self.config, forget_set.seed, spec=forget_set.spec)
        return self._dms[forget_set.name]

    def sets(self, forget_set: ForgetSet) -> ev.Sets:
        if forget_set.name not in self._sets:
            self._sets[forget_set.name] = ev.Sets.of(self.data(forget_set))
        return self._sets[forget_set.name]

    def settings(self) -> dict[str, Any]:
        fp = load_source(self.config.data.dataset, root=self.config.data.data_dir, download=False).fingerprint
        return training_settings(self.config, data_fingerprint=fp)

    # ------------------------------------------------------------------ stage: models
    def _model_tasks(self) -> list[Callable[[], str]]:
        """One task per model to train or load (originals, retrained models per set, the references together),
        each returning its progress line."""
        design, c = self.open(), self.config
        settings = self.settings()
        first = self.data(design.forget_sets[0])
        tasks: list[Callable[[], str]] = []

        def original(seed: int) -> str:
            m = self.originals[seed] = original_model(c, first, self.cache, settings, seed=seed)
            return f"original seed {seed}{' (cached)' if m.from_cache else ''}"

        def retrain(fs: ForgetSet, j: int, seed: int) -> str:
            m = self.retrains[fs.name][j] = retrained_model(c, self.data(fs), self.cache, settings, seed=seed)
            return f"retrain {fs.name} seed {seed}{' (cached)' if m.from_cache else ''}"

        def references() -> str:
            self.refs = self._references(first)
            return f"{c.audit.rmia_references} reference models"

        tasks += [lambda seed=seed: original(seed) for seed in design.originals]
        for fs in design.all_sets():
            self.retrains[fs.name] = [None] * len(fs.retrain_seeds)  # type: ignore[list-item]
            tasks += [lambda fs=fs, j=j, seed=seed: retrain(fs, j, seed) for j, seed in enumerate(fs.retrain_seeds)]
        if c.audit.rmia_references > 0:
            tasks.append(references)
        return tasks

    def train_models(self) -> None:
        """The O originals, the R retrained models of every forget set and tuning set, the RMIA references.

        Workers sharing the cache train different models at once: a model that another live
        process is training is left for later (:func:`~lightning_unlearn.cache.no_waiting`) and
        loaded once it is stored; the call returns when every model is in memory.
        """
        pending = self._model_tasks()
        with self.progress.stage("train models", total=len(pending)):
            while pending:
                left = []
                for task in pending:
                    try:
                        with no_waiting():
                            detail = task()
                    except BuildBusyError:
                        left.append(task)
                        continue
                    self.progress.advance(detail)
                if len(left) == len(pending):  # every model left is being trained by other workers
                    self.store.claims.wait()
                pending = left

    def _references(self, dm: UnlearningDataModule) -> ev.References:
        """RMIA reference models (:func:`lightning_unlearn.audit.train_reference_models`:
        each trained on a random half of the pool, train + test, cached under ``cache_dir/references``)
        and their signals on the pool, in pool order."""
        from lightning_unlearn.audit import train_reference_models

        c = self.config
        refs = train_reference_models(
            dm, c.audit.rmia_references, model=c.models.model, width=c.models.width, epochs=c.resolved_epochs, lr=c.resolved_lr,
            fastclip=c.models.fastclip, fastclip_every=c.models.fastclip_every, cache_dir=c.cache_root, **self.tkw,
        )
        signals, membership = refs.signals_by_index(pool_dataset(dm), signal=c.audit.rmia_signal)
        return ev.References(signals=signals, membership=membership)

    # ------------------------------------------------------------------ measuring
    def evaluate(self, outputs: ev.Outputs, forget_set: ForgetSet, retrain_outputs: list[ev.Outputs]) -> ev.Evaluation:
        return ev.evaluate(
            outputs, self.sets(forget_set), refs=self.refs, retrain_outputs=retrain_outputs, signal_kind=self.config.audit.rmia_signal,
            gamma=self.config.audit.rmia_gamma,
        )

    def retrain_outputs(self, forget_set: ForgetSet) -> list[ev.Outputs]:
        key = ("retrain", forget_set.name)
        if key not in self._outputs:
            self._outputs[key] = [ev.model_outputs(m.net, self.data(forget_set)) for m in self.retrains[forget_set.name]]  # type: ignore[assignment]
        return self._outputs[key]  # type: ignore[return-value]

    def original_outputs(self, seed: int) -> ev.Outputs:
        """The original's logits on the pool (the same for every forget set: one pool)."""
        key = ("original", seed)
        if key not in self._outputs:
            self._outputs[key] = ev.model_outputs(self.originals[seed].net, self.data(self.open().forget_sets[0]))
        return self._outputs[key]

    def _is_first_cell(self, original: int | None, forget_set: ForgetSet) -> bool:
        design = self.open()
        return forget_set == design.forget_sets[0] and original in (None, design.originals[0])

    def measure_retrain(self, forget_set: ForgetSet) -> dict[str, Any]:
        """Each of the R retrained models of ``forget_set`` against the other R - 1 (leave-one-out; itself when
        R = 1), and their mean figures ``star`` (the reference of every cell of the set)."""
        outs = self.retrain_outputs(forget_set)
        group = self.retrains[forget_set.name]
        evals = [self.evaluate(o, forget_set, [p for i, p in enumerate(outs) if i != j] or [o]) for j, o in enumerate(outs)]
        star = ev.star_values(evals)
        models = []
        for j, (e, m) in enumerate(zip(evals, group)):
            others = ev.star_values([f for i, f in enumerate(evals) if i != j]) if len(evals) > 1 else star
            cells = ev.cell_gaps(e.values, others, self.mia_key, self.config.kind)
            models.append({"model_seed": forget_set.retrain_seeds[j], "figures": e.values, "cells": cells, "seconds": m.seconds, "from_cache": m.from_cache})
        record: dict[str, Any] = {"figures": star, "star": star, "models": models, "sets": self.sets(forget_set).sizes()}
        if self._is_first_cell(None, forget_set):
            record["roc"] = _roc(evals[0])
            if "fastclip_norms" in group[0].meta:
                record["fastclip_norms"] = group[0].meta["fastclip_norms"]
        return record

    def star(self, forget_set: ForgetSet) -> dict[str, Any]:
        """The mean figures of ``forget_set``'s retrained models (from its stored unit, measured first if needed)."""
        unit = protocol.retrain_unit(forget_set)
        found = self.store.lookup(protocol.key(unit))
        outcome = found if found is not None else self.store.run(protocol.key(unit), lambda: self.measure_retrain(forget_set), unit)
        return outcome.record["star"]

    def measure_original(self, seed: int, forget_set: ForgetSet) -> dict[str, Any]:
        """Original ``seed``, untouched, on ``forget_set``."""
        star = self.star(forget_set)
        e = self.evaluate(self.original_outputs(seed), forget_set, self.retrain_outputs(forget_set))
        m = self.originals[seed]
        c = self.config.models
        record: dict[str, Any] = {
            "figures": e.values, "cells": ev.cell_gaps(e.values, star, self.mia_key, self.config.kind), "train_seconds": m.seconds, "from_cache": m.from_cache,
            "hparams": {"model": c.model, "epochs": self.config.resolved_epochs, "lr": self.config.resolved_lr, "batch_size": c.batch_size,
                        "schedule": "onecycle", "fastclip": c.fastclip},
        }
        if self._is_first_cell(seed, forget_set):
            record["roc"] = _roc(e)
            if "fastclip_norms" in m.meta:
                record["fastclip_norms"] = m.meta["fastclip_norms"]
        return record

    def request(self, dm: UnlearningDataModule, seed: int) -> UnlearningRequest:
        """The unlearning request of a run seeded ``seed``: the same unlearning-phase data recipe for every method
        (``unlearn_augmentation`` on D_R and D_F, ``unlearn_batch_size``), whatever the originals' recipe."""
        c = self.config
        return UnlearningRequest.from_datamodule(
            dm, use_remain=c.has_remain, batch_size=c.unlearning.unlearn_batch_size, seed=seed, augmentation=c.unlearning.unlearn_augmentation
        )

    def unlearned(self, method: str, hparams: dict[str, Any], original: int, forget_set: ForgetSet):
        """Unlearn ``forget_set`` from a copy of original ``original`` with ``method`` and ``hparams``.

        The run is seeded with :func:`~lightning_unlearn.pipeline.design.run_seed` (global random
        state, augmentation and the request's data order), so its result depends on nothing that ran
        before it (on a CPU the same call gives the same weights). Returns ``(net, outputs, method
        object, seconds)``.

        Raises:
            DivergedError: the loss, the weights or the outputs became non-finite, or a logit exceeds
                :data:`~lightning_unlearn.tuning.divergence.MAX_ABS_LOGIT` in magnitude (an exploded run).
        """
        dm = self.data(forget_set)
        seed = run_seed(original, forget_set)
        module = UnlearnableClassifier(copy.deepcopy(self.originals[original].net), num_classes=dm.num_classes, augmentation=dm.augmentation, aug_seed=seed)
        obj = get_method(method).from_hyperparameters(**hparams)
        request = self.request(dm, seed)
        seed_everything(seed)
        start = time.perf_counter()
        unlearn(module, obj, request, trainer_kwargs=self.tkw)
        seconds = time.perf_counter() - start
        net = module.model.eval()
        out = ev.model_outputs(net, dm)
        check_finite(net, [out.train, out.test], nonfinite_loss_steps=obj.nonfinite_loss_steps, max_abs_output=MAX_ABS_LOGIT)
        return net, out, obj, seconds

    def measure_method(self, method: str, hparams: dict[str, Any], original: int, forget_set: ForgetSet) -> dict[str, Any]:
        """The record of a method unit (:meth:`unlearned`, then measured): ``figures``, ``cells`` (gaps to the set's
        retrained models), ``unlearn_seconds``, the method's public ``hparams()`` and ``diagnostics()`` (for a method
        with an adversarial set also its transfer to the retrained models, :func:`adversarial_diagnostics`).

        Raises:
            DivergedError: the run diverged (:meth:`unlearned`).
        """
        star = self.star(forget_set)
        _, out, obj, seconds = self.unlearned(method, hparams, original, forget_set)
        e = self.evaluate(out, forget_set, self.retrain_outputs(forget_set))
        diagnostics = {**obj.diagnostics(), **adversarial_diagnostics(obj, [m.net for m in self.retrains[forget_set.name]])}
        record: dict[str, Any] = {"figures": e.values, "cells": ev.cell_gaps(e.values, star, self.mia_key, self.config.kind), "unlearn_seconds": seconds,
                                  "hparams": obj.hparams(), "diagnostics": diagnostics}
        if forget_set.role == "forget" and self._is_first_cell(original, forget_set):
            record["roc"] = _roc(e)
        return record

    def run_method(self, method: str, hparams: dict[str, Any], original: int, forget_set: ForgetSet) -> Outcome:
        """The stored outcome of a method unit (run when not stored yet)."""
        unit = protocol.method_unit(method, hparams, original, forget_set)
        return self.store.run(protocol.key(unit), lambda: self.measure_method(method, dict(hparams), original, forget_set), unit)

    # ------------------------------------------------------------------ stage: tuning
    def tuning_evaluate(self, method: str, hparams: dict[str, Any], k: int) -> dict[str, Any]:
        """The tuning engine's ``evaluate``: the unit of ``method`` with ``hparams`` on tuning set ``k`` (memoised)."""
        design = self.open()
        outcome = self.run_method(method, hparams, design.tuning_original(k), design.tuning_sets[k])
        self.progress.advance(f"{method} {hparams} set {k}")
        if outcome.diverged:
            raise DivergedError(outcome.reason or "the run diverged")
        return {**outcome.figures, **outcome.cells}

    def _studies(self) -> tuple[dict[tuple[str, str], TuningPlan], dict[tuple[str, str], optuna.Study]]:
        """Every tuning plan, and the studies of those with something to tune (opened, or created, in the run's storage)."""
        plans = protocol.tuning_plans(self.config, self.open())
        studies = {}
        for p, plan in plans.items():
            if plan.sampler_kind == "none":
                continue
            try:
                studies[p] = open_study(plan, storage=self.store.storage, name=self.store.tuning_study_name(plan.study_name), repair=False)
            except StudyMismatchError as err:
                raise ConfigError(str(err).replace("\n", " ")) from None
        return plans, studies

    def _choices(self, plans: dict, studies: dict, *, finished_only: bool = False) -> dict[str, dict[str, dict[str, Any] | None]]:
        """``{objective: {method: chosen hyperparameters}}`` (``None``: every trial diverged); with
        ``finished_only`` only the methods whose studies have used their budget."""
        chosen: dict[str, dict[str, dict[str, Any] | None]] = {}
        for objective in self.config.tuning.objectives:
            chosen[objective] = {}
            for method in self.config.unlearning_methods():
                plan: TuningPlan | None = plans.get((objective, method))
                if plan is None:
                    chosen[objective][method] = protocol.fixed_hparams(self.config, method)
                elif plan.sampler_kind == "none":
                    chosen[objective][method] = dict(plan.space.constants)
                elif not finished_only or next_trial(studies[(objective, method)], plan).done:
                    chosen[objective][method] = tuning_result(studies[(objective, method)], plan).chosen
        return chosen

    def tune(self) -> dict[str, dict[str, dict[str, Any] | None]]:
        """``{objective: {method: chosen hyperparameters}}`` (``None``: every trial diverged).

        Every method gets its plan's trials (:func:`~lightning_unlearn.pipeline.protocol.tuning_plans`),
        each scored on the K tuning sets; a method with nothing to tune (``max_trials == 0``, or
        every hyperparameter fixed) runs with its fixed hyperparameters. Takes the studies' next
        trials in order (objectives, then methods) while any may start; while the trials left wait
        for other workers, measures evaluation units of the methods already tuned.
        """
        plans, studies = self._studies()
        claims = self.store.claims
        with self.progress.stage("tune hyperparameters", total=sum(plans[p].n_trials * plans[p].n_sets for p in studies)):
            while True:
                if any(run_next_trial(plans[p], self.tuning_evaluate, study, claims) for p, study in studies.items()):
                    continue
                if all(next_trial(study, plans[p]).done for p, study in studies.items()):
                    break
                if not self._measure_next(self._choices(plans, studies, finished_only=True)):
                    claims.wait()
        return self._choices(plans, studies)

    # ------------------------------------------------------------------ stage: evaluation
    def _evaluation_units(self, chosen: dict[str, dict[str, dict[str, Any] | None]]) -> list[tuple[dict, Callable[[], dict], Callable[[Outcome], str]]]:
        """``(unit, measure, progress line)`` of every evaluation unit, in order: each forget set's retrained
        models, then per cell the original and every method with its chosen hyperparameters."""
        design = self.open()
        runs = {(m, protocol.key({"h": hp})): hp for per in chosen.values() for m, hp in per.items() if hp is not None}
        units: list[tuple[dict[str, Any], Callable[[], dict], Callable[[Outcome], str]]] = []
        for fs in design.forget_sets:
            units.append((protocol.retrain_unit(fs), lambda fs=fs: self.measure_retrain(fs), lambda _, fs=fs: f"retrain {fs.name}"))
        for fs in design.forget_sets:
            for o in design.originals:
                units.append((
                    protocol.original_unit(o, fs), lambda o=o, fs=fs: self.measure_original(o, fs), lambda _, o=o, fs=fs: f"original {o} on {fs.name}",
                ))
                for (method, _), hp in runs.items():
                    units.append((
                        protocol.method_unit(method, hp, o, fs), lambda method=method, hp=hp, o=o, fs=fs: self.measure_method(method, dict(hp), o, fs),
                        lambda out, method=method, o=o, fs=fs: f"{method} original {o} on {fs.name}{' (diverged)' if out.diverged else ''}",
                    ))
        return units

    def _tasks(self, chosen: dict[str, dict[str, dict[str, Any] | None]]) -> list[Task]:
        return [Task(protocol.key(unit), measure, unit) for unit, measure, _ in self._evaluation_units(chosen)]

    def _advance(self, chosen: dict[str, dict[str, dict[str, Any] | None]]) -> Callable[[Task, Outcome], None]:
        lines = {protocol.key(unit): line for unit, _, line in self._evaluation_units(chosen)}
        return lambda task, outcome: self.progress.advance(lines[task.key](outcome))

    def _measure_next(self, chosen: dict[str, dict[str, dict[str, Any] | None]]) -> bool:
        """Measure the first evaluation unit that nobody has measured or is measuring; ``False`` when there is none."""
        taken = take_next(self.store, self._tasks(chosen))
        if taken is not None:
            self._advance(chosen)(*taken)
        return taken is not None

    def run(self) -> None:
        """Every stage, into the store (units already stored are not run again), as one worker of the run
        (see the module docstring): returns once every unit of the run is measured, by this process or others."""
        design = self.open()
        self.train_models()
        chosen = self.tune()
        runs = {(m, protocol.key({"h": hp})) for per in chosen.values() for m, hp in per.items() if hp is not None}
        with self.progress.stage("evaluate", total=len(design.forget_sets) + len(design.originals) * len(design.forget_sets) * (1 + len(runs))):
            left = work_through(self.store, self._tasks(chosen), on_done=self._advance(chosen))
        if left:  # not expected: a failure raises, and a dead worker's unit is taken over
            raise RuntimeError(f"{len(left)} evaluation units were left unmeasured with no worker on them: rerun to measure them")

    def complete(self) -> bool:
        """Whether every unit of the run is measured: every tuning study has used its budget and every
        evaluation unit has an outcome (reads the storage only; no model is loaded)."""
        plans, studies = self._studies()
        if not all(next_trial(study, plans[p]).done for p, study in studies.items()):
            return False
        done, _ = self.store.taken()
        return all(protocol.key(unit) in done for unit, _, _ in self._evaluation_units(self._choices(plans, studies)))

    def counts(self) -> dict[str, int]:
        """Models trained and loaded from the cache by this process (references included), units run and reused."""
        design = self.open()
        models = design.model_count() + self.config.audit.rmia_references
        trained = build_count("models") - self._builds_before
        return {"models_trained": trained, "models_loaded": models - trained, "units_run": self.store.ran, "units_reused": self.store.reused}


__all__ = ["Experiment", "adversarial_diagnostics", "open_data", "pool_dataset"]

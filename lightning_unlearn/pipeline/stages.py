"""The stages of a benchmark run: data, models, references, tuning, unlearning, evaluation.

:class:`Experiment` holds what the stages share (data modules per seed, the model cache, the
reference signals) and runs them in order from :meth:`Experiment.run`, which returns the
raw per-model evaluations; :mod:`lightning_unlearn.pipeline.results` aggregates them.
See :mod:`lightning_unlearn.pipeline.config` for how seeds map to models.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightning_unlearn.cache import ArtefactCache, CacheNotWritableError
from lightning_unlearn.data import UnlearningDataModule, load_source
from lightning_unlearn.pipeline import evaluation as ev
from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError, training_settings
from lightning_unlearn.pipeline.models import (
    TrainedModel,
    UnlearnableClassifier,
    original_model,
    pool_dataset,
    retrained_model,
    trainer_kwargs,
)
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.training import seed_everything
from lightning_unlearn.unlearning import UnlearningRequest, get_method, unlearn

log = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """One evaluated model: a row name, its replicate seed, figures, time and hyperparameters."""

    row: str
    seed: int
    evaluation: ev.Evaluation
    seconds: float
    hparams: dict[str, Any]
    outputs: ev.Outputs | None = None
    model_seed: int | None = None
    from_cache: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    """Everything :mod:`~lightning_unlearn.pipeline.results` needs to write the report."""

    runs: list[ModelRun]
    tuning: dict[str, list[dict[str, Any]]]
    chosen: dict[str, dict[str, Any]]
    fastclip_norms: dict[str, dict[str, list[float]]]
    trained: list[str]
    loaded: list[str]
    seconds: float
    tuned_on: str = ""
    sets: dict[str, int] = field(default_factory=dict)
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)


def held_out_class(forget_classes: tuple[int, ...], num_classes: int) -> int | None:
    """The class a class-forgetting run tunes on: the first class after the forgotten ones
    (cyclically) that is not forgotten, or ``None`` when fewer than two classes would remain
    besides it."""
    if num_classes - len(forget_classes) < 3:
        return None
    k = (max(forget_classes) + 1) % num_classes
    while k in forget_classes:
        k = (k + 1) % num_classes
    return k


def open_data(config: BenchmarkConfig, seed: int) -> UnlearningDataModule:
    """The data module of replicate ``seed``; bad data input becomes :class:`ConfigError`."""
    dm = UnlearningDataModule(
        config.data.dataset,
        forget=config.data.forget,
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


def tuning_grid(method: str, config: BenchmarkConfig) -> list[dict[str, Any]]:
    """The hyperparameter trials of ``method``.

    The grids are the method's ``tunable`` (``lr`` replaced by ``tune_lrs`` when given),
    less the hyperparameters fixed in ``hparams`` (``[{}]``, no tuning, when none is left).
    When their product has at most ``max_trials`` points, all are tried; otherwise a
    diagonal of ``max_trials`` points: trial ``t`` takes, for every hyperparameter, the value at
    ``round(t (n - 1) / (max_trials - 1))`` of its ``n``-value grid, so each grid is covered from
    end to end (e.g. ``lr`` 0.1, 0.01, 0.001 with SalUn's mask ratio 0.1, 0.5, 0.9).
    """
    tuning = config.tuning
    if tuning.max_trials == 0:
        return [{}]
    grids = {k: tuple(v) for k, v in get_method(method).tunable.items()}
    if tuning.tune_lrs is not None:
        grids["lr"] = tuple(tuning.tune_lrs)
    for fixed in (config.unlearning.hparams or {}).get(method, {}):
        grids.pop(fixed, None)
    if not grids:
        return [{}]
    keys = sorted(grids)
    size = int(np.prod([len(grids[k]) for k in keys])) if keys else 1
    if size <= tuning.max_trials:
        return [dict(zip(keys, vals)) for vals in itertools.product(*(grids[k] for k in keys))]
    t_max = max(tuning.max_trials - 1, 1)
    trials: list[dict[str, Any]] = []
    for t in range(tuning.max_trials):
        trial = {k: grids[k][int(round(t * (len(grids[k]) - 1) / t_max))] for k in keys}
        if trial not in trials:
            trials.append(trial)
    return trials


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


class Experiment:
    """Runs the stages of one benchmark configuration (already validated)."""

    def __init__(self, config: BenchmarkConfig, *, progress: Progress | None = None) -> None:
        self.config = config
        self.progress = progress or NullProgress()
        self.cache = ArtefactCache(config.cache_root, "models")
        self._dms: dict[int, UnlearningDataModule] = {}
        self.refs: ev.References | None = None
        self.tkw = trainer_kwargs(config)
        self.reference_counts = (0, 0)  # (trained, loaded from the cache)
        self._tune_in_place = False  # set on the held-out sub-experiment of class forgetting
        self.tuned_on = ""

    # ------------------------------------------------------------------ data
    def data(self, seed: int) -> UnlearningDataModule:
        if seed not in self._dms:
            self._dms[seed] = open_data(self.config, seed)
        return self._dms[seed]

    def settings(self) -> dict[str, Any]:
        fp = load_source(self.config.data.dataset, root=self.config.data.data_dir, download=False).fingerprint
        return training_settings(self.config, data_fingerprint=fp)

    # ------------------------------------------------------------------ stage: models
    def _plan_models(self) -> list[tuple[str, int, int]]:
        """``(role, replicate seed, model seed)`` of every original and retrained model needed."""
        c = self.config
        tune = c.tuning.max_trials > 0 and bool(c.unlearning_methods())
        reps = list(c.unlearning.seeds) + ([c.tuning.tune_seed] if tune and c.tuning.tune_seed not in c.unlearning.seeds else [])
        if c.kind == "class":  # class forgetting tunes on a held-out class, in its own sub-experiment
            reps = list(c.unlearning.seeds)
        plan = [("original", s, s) for s in reps]
        if c.kind == "class":
            plan += [("retrain", c.unlearning.seeds[0], m) for m in c.retrain_seeds()]
        else:
            plan += [("retrain", s, m) for s in reps for m in c.retrain_seeds(s)]
        return plan

    def train_models(self, settings: dict) -> tuple[dict[int, TrainedModel], dict[int, list[TrainedModel]]]:
        plan = self._plan_models()
        k = self.config.audit.rmia_references
        originals: dict[int, TrainedModel] = {}
        retrains: dict[int, list[TrainedModel]] = {}
        with self.progress.stage("train models", total=len(plan) + (1 if k > 0 else 0)):
            for role, rep, mseed in plan:
                dm = self.data(rep)
                if role == "original":
                    originals[rep] = original_model(self.config, dm, self.cache, settings, seed=mseed)
                    m = originals[rep]
                else:
                    m = retrained_model(self.config, dm, self.cache, settings, seed=mseed)
                    retrains.setdefault(rep, []).append(m)
                self.progress.advance(f"{role} seed {mseed}{' (cached)' if m.from_cache else ''}")
            if k > 0:
                self.refs = self._references(settings)
                self.progress.advance(f"{k} reference models")
        return originals, retrains

    def _references(self, settings: dict) -> ev.References:
        """RMIA reference models (:func:`lightning_unlearn.audit.train_reference_models`:
        each trained on a random half of the pool, train + test, cached under ``cache_dir/references``)
        and their signals on the pool, in pool order."""
        from lightning_unlearn.audit import train_reference_models

        c = self.config
        dm = self.data(c.unlearning.seeds[0])
        refs = train_reference_models(
            dm, c.audit.rmia_references, model=c.models.model, width=c.models.width, epochs=c.resolved_epochs, lr=c.resolved_lr,
            fastclip=c.models.fastclip, fastclip_every=c.models.fastclip_every, cache_dir=c.cache_root, **self.tkw,
        )
        self.reference_counts = (refs.num_refs - refs.loaded_from_cache, refs.loaded_from_cache)
        signals, membership = refs.signals_by_index(pool_dataset(dm), signal=c.audit.rmia_signal)
        return ev.References(signals=signals, membership=membership)

    def retrain_group(self, rep: int, retrains: dict[int, list[TrainedModel]]) -> list[TrainedModel]:
        return retrains[self.config.unlearning.seeds[0]] if self.config.kind == "class" else retrains[rep]

    # ------------------------------------------------------------------ evaluation helpers
    def evaluate(self, outputs: ev.Outputs, dm: UnlearningDataModule, retrain_outputs: list[ev.Outputs]) -> ev.Evaluation:
        return ev.evaluate(
            outputs, ev.Sets.of(dm), refs=self.refs, retrain_outputs=retrain_outputs, signal_kind=self.config.audit.rmia_signal,
            gamma=self.config.audit.rmia_gamma,
        )

    def request(self, dm: UnlearningDataModule, seed: int) -> UnlearningRequest:
        """The unlearning request of replicate ``seed``: the same unlearning-phase data recipe for every method
        (``unlearn_augmentation`` on D_R and D_F, ``unlearn_batch_size``), whatever the originals' recipe."""
        c = self.config
        return UnlearningRequest.from_datamodule(
            dm, use_remain=c.has_remain, batch_size=c.unlearning.unlearn_batch_size, seed=seed, augmentation=c.unlearning.unlearn_augmentation
        )

    def unlearn_one(
        self, method: str, hp: dict[str, Any], original: TrainedModel, dm: UnlearningDataModule, seed: int, retrained: list[TrainedModel] | None = None
    ):
        """Unlearn ``method`` with ``hp`` (and the config's fixed ``hparams``) from a copy of ``original``.

        Returns ``(net, seconds, hparams, diagnostics)``: the method's public ``hparams()`` and
        ``diagnostics()`` (e.g. AMUN's attack statistics), recorded in ``results.json``. For a
        method that trains on an adversarial set (its public ``adversarial`` attribute, AMUN and
        its variants) the diagnostics also hold how that set transfers to the ``retrained``
        models of the replicate (:func:`adversarial_diagnostics`).
        """
        module = UnlearnableClassifier(copy.deepcopy(original.net), num_classes=dm.num_classes, augmentation=dm.augmentation, aug_seed=seed)
        fixed = (self.config.unlearning.hparams or {}).get(method, {})
        obj = get_method(method).from_hyperparameters(**{"epochs": self.config.unlearning.unlearn_epochs, **fixed, **hp})
        request = self.request(dm, seed)
        seed_everything(seed)  # a method's result must not depend on how many runs came before it
        start = time.perf_counter()
        unlearn(module, obj, request, trainer_kwargs=self.tkw)
        seconds = time.perf_counter() - start
        diagnostics = {**obj.diagnostics(), **adversarial_diagnostics(obj, [m.net for m in retrained or []])}
        return module.model.eval(), seconds, obj.hparams(), diagnostics

    def _retrain_runs(self, rep: int, group: list[TrainedModel], dm: UnlearningDataModule) -> tuple[list[ModelRun], list[ev.Outputs]]:
        outs = [ev.model_outputs(m.net, dm) for m in group]
        runs = []
        for j, m in enumerate(group):
            others = [o for i, o in enumerate(outs) if i != j] or [outs[j]]
            e = self.evaluate(outs[j], dm, others)
            runs.append(
                ModelRun("retrain", rep, e, m.seconds, self._train_hparams(), outs[j], model_seed=m.settings.get("seed"), from_cache=m.from_cache)
            )
        return runs, outs

    def _train_hparams(self) -> dict[str, Any]:
        c, m = self.config, self.config.models
        return {"model": m.model, "epochs": c.resolved_epochs, "lr": c.resolved_lr, "batch_size": m.batch_size, "schedule": "onecycle", "fastclip": m.fastclip}

    # ------------------------------------------------------------------ stage: tuning
    def tune(self, originals, retrains) -> tuple[dict[str, list[dict]], dict[str, dict]]:
        """Choose each method's hyperparameters once, by the smallest Avg. Gap.

        Random forgetting tunes on the forget set drawn with ``tune_seed``. Class forgetting
        never tunes on the class it evaluates: it tunes on a held-out class
        (:func:`held_out_class`) in a sub-experiment with the original model of ``tune_seed``
        and one model retrained without that class; with too few classes to hold one out it
        falls back to the forgotten class itself and warns.
        """
        c = self.config
        methods = c.unlearning_methods()
        if c.tuning.max_trials == 0 or not methods or all(tuning_grid(m, c) == [{}] for m in methods):
            return {}, {m: {} for m in methods}
        if c.kind == "class" and not self._tune_in_place:
            held = c.tuning.tune_class
            if held is None:
                held = held_out_class(c.forget_spec.classes, self.data(c.unlearning.seeds[0]).num_classes)
            if held is not None:
                sub = Experiment(c.replace(forget=f"class:{held}", seeds=(c.tuning.tune_seed,), retrain_models=1, tune_class=None), progress=self.progress)
                sub._tune_in_place = True
                sub.cache = self.cache  # one cache object: its models count among this run's
                sub_originals, sub_retrains = sub.train_models(sub.settings())
                self.tuned_on = f"class:{held} (held out), original seed {c.tuning.tune_seed}, 1 retrained model"
                return sub.tune(sub_originals, sub_retrains)
            log.warning("too few classes to hold one out for tuning: tuning on the forgotten classes themselves")
            self.tuned_on = f"{c.forget_spec} (the evaluated classes: too few classes to hold one out)"
            return self._tune_on(c.unlearning.seeds[0], originals, retrains, methods)
        self.tuned_on = self.tuned_on or (f"{c.forget_spec} drawn with tune seed {c.tuning.tune_seed}" if c.kind == "random" else f"{c.forget_spec}")
        return self._tune_on(c.tuning.tune_seed if c.kind == "random" else c.unlearning.seeds[0], originals, retrains, methods)

    def _tune_on(self, rep: int, originals, retrains, methods) -> tuple[dict[str, list[dict]], dict[str, dict]]:
        c = self.config
        trials = {m: tuning_grid(m, c) for m in methods}
        trials = {m: t for m, t in trials.items() if t != [{}]}  # every tunable hyperparameter fixed: nothing to tune
        history: dict[str, list[dict]] = {}
        chosen: dict[str, dict] = {}
        dm = self.data(rep)
        retrain_runs, retrain_outs = self._retrain_runs(rep, self.retrain_group(rep, retrains), dm)
        star = ev.star_values([r.evaluation for r in retrain_runs])
        mia_key = "rmia_auc" if self.refs is not None else "mia"
        with self.progress.stage("tune hyperparameters", total=sum(len(t) for t in trials.values())):
            for m in trials:
                history[m] = []
                for hp in trials[m]:
                    net, secs, _, diagnostics = self.unlearn_one(m, hp, originals[rep], dm, rep, self.retrain_group(rep, retrains))
                    e = self.evaluate(ev.model_outputs(net, dm), dm, retrain_outs)
                    g = ev.gap(e.values, star, mia_key)
                    record = {"hparams": hp, "avg_gap": g, "seconds": secs, **{k: e.values.get(k) for k in ("ua", "ra", "ta", "mia", "rmia_auc")}}
                    history[m].append({**record, "diagnostics": diagnostics} if diagnostics else record)
                    self.progress.advance(f"{m} {hp}")
                scored = [(t["avg_gap"], i) for i, t in enumerate(history[m]) if t["avg_gap"] is not None and math.isfinite(t["avg_gap"])]
                chosen[m] = trials[m][min(scored)[1]] if scored else {}
        return history, chosen

    # ------------------------------------------------------------------ stage: unlearn + evaluate
    def run(self) -> ExperimentResult:
        c = self.config
        t0 = time.perf_counter()
        dm = self.data(c.unlearning.seeds[0])  # bad data input fails here, before any training
        if c.tuning.tune_class is not None and c.tuning.tune_class >= dm.num_classes:
            raise ConfigError(f"tune_class {c.tuning.tune_class} is out of range; allowed classes are 0..{dm.num_classes - 1}")
        settings = self.settings()
        originals, retrains = self.train_models(settings)
        tuning, chosen = self.tune(originals, retrains)
        methods = c.unlearning_methods()
        runs: list[ModelRun] = []
        norms: dict[str, dict[str, list[float]]] = {}
        with self.progress.stage("unlearn & evaluate", total=len(c.unlearning.seeds) * (2 + len(methods))):
            class_retrain: tuple[list[ModelRun], list[ev.Outputs]] | None = None
            for rep in c.unlearning.seeds:
                dm = self.data(rep)
                if c.kind == "class":
                    if class_retrain is None:
                        class_retrain = self._retrain_runs(rep, self.retrain_group(rep, retrains), dm)
                        runs += class_retrain[0]
                    retrain_outs = class_retrain[1]
                else:
                    rr, retrain_outs = self._retrain_runs(rep, self.retrain_group(rep, retrains), dm)
                    runs += rr
                self.progress.advance(f"retrain seed {rep}")
                orig = originals[rep]
                out = ev.model_outputs(orig.net, dm)
                runs.append(ModelRun("original", rep, self.evaluate(out, dm, retrain_outs), orig.seconds, self._train_hparams(), out,
                                     model_seed=rep, from_cache=orig.from_cache))
                if "fastclip_norms" in orig.meta and rep == c.unlearning.seeds[0]:
                    norms["original"] = orig.meta["fastclip_norms"]
                    first = self.retrain_group(rep, retrains)[0]
                    if "fastclip_norms" in first.meta:
                        norms["retrain"] = first.meta["fastclip_norms"]
                self.progress.advance(f"original seed {rep}")
                for m in methods:
                    net, secs, hparams, diagnostics = self.unlearn_one(m, chosen.get(m, {}), orig, dm, rep, self.retrain_group(rep, retrains))
                    out = ev.model_outputs(net, dm)
                    meta = {"diagnostics": diagnostics} if diagnostics else {}
                    runs.append(ModelRun(m, rep, self.evaluate(out, dm, retrain_outs), secs, hparams, out, model_seed=rep, meta=meta))
                    self.progress.advance(f"{m} seed {rep}")
        trained_refs, loaded_refs = self.reference_counts
        trained = list(self.cache.built) + [f"reference-{i}" for i in range(trained_refs)]
        loaded = list(self.cache.loaded) + [f"reference-{i}" for i in range(loaded_refs)]
        first = self.data(c.unlearning.seeds[0])
        sets = ev.Sets.of(first).sizes()
        return ExperimentResult(
            runs, tuning, chosen, norms, trained, loaded, time.perf_counter() - t0, tuned_on=self.tuned_on, sets=sets, recipes=c.recipes(first.image_shape)
        )


__all__ = ["Experiment", "ExperimentResult", "ModelRun", "adversarial_diagnostics", "held_out_class", "open_data", "pool_dataset", "tuning_grid"]

"""The U-LiRA audit of a benchmark run: shadow pairs from the cache, unlearning runs as units of work in the audit's own storage.

Described in docs/metrics.md, section 8, and docs/protocol.md, section 14. Added to a finished
benchmark run (or one whose tuning is finished) without changing it:
:func:`~lightning_unlearn.pipeline.ulira_source.read_benchmark` reads its config, design and
chosen hyperparameters, and everything the audit measures goes to a storage of its own,
``DIR/ulira/study.sqlite3`` (declaration and units as in :mod:`lightning_unlearn.pipeline.store`),
from which ``DIR/ulira/ulira.json`` and ``ulira.md`` are built
(:mod:`lightning_unlearn.pipeline.ulira_results`). The benchmark's own storage and files are only read.

Per forget set f of the design (a random forget set, or a forgotten class):

* **shadow pairs** (:func:`~lightning_unlearn.audit.train_shadow_pairs`, seed ``shadow_seed``,
  the benchmark's training recipe): N originals trained on the whole training pool (shared by
  every forget set, every method and both random-forgetting settings) and N models retrained
  without each shadow's forget set F_i. Random forgetting: F_i are drawn from the target pool
  (D_F and as many remain samples), each example forgotten by exactly N/2 shadows; class
  forgetting: every shadow forgets the class's training images D_f (N observations per world).
  All are cache artefacts, trained once;
* unit ``shadows``: φ of every shadow original and retrained model on its F_i (inference only);
* unit ``targets``: φ of the benchmark's own O originals and R retrained models of f on D_F;
* per method and its chosen hyperparameters (under each audited objective), N units ``shadow``
  (unlearning F_i from shadow original i: the method's unlearned world) and O units ``target``
  (the benchmark's cell (o, f), unlearned again exactly as the benchmark did it:
  :meth:`~lightning_unlearn.pipeline.stages.Experiment.unlearned`, same seed and request).

A method costs ``F (N + O)`` unlearning runs; the shadow pairs cost ``N + F N`` trainings once.
A unit that diverges (non-finite loss, weights or logits, or logits beyond
:data:`~lightning_unlearn.tuning.divergence.MAX_ABS_LOGIT`) is stored as diverged and its
method's cell is marked, as in the benchmark.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lightning_unlearn.audit import ShadowPairs, forget_request, train_shadow_pairs, unlearnable
from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.metrics.functional.ulira import VARIANCES, logit_confidence
from lightning_unlearn.pipeline import protocol
from lightning_unlearn.pipeline.config import ConfigError
from lightning_unlearn.pipeline.design import ForgetSet
from lightning_unlearn.pipeline.models import original_model, retrained_model
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.pipeline.stages import Experiment
from lightning_unlearn.pipeline.store import RunStore, jsonable
from lightning_unlearn.pipeline.ulira_source import BenchmarkRun
from lightning_unlearn.seeding import derive_seed
from lightning_unlearn.training import seed_everything
from lightning_unlearn.tuning import check_finite
from lightning_unlearn.tuning.divergence import MAX_ABS_LOGIT
from lightning_unlearn.unlearning import get_method, unlearn

log = logging.getLogger(__name__)

#: the layout version of the audit's declaration and units; bump it when their meaning changes
ULIRA_VERSION = 1
#: the claims checked by default, by forgetting kind: the rows a claim is about, and the rows that are not "prior methods"
DEFAULT_CLAIMS: dict[str, dict[str, tuple[str, ...]]] = {
    "class": {"claimants": ("trw", "trw-concat"), "family": ("trw", "trw-concat")},
    "random": {"claimants": ("amun", "amun-salun"), "family": ("amun", "amun-salun", "adv-only")},
}


#: the fewest observations of each attacked example per world the benchmarks audit with (the default shadow count gives it)
MIN_PER_WORLD = 8


def default_shadows(kind: str) -> int:
    """The shadow pairs that give :data:`MIN_PER_WORLD` observations per world: 8 for class forgetting, 16 for random forgetting."""
    return MIN_PER_WORLD if kind == "class" else 2 * MIN_PER_WORLD


def per_world(kind: str, shadows: int) -> int:
    """Observations of each attacked example per world: N for class forgetting, N/2 for random forgetting."""
    return int(shadows) if kind == "class" else int(shadows) // 2


# ---------------------------------------------------------------------------- units
def shadows_unit(forget_set: ForgetSet, shadows: int, seed: int) -> dict[str, Any]:
    """φ of the N shadow originals and retrained models on their forget sets (no unlearning)."""
    return {"ulira": "shadows", "forget_set": forget_set.name, "shadows": int(shadows), "seed": int(seed)}


def targets_unit(forget_set: ForgetSet) -> dict[str, Any]:
    """φ of the benchmark's originals and retrained models of ``forget_set`` on its D_F."""
    return {"ulira": "targets", "forget_set": forget_set.name}


def shadow_unit(method: str, hparams: dict[str, Any], forget_set: ForgetSet, shadows: int, seed: int, shadow: int) -> dict[str, Any]:
    """Shadow original ``shadow`` unlearned of its forget set with ``method`` and ``hparams``."""
    return {"ulira": "shadow", "method": method, "hparams": jsonable(hparams), "forget_set": forget_set.name, "shadows": int(shadows),
            "seed": int(seed), "shadow": int(shadow)}


def target_unit(method: str, hparams: dict[str, Any], original: int, forget_set: ForgetSet) -> dict[str, Any]:
    """The benchmark's cell (``original``, ``forget_set``) of ``method`` with ``hparams``, unlearned again."""
    return {"ulira": "target", "method": method, "hparams": jsonable(hparams), "original": int(original), "forget_set": forget_set.name}


def shadow_run_seed(seed: int, forget_set: ForgetSet, shadow: int) -> int:
    """The seed of every unlearning run on shadow ``shadow`` of ``forget_set``: ``derive_seed(seed, "ulira-unlearning", name, shadow)``."""
    return derive_seed(int(seed), "ulira-unlearning", forget_set.name, int(shadow))


def audited_rows(bench: BenchmarkRun, objectives: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any] | None]]:
    """``{objective: {method: chosen hyperparameters or None}}`` of the audited objectives."""
    return {objective: dict(bench.chosen[objective]) for objective in objectives}


def resolve_objectives(bench: BenchmarkRun, objectives: tuple[str, ...] | str | None) -> tuple[str, ...]:
    """The audited objectives: the first declared (``None``), every one (``"all"``), or those named.

    Raises:
        ConfigError: an objective the benchmark did not declare.
    """
    declared = tuple(bench.config.tuning.objectives)
    if objectives is None:
        return declared[:1]
    if objectives == "all":
        return declared
    names = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    bad = [o for o in names if o not in declared]
    if bad:
        raise ConfigError(f"objective {bad[0]!r} was not declared by the benchmark; it declared {', '.join(declared)} (or 'all')")
    return names


def check_settings(shadows: int, variance: str, kind: str) -> None:
    """Raise :class:`ConfigError` for a shadow count or variance model the audit cannot use."""
    if isinstance(shadows, bool) or not isinstance(shadows, int) or shadows < 2:
        raise ConfigError(f"shadows must be an integer >= 2 (shadow pairs), got {shadows!r}")
    if kind == "random" and shadows % 2:
        raise ConfigError(f"shadows must be even for random forgetting (each example forgotten by exactly N/2 shadows), got {shadows}")
    if variance not in VARIANCES:
        raise ConfigError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")


# ---------------------------------------------------------------------------- the stage
class ULiRAStage:
    """Runs the U-LiRA units of one benchmark run into ``store`` (see the module docstring).

    Args:
        bench: the benchmark run (:func:`~lightning_unlearn.pipeline.ulira_source.read_benchmark`).
        store: the audit's storage (its declaration is :meth:`declaration`).
        shadows: N, shadow pairs per forget set (>= 2; even for random forgetting).
        seed: the shadows' seed (forget tables, models, unlearning runs).
        variance: the Gaussian fit's variance model (:func:`~lightning_unlearn.metrics.functional.ulira_fit`).
        objectives: the audited objectives (:func:`resolve_objectives`).
        progress: progress display (default: silent).
    """

    def __init__(
        self, bench: BenchmarkRun, store: RunStore, *, shadows: int, seed: int = 0, variance: str = "auto", objectives: tuple[str, ...] | str | None = None,
        progress: Progress | None = None,
    ) -> None:
        check_settings(shadows, variance, bench.config.kind)
        self.bench, self.store = bench, store
        self.config = bench.config
        self.shadows, self.seed, self.variance = int(shadows), int(seed), variance
        self.objectives = resolve_objectives(bench, objectives)
        self.rows = audited_rows(bench, self.objectives)
        self.progress = progress or NullProgress()
        self.experiment = Experiment(self.config, store)
        self._settings: dict[str, Any] | None = None
        self.counts = {"shadow_models_trained": 0, "shadow_models_loaded": 0}

    def declaration(self) -> dict[str, Any]:
        """The audit's declaration: the benchmark's resolved config and design, N, the seed, the variance model, the rows."""
        return jsonable({
            "version": ULIRA_VERSION, "audit": "ulira",
            "benchmark": {"config": self.config.to_dict(), "design": self.bench.design.to_dict()},
            "shadows": self.shadows, "seed": self.seed, "variance": self.variance, "per_world": per_world(self.config.kind, self.shadows),
            "objectives": list(self.objectives), "rows": self.rows,
        })

    def methods(self) -> list[tuple[str, dict[str, Any]]]:
        """Every distinct (method, hyperparameters) audited (identical choices under two objectives run once)."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for per in self.rows.values():
            for m, hp in per.items():
                if hp is not None:
                    out.setdefault(protocol.key({"m": m, "h": hp}), (m, dict(hp)))
        return list(out.values())

    # ------------------------------------------------------------------ models
    def _training_settings(self) -> dict[str, Any]:
        if self._settings is None:
            self._settings = self.experiment.settings()
        return self._settings

    def shadow_pairs(self, dm: UnlearningDataModule) -> ShadowPairs:
        """The N shadow pairs of ``dm``'s forget set, from the cache (trained there the first time)."""
        c = self.config
        pairs = train_shadow_pairs(
            dm, self.shadows, model=c.models.model, width=c.models.width, epochs=c.resolved_epochs, lr=c.resolved_lr, fastclip=c.models.fastclip,
            fastclip_every=c.models.fastclip_every, seed=self.seed, cache_dir=c.cache_root, **self.experiment.tkw,
        )
        self.counts["shadow_models_loaded"] += pairs.loaded_from_cache
        self.counts["shadow_models_trained"] += 2 * pairs.num_shadows - pairs.loaded_from_cache
        return pairs

    def _original(self, seed: int) -> None:
        if seed not in self.experiment.originals:
            first = self.experiment.data(self.bench.design.forget_sets[0])
            self.experiment.originals[seed] = original_model(self.config, first, self.experiment.cache, self._training_settings(), seed=seed)

    # ------------------------------------------------------------------ measuring
    def measure_shadows(self, pairs: ShadowPairs, dm: UnlearningDataModule) -> dict[str, Any]:
        """φ of each shadow original and retrained model on its forget set, the target pool, the forget table and their seeds."""
        n, t = pairs.num_shadows, len(pairs.target_index)
        phi_o = torch.full((n, t), float("nan"), dtype=torch.float64)
        phi_r = torch.full_like(phi_o, float("nan"))
        for i in range(n):
            cols = torch.nonzero(pairs.forget[i]).flatten()
            index = pairs.target_index[cols]
            phi_o[i, cols] = pairs.phi(pairs.originals[i], index)
            phi_r[i, cols] = pairs.phi(pairs.retrained[i], index)
        record = {"target_pool": pairs.target_index, "forget": pairs.forget.int(), "phi_original": phi_o, "phi_retrained": phi_r,
                  "forget_table_seed": derive_seed(self.seed, "ulira-forget"), "shadow_cache": pairs.config}
        if not dm.is_class_forgetting:
            record["target_pool_seed"] = derive_seed(int(dm.seed), "ulira-target-pool")
        return record

    def measure_targets(self, forget_set: ForgetSet) -> dict[str, Any]:
        """φ of the benchmark's originals and of ``forget_set``'s retrained models on its D_F."""
        dm = self.experiment.data(forget_set)
        sets = self.experiment.sets(forget_set)
        data = dm.train_set().subset(sets.forget)
        settings = self._training_settings()

        def phi(net: torch.nn.Module) -> torch.Tensor:
            from lightning_unlearn.inference import predict_logits

            logits, labels, _ = predict_logits(net, data, batch_size=dm.eval_batch_size)
            return logit_confidence(logits, labels)

        originals = []
        for o in self.bench.design.originals:
            self._original(o)
            originals.append(phi(self.experiment.originals[o].net))
        retrained = [phi(retrained_model(self.config, dm, self.experiment.cache, settings, seed=s).net) for s in forget_set.retrain_seeds]
        return {"index": data.index, "originals": originals, "retrained": retrained, "retrain_seeds": list(forget_set.retrain_seeds)}

    def measure_shadow(self, method: str, hparams: dict[str, Any], pairs: ShadowPairs, dm: UnlearningDataModule, forget_set: ForgetSet, i: int) -> dict:
        """Unlearn shadow ``i``'s forget set from a copy of its original; φ on that set.

        Raises:
            DivergedError: the run diverged (as the benchmark's check: loss steps, weights, logits).
        """
        c = self.config
        seed = shadow_run_seed(self.seed, forget_set, i)
        index = pairs.forget_index(i)
        request = forget_request(dm, index, use_remain=c.has_remain, batch_size=c.unlearning.unlearn_batch_size,
                                 augmentation=c.unlearning.unlearn_augmentation, seed=seed)
        module = unlearnable(copy.deepcopy(pairs.originals[i]), dm, seed=seed)
        obj = get_method(method).from_hyperparameters(**hparams)
        seed_everything(seed)
        start = time.perf_counter()
        unlearn(module, obj, request, trainer_kwargs=self.experiment.tkw)
        seconds = time.perf_counter() - start
        net = module.model.eval()
        logits, labels = pairs.logits(net, index)
        check_finite(net, [logits], nonfinite_loss_steps=obj.nonfinite_loss_steps, max_abs_output=MAX_ABS_LOGIT)
        return {"index": index, "phi": logit_confidence(logits, labels), "unlearn_seconds": seconds}

    def measure_target(self, method: str, hparams: dict[str, Any], original: int, forget_set: ForgetSet) -> dict[str, Any]:
        """The benchmark's cell, unlearned again (same seed and request); φ on D_F.

        Raises:
            DivergedError: the run diverged.
        """
        self._original(original)
        _, out, _, seconds = self.experiment.unlearned(method, hparams, original, forget_set)
        sets = self.experiment.sets(forget_set)
        phi = logit_confidence(out.train[sets.forget], sets.train_y[sets.forget])
        return {"index": sets.pool_index[sets.forget], "phi": phi, "unlearn_seconds": seconds}

    # ------------------------------------------------------------------ the run
    def _store(self, unit: dict[str, Any], execute: Callable[[], dict[str, Any]]):
        return self.store.run(protocol.key(unit), execute, unit)

    def run(self) -> None:
        """Every unit of every forget set, into the storage (units already stored are not run again)."""
        design = self.bench.design
        methods = self.methods()
        per_set = 2 + len(methods) * (self.shadows + len(design.originals))
        with self.progress.stage("U-LiRA audit", total=len(design.forget_sets) * per_set):
            for fs in design.forget_sets:
                self._run_forget_set(fs, methods)

    def _run_forget_set(self, fs: ForgetSet, methods: list[tuple[str, dict[str, Any]]]) -> None:
        dm = self.experiment.data(fs)
        held: list[ShadowPairs] = []

        def pairs() -> ShadowPairs:  # trained (or loaded) only when a unit needs them
            if not held:
                held.append(self.shadow_pairs(dm))
            return held[0]

        self._store(shadows_unit(fs, self.shadows, self.seed), lambda: self.measure_shadows(pairs(), dm))
        self.progress.advance(f"{self.shadows} shadow pairs of {fs.name}")
        self._store(targets_unit(fs), lambda: self.measure_targets(fs))
        self.progress.advance(f"benchmark models on {fs.name}")
        for method, hp in methods:
            for i in range(self.shadows):
                unit = shadow_unit(method, hp, fs, self.shadows, self.seed, i)
                outcome = self._store(unit, lambda method=method, hp=hp, i=i: self.measure_shadow(method, hp, pairs(), dm, fs, i))
                self.progress.advance(f"{method} shadow {i} of {fs.name}{' (diverged)' if outcome.diverged else ''}")
            for o in self.bench.design.originals:
                outcome = self._store(target_unit(method, hp, o, fs), lambda method=method, hp=hp, o=o: self.measure_target(method, hp, o, fs))
                self.progress.advance(f"{method} original {o} on {fs.name}{' (diverged)' if outcome.diverged else ''}")
        held.clear()


def default_out(folder: str | Path) -> Path:
    """The audit's folder inside a benchmark's output folder: ``DIR/ulira``."""
    return Path(folder).expanduser().absolute() / "ulira"


__all__ = [
    "DEFAULT_CLAIMS", "MIN_PER_WORLD", "ULIRA_VERSION", "ULiRAStage", "audited_rows", "check_settings", "default_out", "default_shadows", "per_world",
    "resolve_objectives", "shadow_run_seed", "shadow_unit", "shadows_unit", "target_unit", "targets_unit",
]

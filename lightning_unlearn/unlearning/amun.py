"""AMUN: Adversarial Machine UNlearning (Ebrahimpour-Boroojeny et al., ICML 2025, arXiv 2503.00917).

[P] is the paper, [R] the authors' code (repository ``Ali-E/AMUN``). At the start of the
unlearning fit (when Lightning first asks for its data: the model is on its device and, under
DDP, the process group exists) the adversarial set D_A is built **once**
on the current model with the minimal-ε PGD-L2 search
(:func:`~lightning_unlearn.unlearning.adversarial.build_adversarial_set`, sharded across
ranks and gathered). The model is then fine-tuned with mean cross-entropy on **one
concatenated, uniformly shuffled** dataset (batch 128, no reweighting between parts):

============  ===========================  ===========
variant       with D_R                     D_F only
============  ===========================  ===========
``amun``      D_R ∪ D_F ∪ D_A              D_F ∪ D_A
``adv-only``  D_R ∪ D_A                    D_A
============  ===========================  ===========

D_F keeps its true labels, D_A carries y_adv. D_R and D_F get the training augmentation, D_A
none (``augment_adv=True`` reproduces [R]'s ``amun_rand``).

Continual requests ([P] §6.3, AMUN-A): each ``start_unlearning`` + ``fit`` is one request, and
``setup`` rebuilds D_A on the model as it is then (AMUN-A). Passing a precomputed
``adversarial_set`` (built on θ_o, e.g. with :meth:`AMUNMixin.precompute_adversarial_set`)
instead reuses its rows for the request's forget indices (plain AMUN across requests).

Defaults ([P] App. C, [R]): SGD momentum 0.9, weight decay 5e-4, 10 epochs, lr 0.01,
StepLR(step_size=1, γ=0.1) (the [R] README example); both are tuned on a grid.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lightning_unlearn.attacks.pgd_l2 import DEFAULT_EPS_INIT, EpsInit
from lightning_unlearn.unlearning.adversarial import AdversarialSet, build_adversarial_set
from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningMixin, UnlearningRequest, world_of
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.phases import ADVERSARIAL, FORGET, REMAIN, Phase, module_loader, tagged_concat
from lightning_unlearn.unlearning.registry import register_method
from lightning_unlearn.unlearning.saliency import MaskMode, SaliencyFreeze, SaliencyMasked

log = logging.getLogger(__name__)

Variant = Literal["amun", "adv-only"]
RANDOM_SETTINGS = frozenset({("random", True), ("random", False)})


@register_method
class AMUN(UnlearningMethod):
    """Fine-tuning on D_F and its minimal-radius adversarial examples (and D_R when available).

    Args:
        variant: ``"amun"`` (D_F ∪ D_A [∪ D_R]) or ``"adv-only"`` (D_A [∪ D_R]).
        eps_init: first attack radius in pixel units of ``[0, 1]`` inputs (default
            :data:`~lightning_unlearn.attacks.DEFAULT_EPS_INIT`, ``0.04``: [R]'s hard-coded value
            and the first bin of [P] Fig. 4 on CIFAR-10, the default of the whole attack path), or ``"auto"``: the
            quantile rule of [P] App. E.1's text with ``n_calib``, ``eps_calib``, ``q`` (see
            :mod:`lightning_unlearn.attacks.pgd_l2`; with ``q=0.95`` it starts the search above
            most samples' minimal radius). Set a number or ``"auto"`` for other input scales.
        steps, max_rounds, restart_each_round: see :func:`~lightning_unlearn.attacks.pgd_l2_search`.
        attack_batch_size: attack batch (128).
        augment_adv: also augment D_A (default ``False``).
        adversarial_set: a precomputed D_A to reuse (rows selected by the request's forget
            indices); default ``None``: built on the current model at the start of the fit.
        lr, epochs, step_size, normalizer, ...: see :class:`~lightning_unlearn.unlearning.UnlearningMethod`
            (defaults lr 0.01, 10 epochs, step_size 1). ``normalizer`` is applied in the attack
            (which searches in pixel space) and in the fine-tuning alike.

    Attributes:
        adversarial: the :class:`AdversarialSet` of the current request (after ``setup``; kept
            after the fit for inspection). :meth:`diagnostics` summarises it.
    """

    name = "amun"
    supported = RANDOM_SETTINGS

    def __init__(
        self,
        *,
        variant: Variant = "amun",
        eps_init: EpsInit = DEFAULT_EPS_INIT,
        steps: int = 50,
        max_rounds: int = 12,
        restart_each_round: bool = False,
        attack_batch_size: int = 128,
        augment_adv: bool = False,
        n_calib: int = 100,
        eps_calib: float = 0.01,
        q: float = 0.95,
        adversarial_set: AdversarialSet | None = None,
        lr: float = 0.01,
        step_size: int | None = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, step_size=step_size, **kwargs)
        if variant not in ("amun", "adv-only"):
            raise ValueError(f"unknown AMUN variant {variant!r}: expected 'amun' or 'adv-only'")
        if eps_init != "auto" and not (isinstance(eps_init, (int, float)) and eps_init > 0):
            raise ValueError(f"eps_init must be a positive number or 'auto', got {eps_init!r}")
        self.variant, self.eps_init, self.steps, self.max_rounds = variant, eps_init, steps, max_rounds
        self.restart_each_round, self.attack_batch_size, self.augment_adv = restart_each_round, attack_batch_size, augment_adv
        self.n_calib, self.eps_calib, self.q = n_calib, eps_calib, q
        self.precomputed = adversarial_set
        self.adversarial: AdversarialSet | None = None

    def attack_kwargs(self) -> dict[str, Any]:
        return dict(
            eps_init=self.eps_init, steps=self.steps, max_rounds=self.max_rounds, restart_each_round=self.restart_each_round,
            normalizer=None if self.normalizer is None else self.normalize, n_calib=self.n_calib, eps_calib=self.eps_calib, q=self.q,
        )

    def setup(self, module, request: UnlearningRequest) -> None:
        """Build D_A on the current model (or select it from the precomputed set)."""
        if self.precomputed is not None:
            idx = torch.cat([b[2] for b in torch.utils.data.DataLoader(request.forget, batch_size=4096)])
            self.adversarial = self.precomputed.select(idx)
            return
        strategy = module.trainer.strategy if world_of(module)[1] > 1 else None
        self.adversarial = build_adversarial_set(
            module, request.forget, batch_size=self.attack_batch_size, strategy=strategy, seed=request.seed, **self.attack_kwargs()
        )
        a = self.adversarial
        log.info(
            "AMUN: D_A of %d examples (eps_init %.4g, mean delta %.4g, %.2f PGD-50 passes, %.1f s)",
            len(a), a.eps_init, float(a.delta.mean()) if len(a) else 0.0, a.cost_in_pgd50_passes, a.seconds,
        )

    def fit_state(self) -> dict[str, Any]:
        """D_A as built at the start of the fit (never rebuilt on resume: the weights have moved since)."""
        assert self.adversarial is not None, "AMUN.setup() builds D_A first"
        return {**super().fit_state(), "adversarial": self.adversarial.state_dict()}

    def restore(self, module, request: UnlearningRequest, state: dict[str, Any]) -> None:
        """Take D_A from the checkpoint instead of attacking the partly unlearned model again."""
        super().restore(module, request, state)
        self.adversarial = AdversarialSet.from_state_dict(state["adversarial"])

    def train_dataloader(self, module, request: UnlearningRequest):
        assert self.adversarial is not None, "AMUN.setup() builds D_A before the loader is requested"
        parts = []
        if request.remain is not None:
            parts.append((request.remain, REMAIN))
        if self.variant == "amun":
            parts.append((request.forget, FORGET))
        if len(self.adversarial):
            parts.append((self.adversarial.dataset(), ADVERSARIAL))
        if not parts:
            raise RuntimeError("AMUN adv-only without D_R: no forget sample found an adversarial example, nothing to train on")
        data = tagged_concat(parts, float_pixels=True)
        return module_loader(module, [Phase("mixed", data, batch_size=request.batch_size, seed=self.stream_seed("main"))])

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        mask = None if self.augment_adv else batch.source != ADVERSARIAL
        return F.cross_entropy(module(self.inputs(module, batch.x, batch_idx, mask=mask)), batch.y)

    def diagnostics(self) -> dict[str, Any]:
        """The attack's statistics for the last request: ``n_forget``, ``n_adv`` (|D_A|), ``n_unresolved``,
        ``eps_init``, ``pgd50_passes`` (cost in 50-step PGD passes over D_F; the paper's bound is < 3),
        ``attack_seconds``, ``mean_delta`` (mean ``||x_adv - x||_2``); ``{}`` before any setup; and the
        base class's (``nonfinite_loss_steps`` when a step's loss was not finite)."""
        a = self.adversarial
        if a is None:
            return super().diagnostics()
        return {
            **super().diagnostics(),
            "n_forget": int(a.n_forget), "n_adv": len(a), "n_unresolved": int(a.n_unresolved), "eps_init": float(a.eps_init),
            "pgd50_passes": float(a.cost_in_pgd50_passes), "attack_seconds": float(a.seconds),
            "mean_delta": float(a.delta.mean()) if len(a) else None,
        }


@register_method
class AMUNSalUn(SaliencyMasked, AMUN):
    """AMUN with SalUn's gradient-saliency mask ([P] App. D; [R] ``amun_sa`` / ``advonly_sa``).

    The mask is computed once on θ_o over D_F (:mod:`~lightning_unlearn.unlearning.saliency`)
    and only the masked-in entries are updated (true freeze by default).

    Args:
        mask_ratio: r (default 0.5, tuned in 0.1..0.9).
        mask_mode: ``"freeze"`` (default) or ``"grad_only"`` ([R]).
        **kwargs: see :class:`AMUN` (``variant`` included).
    """

    name = "amun-salun"

    def __init__(self, *, mask_ratio: float = 0.5, mask_mode: MaskMode = "freeze", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.saliency = SaliencyFreeze(ratio=mask_ratio, mask_mode=mask_mode)
        self.mask_ratio, self.mask_mode = mask_ratio, mask_mode


@register_method
class AdvOnly(AMUN):
    """AMUN's ``adv-only`` variant: D_R ∪ D_A (with D_R) or D_A alone (helps when D_F is large, [P] §4)."""

    name = "adv-only"

    def __init__(self, *, variant: Variant = "adv-only", **kwargs: Any) -> None:
        super().__init__(variant=variant, **kwargs)


class AMUNMixin(UnlearningMixin):
    """An :class:`~lightning_unlearn.unlearning.UnlearningMixin` whose default method is AMUN.

    Mix it in first; the user's ``training_step`` keeps serving normal training::

        class Model(AMUNMixin, MyClassifier): ...

        model.start_amun(request, lr=0.01)        # AMUN on the request
        trainer.fit(model)                         # builds D_A at the start of the fit, then fine-tunes
        model.stop_unlearning()

    ``start_amun(request, method="amun-salun", mask_ratio=0.5)`` and ``method="adv-only"``
    select the variants. For a sequence of requests call ``start_amun`` + ``fit`` per
    request: D_A is rebuilt on the current model each time (AMUN-A); pass
    ``adversarial_set=model.precompute_adversarial_set(all_forget)`` to reuse examples
    computed once on θ_o (plain AMUN).
    """

    def start_amun(self, request: UnlearningRequest, *, method: str = "amun", **hyperparameters: Any) -> AMUN:
        """``start_unlearning(method, request, **hyperparameters)`` for a registered AMUN variant
        (``"amun"``, ``"amun-salun"``, ``"adv-only"``, or one of your own subclasses of :class:`AMUN`)."""
        return self._start_variant(AMUN, method, request, hyperparameters)

    def precompute_adversarial_set(self, forget, **attack_kwargs: Any) -> AdversarialSet:
        """D_A for ``forget`` (items ``(x, y, index)``) on the current weights, outside a fit (single process);
        ``eps_init`` defaults to :data:`~lightning_unlearn.attacks.DEFAULT_EPS_INIT`, as AMUN's."""
        return build_adversarial_set(self, forget, **attack_kwargs)

"""PGD-L2 with a minimal-epsilon search: AMUN's attack ([P] §4, Algorithm 1; [R] ``pgdl2_modified.py``).

[P]: *Not All Wrong is Bad: Using Adversarial Examples for Unlearning* (ICML 2025, arXiv
2503.00917); [R]: the authors' code, repository ``Ali-E/AMUN``; [R+]: its later
``AMUN_all_in_one.py``. Inputs ``x`` are pixels in ``[0, 1]^d`` (no normalisation: a model that
expects normalised inputs carries its normalisation inside its forward, or one passes
``normalizer``); ε, the projection and the clamp all refer to that space.

Per sample, vectorised over a batch with an *active* mask (no Python loop over samples):

1. ``x' <- x`` (no random start), ``ε <- ε_init``, ``α <- 0.1 ε``;
2. a round is ``steps = 50`` steps; each step first **checks**: ``ŷ = argmax F(x')``; if
   ``ŷ != y`` the sample is recorded (``x_adv = x'``, ``y_adv = ŷ``, ``ε_final = ε``,
   ``δ = ||x' - x||_2``) and deactivated (so a sample misclassified at ``x`` gets
   ``x_adv = x`` and ``δ = 0`` exactly); otherwise
   ``g = grad_x' CE(F(x'), y)`` (untargeted ascent on the true label),
   ``g <- g / (||g||_2 + 1e-10)``, ``x' <- x' + α g``, ``δ <- (x' - x) min(1, ε / ||x' - x||)``,
   ``x' <- clamp(x + δ, 0, 1)``;
3. samples still classified as y after a round get ``ε <- 2ε``, ``α <- 0.1 ε`` and the next
   round **continues from the current x'** (``restart_each_round=True`` restarts from x, the
   literal reading of [P]'s pseudo-code);
4. library guard ([R] loops without bound): stop after ``max_rounds`` (12) or once ε would
   exceed ``sqrt(d)`` (the L2 diameter of ``[0, 1]^d``). The last iterate of a stopped
   sample is checked once more (recorded with the ε it was produced under); samples still
   unresolved are flagged ``found=False``, counted in a warning and excluded from D_A.

A sample fooled by the last step of a round is detected by the first check of the next
round and therefore recorded with the doubled ε, as in [R]; ``||δ|| <= ε_final`` holds
either way.

One step is one batched forward + backward over the active samples (the check reuses the
step's logits); ``AttackResult.n_grad`` counts per-sample forward/backward evaluations, the
unit of the paper's cost bound ("< 3 PGD-50 passes" = ``150 |D_F|``).

Choosing ε_init. Three readings exist, and the sources disagree:

* ``0.04``, hard-coded in [R] and the first bin of [P] Fig. 4 (CIFAR-10, ResNet-18, inputs in
  [0, 1], where about a quarter of the samples finish at 0.04 and most by 0.32).
  :data:`DEFAULT_EPS_INIT`: the default of the whole path, :func:`pgd_l2_search`,
  :func:`~lightning_unlearn.unlearning.build_adversarial_set` and
  :class:`~lightning_unlearn.unlearning.AMUN` alike.
* ``"auto"`` with ``q=0.95``, the text of [P] App. E.1 ("choose ε_init so that at least 95% of
  about 100 forget samples find an adversarial example within it"): attacks ``n_calib=100``
  seeded-random samples from ``eps_calib=0.01`` and takes the ``q``-quantile of their ε_final.
  ``q=0.5`` reproduces [R+]'s median, ``q=0.05`` the "start where examples begin to appear"
  reading that fits [P] Fig. 4.
* A number of your own, for inputs on another scale (the search is in ``[0, 1]`` pixels, so
  that is rarely needed; ``"auto"`` is scale-free).

Consequence of ``q=0.95``, measured in ``benchmarks/results/amun_attack_cost.json`` (small CNN on
CIFAR-10): ``"auto"`` chose an ε_init above most samples' final radius, so nearly all samples
resolved in the first round, at a larger mean ‖δ‖ than from 0.04, whose ε_final spread like [P]
Fig. 4. A high quantile makes the doubling search start above most samples' minimal radius; the
attack then no longer looks for the *minimal* perturbation the method relies on (a small
‖x_adv - x‖ tightens [P] Theorem 4.1).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.models.normalize import apply_normalizer

log = logging.getLogger(__name__)

EpsInit = float | Literal["auto"]
#: The first attack radius of the whole AMUN path (attack, adversarial set, method), in pixel
#: units of ``[0, 1]`` inputs: [R]'s hard-coded value and the first bin of [P] Fig. 4 (CIFAR-10).
DEFAULT_EPS_INIT: float = 0.04


@dataclass
class AttackResult:
    """Per-sample output of :func:`pgd_l2_search` (all tensors have leading size B).

    Attributes:
        x_adv: ``(B, C, H, W)`` float32 adversarial inputs (``x`` itself where not found).
        y_adv: ``(B,)`` int64 the model's (wrong) prediction at ``x_adv``; ``-1`` where not found.
        eps_final: ``(B,)`` float32 the radius the example was found under (last ε tried
            where not found).
        delta_norm: ``(B,)`` float32 ``||x_adv - x||_2``.
        clean_pred: ``(B,)`` int64 the prediction at ``x``.
        found: ``(B,)`` bool whether an adversarial example was found.
        n_grad: per-sample forward/backward evaluations spent (cost).
        n_calls: batched forward calls of the model.
    """

    x_adv: torch.Tensor
    y_adv: torch.Tensor
    eps_final: torch.Tensor
    delta_norm: torch.Tensor
    clean_pred: torch.Tensor
    found: torch.Tensor
    n_grad: int = 0
    n_calls: int = 0

    def __len__(self) -> int:
        return len(self.y_adv)

    def to(self, device) -> "AttackResult":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return AttackResult(**{name: (v.to(device) if torch.is_tensor(v) else v) for name, v in values.items()})


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _check_args(steps: int, step_ratio: float, max_rounds: int, eps_init) -> None:
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if not 0 < step_ratio <= 1:
        raise ValueError(f"step_ratio must be in (0, 1], got {step_ratio}")
    if max_rounds <= 0:
        raise ValueError(f"max_rounds must be positive, got {max_rounds}")
    if eps_init != "auto" and not (isinstance(eps_init, (int, float)) and eps_init > 0):
        raise ValueError(f"eps_init must be a positive number or 'auto', got {eps_init!r}")


def _search(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    eps_init: float,
    steps: int,
    step_ratio: float,
    max_rounds: int,
    restart_each_round: bool,
) -> AttackResult:
    b, dev = x0.shape[0], x0.device
    view = (-1,) + (1,) * (x0.dim() - 1)
    eps_max = math.sqrt(x0[0].numel())
    xa = x0.clone()
    eps = torch.full((b,), float(eps_init), device=dev)
    active = torch.ones(b, dtype=torch.bool, device=dev)
    found = torch.zeros(b, dtype=torch.bool, device=dev)
    x_adv = x0.clone()
    y_adv = torch.full((b,), -1, dtype=torch.long, device=dev)
    eps_final = eps.clone()
    clean_pred = torch.full((b,), -1, dtype=torch.long, device=dev)
    n_grad = n_calls = 0

    def record(idx: torch.Tensor, xs: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Record fooled samples among ``idx`` and deactivate them; returns the keep mask."""
        fooled = pred != y[idx]
        done = idx[fooled]
        x_adv[done] = xs[fooled]
        y_adv[done] = pred[fooled]
        eps_final[done] = eps[done]
        found[done] = True
        active[done] = False
        return ~fooled

    def final_check(idx: torch.Tensor) -> None:
        nonlocal n_calls
        if idx.numel() == 0:
            return
        with torch.no_grad():
            pred = forward(xa[idx]).argmax(dim=1)
        n_calls += 1
        record(idx, xa[idx], pred)

    for r in range(max_rounds):
        if r > 0:
            # ε doubles for the samples still classified as y; those whose next ε would leave
            # the L2 diameter of the box stop here (their last iterate is checked once more).
            stop = active & (2 * eps > eps_max)
            final_check(stop.nonzero().flatten())
            active &= ~stop
            eps = torch.where(active, 2 * eps, eps)
            if restart_each_round:
                xa = torch.where(active.view(view), x0, xa)
        for s in range(steps):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            xs = xa[idx].detach().requires_grad_(True)
            logits = forward(xs)
            n_calls += 1
            n_grad += idx.numel()
            pred = logits.argmax(dim=1)
            if r == 0 and s == 0:
                clean_pred[idx] = pred
            keep = record(idx, xs.detach(), pred)
            if not keep.any():
                break
            loss = F.cross_entropy(logits[keep], y[idx][keep], reduction="sum")
            g = torch.autograd.grad(loss, xs)[0][keep]
            kidx = idx[keep]
            g = g / (g.flatten(1).norm(dim=1).view(view) + 1e-10)
            e = eps[kidx]
            x_new = xs.detach()[keep] + (step_ratio * e).view(view) * g
            delta = x_new - x0[kidx]
            dn = delta.flatten(1).norm(dim=1)
            factor = torch.where(dn > 0, torch.clamp(e / torch.where(dn > 0, dn, torch.ones_like(dn)), max=1.0), torch.ones_like(dn))
            xa[kidx] = torch.clamp(x0[kidx] + delta * factor.view(view), 0.0, 1.0)
        if not active.any():
            break
    final_check(active.nonzero().flatten())
    eps_final = torch.where(found, eps_final, eps)  # unresolved: the last radius tried
    delta_norm = (x_adv - x0).flatten(1).norm(dim=1)
    return AttackResult(x_adv, y_adv, eps_final, delta_norm, clean_pred, found, n_grad, n_calls)


def _quantile_eps(res: AttackResult, q: float, eps_calib: float) -> float:
    vals = torch.where(res.found, res.eps_final, torch.full_like(res.eps_final, math.inf))
    e = float(torch.quantile(vals.double().cpu(), q, interpolation="higher"))
    if not math.isfinite(e):
        finite = res.eps_final[res.found]
        e = float(finite.max()) if finite.numel() else eps_calib
        warnings.warn(f"eps_init='auto': fewer than {q:.0%} of the calibration samples found an adversarial example; using {e}", stacklevel=3)
    return e


def pgd_l2_search(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps_init: EpsInit = DEFAULT_EPS_INIT,
    steps: int = 50,
    step_ratio: float = 0.1,
    max_rounds: int = 12,
    restart_each_round: bool = False,
    normalizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_calib: int = 100,
    eps_calib: float = 0.01,
    q: float = 0.95,
    seed: int = 0,
) -> AttackResult:
    """Minimal-ε PGD-L2 adversarial examples for one batch (see the module docstring).

    Args:
        model: a classifier of pixels in ``[0, 1]`` (or of ``normalizer(x)``). It is put in
            eval mode for the attack and every submodule's mode is restored afterwards; its
            parameters and their ``.grad`` are never written (input gradients come from
            ``torch.autograd.grad``).
        x: ``(B, C, H, W)`` pixels, ``uint8`` or float in ``[0, 1]``; moved to the model's device.
        y: ``(B,)`` true labels.
        eps_init: the first radius (default :data:`DEFAULT_EPS_INIT`, 0.04), or ``"auto"``
            (quantile rule on ``n_calib`` samples of this batch; :func:`calibrate_eps_init`
            calibrates on a whole forget set).
        steps: PGD steps per round (50); step_ratio: α / ε (0.1).
        max_rounds: at most this many ε values ``eps_init * 2^k`` (12).
        restart_each_round: restart each round from ``x`` (default: continue, as [R]).
        normalizer: optional transform of the pixels before ``model`` (a module is moved to
            the model's device); ε, the projection and the clamp stay in pixel space.

    Returns:
        An :class:`AttackResult` on the model's device, computed in float32 with autocast off.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> r = pgd_l2_search(net, torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long), eps_init=0.1)
        >>> bool(((r.y_adv != 0) | ~r.found).all())
        True
    """
    _check_args(steps, step_ratio, max_rounds, eps_init)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    dev = _model_device(model)
    x0 = to_pixels(x.to(dev)).detach()
    if x0.numel() and (x0.min() < 0 or x0.max() > 1):
        raise ValueError(f"inputs must be pixels in [0, 1], got values in [{float(x0.min()):.3g}, {float(x0.max()):.3g}]")
    y = y.to(dev).long()
    if eps_init == "auto":
        eps_init = calibrate_eps_init(
            model, x0, y, n_calib=n_calib, eps_calib=eps_calib, q=q, seed=seed, steps=steps, step_ratio=step_ratio,
            max_rounds=max_rounds, restart_each_round=restart_each_round, normalizer=normalizer,
        )
    modes = {m: m.training for m in model.modules()}
    model.eval()
    forward = model if normalizer is None else (lambda t: model(apply_normalizer(normalizer, t)))
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(dev.type, enabled=False):
            res = _search(
                lambda t: forward(t).float(), x0, y, eps_init=float(eps_init), steps=steps, step_ratio=step_ratio,
                max_rounds=max_rounds, restart_each_round=restart_each_round,
            )
    finally:
        for m, mode in modes.items():
            m.train(mode)
    n_lost = int((~res.found).sum())
    if n_lost:
        log.warning("PGD-L2 search: %d of %d samples found no adversarial example within %d rounds / eps <= sqrt(d)", n_lost, len(res), max_rounds)
    return res


def calibration_search(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, n_calib: int = 100, eps_calib: float = 0.01, seed: int = 0, **attack_kwargs
) -> AttackResult:
    """The attack from ``eps_calib`` on ``min(n_calib, B)`` samples drawn with ``manual_seed(seed)``."""
    if n_calib <= 0 or eps_calib <= 0:
        raise ValueError(f"n_calib and eps_calib must be positive, got {n_calib} and {eps_calib}")
    n = min(n_calib, x.shape[0])
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return pgd_l2_search(model, x[pick.to(x.device)], y[pick.to(y.device)], eps_init=eps_calib, **attack_kwargs)


def eps_from_calibration(res: AttackResult, *, q: float = 0.95, eps_calib: float = 0.01) -> float:
    """The ``q``-quantile (``interpolation="higher"``: a grid value ``eps_calib * 2^k``) of ε_final,
    unresolved samples counting as +inf (then the largest found ε, with a warning)."""
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    return _quantile_eps(res, q, eps_calib)


def calibrate_eps_init(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_calib: int = 100,
    eps_calib: float = 0.01,
    q: float = 0.95,
    seed: int = 0,
    **attack_kwargs,
) -> float:
    """ε_init by the quantile rule (see the module docstring): :func:`calibration_search` then
    :func:`eps_from_calibration`."""
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    res = calibration_search(model, x, y, n_calib=n_calib, eps_calib=eps_calib, seed=seed, **attack_kwargs)
    e = eps_from_calibration(res, q=q, eps_calib=eps_calib)
    log.info("eps_init='auto': %.4g (q=%.2f over %d samples from eps_calib=%.3g)", e, q, len(res), eps_calib)
    return e

"""AMUN's adversarial set D_A: built once on the current model, sharded across ranks, gathered.

Described in docs/methods/amun.md, section 3. The forget set is cut into fixed attack batches (``batch_size``, in dataset
order); under DDP rank ``r`` attacks batches ``r, r + W, ...``, then every rank all-gathers
``(index, x_adv, y_adv, ε_final, δ, ...)`` and sorts by index, so all ranks hold the
identical D_A (never computed independently per rank: nondeterministic kernels could
diverge). Because each attack batch is the same as in a single-process build, a DDP build on
CPU equals the single-process one bit for bit. ``eps_init="auto"`` is calibrated once on the
whole forget set (on rank 0, then broadcast).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.attacks.pgd_l2 import DEFAULT_EPS_INIT, EpsInit, calibration_search, eps_from_calibration, pgd_l2_search
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.data.transforms import to_pixels

log = logging.getLogger(__name__)


@dataclass
class AdversarialSet:
    """D_A: one row per forget sample whose search succeeded, sorted by dataset index.

    Attributes:
        x: ``(N, C, H, W)`` float32 adversarial inputs in ``[0, 1]`` (no 8-bit quantisation).
        y: ``(N,)`` the adversarial labels y_adv (the model's wrong predictions).
        index: ``(N,)`` pool indices of the source forget samples.
        eps: ``(N,)`` ε_final; delta: ``(N,)`` ``||x_adv - x||_2``.
        y_true: ``(N,)`` the true labels; clean_pred: ``(N,)`` predictions at x.
        eps_init: the ε_init used; n_unresolved: forget samples left out (no example found).
        n_grad: per-sample forward/backward evaluations spent, calibration included.
        n_forget: size of the forget set attacked; seconds: wall time of the build.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    eps: torch.Tensor
    delta: torch.Tensor
    y_true: torch.Tensor
    clean_pred: torch.Tensor
    eps_init: float
    n_unresolved: int = 0
    n_grad: int = 0
    n_forget: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def dataset(self) -> IndexedTensorDataset:
        """Items ``(x_adv, y_adv, index)``."""
        return IndexedTensorDataset(self.x, self.y, self.index)

    @property
    def cost_in_pgd50_passes(self) -> float:
        """Attack cost in units of one 50-step PGD pass over the forget set ([P]: < 3)."""
        return self.n_grad / (50.0 * max(1, self.n_forget))

    _TENSORS = ("x", "y", "index", "eps", "delta", "y_true", "clean_pred")
    _SCALARS = ("eps_init", "n_unresolved", "n_grad", "n_forget", "seconds")

    def state_dict(self) -> dict[str, Any]:
        """Every field as CPU tensors and numbers (loads with ``torch.load(weights_only=True)``)."""
        return {
            **{k: getattr(self, k).detach().cpu() for k in self._TENSORS},
            **{k: getattr(self, k) for k in self._SCALARS},
            "extra": dict(self.extra),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "AdversarialSet":
        """The set saved by :meth:`state_dict`; raises ``ValueError`` when a field is missing or the rows disagree."""
        missing = [k for k in cls._TENSORS + cls._SCALARS if k not in state]
        if missing:
            raise ValueError(f"adversarial-set state lacks {', '.join(missing)}")
        rows = {k: int(state[k].shape[0]) for k in cls._TENSORS}
        if len(set(rows.values())) != 1:
            raise ValueError(f"adversarial-set state has fields of different lengths: {rows}")
        return cls(**{k: state[k] for k in cls._TENSORS + cls._SCALARS}, extra=dict(state.get("extra", {})))

    def select(self, indices: torch.Tensor) -> "AdversarialSet":
        """The rows whose source index is in ``indices`` (AMUN across continual requests)."""
        keep = torch.isin(self.index, torch.as_tensor(indices, dtype=torch.long))
        return AdversarialSet(
            self.x[keep], self.y[keep], self.index[keep], self.eps[keep], self.delta[keep], self.y_true[keep],
            self.clean_pred[keep], self.eps_init, n_forget=int(keep.sum()),
        )


def _load_all(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(dataset, IndexedTensorDataset):
        return dataset.x, dataset.y, dataset.index
    xs, ys, idx = [], [], []
    for b in DataLoader(dataset, batch_size=1024, shuffle=False):
        if not isinstance(b, (list, tuple)) or len(b) < 3:
            raise TypeError(
                "the forget set's items must be (x, y, index); build an UnlearningRequest or IndexedSplits from (x, y) or dict "
                "items: they number the samples and check them"
            )
        xs.append(b[0]), ys.append(b[1]), idx.append(b[2])
    return torch.cat(xs), torch.cat(ys).long(), torch.cat(idx).long()


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters())).device


def build_adversarial_set(
    model: nn.Module,
    forget: Dataset,
    *,
    eps_init: EpsInit = DEFAULT_EPS_INIT,
    batch_size: int = 128,
    strategy: Any = None,
    seed: int = 0,
    n_calib: int = 100,
    eps_calib: float = 0.01,
    q: float = 0.95,
    **attack_kwargs: Any,
) -> AdversarialSet:
    """Attack every sample of ``forget`` (items ``(x, y, index)``) with :func:`pgd_l2_search`.

    Args:
        model: the current model (θ_o), pixels in ``[0, 1]`` -> logits.
        forget: the forget set D_F.
        eps_init: a number (default :data:`~lightning_unlearn.attacks.DEFAULT_EPS_INIT`, 0.04),
            or ``"auto"`` (calibrated once on ``n_calib`` samples of the whole forget set, drawn
            with ``seed``).
        batch_size: attack batch size (128, as [R]); fixes the sharding unit under DDP.
        strategy: a Lightning strategy (``trainer.strategy``) when ``world_size > 1``:
            shards the attack and gathers the result (``all_gather``, ``broadcast``).
        **attack_kwargs: ``steps``, ``step_ratio``, ``max_rounds``, ``restart_each_round``,
            ``normalizer`` of :func:`pgd_l2_search`.

    Returns:
        The :class:`AdversarialSet` (on CPU), identical on every rank.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    t0 = time.perf_counter()
    x, y, index = _load_all(forget)
    n = len(y)
    if n == 0:
        raise ValueError("the forget set is empty: nothing to attack")
    world = getattr(strategy, "world_size", 1) if strategy is not None else 1
    rank = getattr(strategy, "global_rank", 0) if strategy is not None else 0
    dev = _device(model)
    n_grad_calib = 0
    if eps_init == "auto":
        # calibrated on rank 0 only and broadcast, so every rank attacks with the same ε_init
        e, cost = None, 0
        if rank == 0:
            res = calibration_search(model, to_pixels(x.to(dev)), y.to(dev), n_calib=n_calib, eps_calib=eps_calib, seed=seed, **attack_kwargs)
            e, cost = eps_from_calibration(res, q=q, eps_calib=eps_calib), res.n_grad
        if world > 1:
            e, cost = strategy.broadcast((e, cost), src=0)
        eps_init, n_grad_calib = float(e), int(cost)
        log.info("AMUN eps_init='auto' -> %.4g (q=%.2f, %d calibration samples)", eps_init, q, min(n_calib, n))
    n_chunks = math.ceil(n / batch_size)
    mine = [c for c in range(n_chunks) if c % world == rank]
    parts = []
    for c in mine:
        sl = slice(c * batch_size, min(n, (c + 1) * batch_size))
        r = pgd_l2_search(model, x[sl], y[sl], eps_init=eps_init, **attack_kwargs)
        parts.append((index[sl].to(dev), y[sl].to(dev), r))
    sizes = [sum(min(n, (c + 1) * batch_size) - c * batch_size for c in range(n_chunks) if c % world == rr) for rr in range(world)]
    fields_ = _stack_local(parts, x, dev)
    if world > 1:
        fields_ = _gather(fields_, sizes, rank, strategy)
    order = torch.argsort(fields_["index"])
    f = {k: v[order].cpu() for k, v in fields_.items() if k != "n_grad"}
    found = f["found"]
    n_grad = int(fields_["n_grad"]) + n_grad_calib
    out = AdversarialSet(
        f["x_adv"][found].contiguous(), f["y_adv"][found], f["index"][found], f["eps"][found], f["delta"][found],
        f["y_true"][found], f["clean_pred"][found], float(eps_init), n_unresolved=int((~found).sum()), n_grad=n_grad, n_forget=n,
        seconds=time.perf_counter() - t0,
    )
    if out.n_unresolved:
        log.warning("AMUN: %d of %d forget samples found no adversarial example and are left out of D_A", out.n_unresolved, n)
    return out


def _stack_local(parts, x: torch.Tensor, dev: torch.device) -> dict[str, torch.Tensor]:
    if not parts:
        shape = (0, *x.shape[1:])
        z = torch.zeros(0, device=dev)
        return {
            "x_adv": torch.zeros(shape, device=dev), "y_adv": z.long(), "index": z.long(), "eps": z, "delta": z,
            "y_true": z.long(), "clean_pred": z.long(), "found": z.bool(), "n_grad": torch.zeros((), dtype=torch.long, device=dev),
        }
    return {
        "x_adv": torch.cat([r.x_adv for _, _, r in parts]),
        "y_adv": torch.cat([r.y_adv for _, _, r in parts]),
        "index": torch.cat([i for i, _, _ in parts]),
        "eps": torch.cat([r.eps_final for _, _, r in parts]),
        "delta": torch.cat([r.delta_norm for _, _, r in parts]),
        "y_true": torch.cat([yt for _, yt, _ in parts]),
        "clean_pred": torch.cat([r.clean_pred for _, _, r in parts]),
        "found": torch.cat([r.found for _, _, r in parts]),
        "n_grad": torch.tensor(sum(r.n_grad for _, _, r in parts), dtype=torch.long, device=dev),
    }


def _gather(local: dict[str, torch.Tensor], sizes: list[int], rank: int, strategy) -> dict[str, torch.Tensor]:
    """All-gather variable-length per-rank rows (padded to the largest share, then trimmed)."""
    m = max(sizes)
    out: dict[str, torch.Tensor] = {}
    for k, v in local.items():
        if k == "n_grad":
            out[k] = strategy.all_gather(v.view(1)).sum()
            continue
        is_bool = v.dtype == torch.bool  # gloo has no bool all_gather
        v = v.to(torch.uint8) if is_bool else v
        pad = torch.zeros((m - v.shape[0], *v.shape[1:]), dtype=v.dtype, device=v.device)
        g = strategy.all_gather(torch.cat([v, pad]))  # (W, m, ...)
        g = torch.cat([g[r, : sizes[r]] for r in range(len(sizes))])
        out[k] = g.bool() if is_bool else g
    return out

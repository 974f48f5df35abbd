"""``RMIA``: the RMIA audit as a torchmetrics ``Metric`` (docs/metrics.md, section 5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch

from lightning_unlearn.metrics._base import SPLITS, IndexedRecords, check_index, split_code
from lightning_unlearn.metrics.functional.rmia import rmia_scores
from lightning_unlearn.metrics.functional.roc import roc_auc, tpr_at_fpr
from lightning_unlearn.metrics.functional.signals import softmax_signal, taylor_softmax_signal

Signal = Literal["softmax", "sm_taylor_softmax"]
#: the signal names, in order (the benchmark's ``rmia_signal`` choices)
SIGNALS: tuple[str, ...] = get_args(Signal)
#: (key prefix, member split, non-member split): FT is the [P] headline.
PAIRS: tuple[tuple[str, str, str], ...] = (("ft", "forget", "test"), ("fr", "remain", "forget"), ("rt", "remain", "test"))


def compute_signal(logits: torch.Tensor, labels: torch.Tensor, signal: Signal, **kwargs: Any) -> torch.Tensor:
    """Pr(x | θ) of each sample: ``softmax`` or ``sm_taylor_softmax`` (:mod:`..functional.signals`)."""
    if signal == "softmax":
        return softmax_signal(logits.float(), labels, **kwargs)
    if signal == "sm_taylor_softmax":
        return taylor_softmax_signal(logits.float(), labels, **kwargs)
    raise ValueError(f"signal must be one of {', '.join(map(repr, SIGNALS))}, got {signal!r}")


def tpr_key(fpr: float) -> str:
    return f"ft_tpr@{fpr:g}"


def _pair_auc(scores, split, member: str, nonmember: str, seeds, fn) -> float:
    pos = torch.nonzero(split == SPLITS[member]).flatten()
    neg = torch.nonzero(split == SPLITS[nonmember]).flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    if not seeds:
        idx = torch.cat([pos, neg])
        return fn(scores[idx], torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]))
    vals = []
    n = min(pos.numel(), neg.numel())
    for s in seeds:  # [R]: each set subsampled to the smaller size, AUCs averaged
        gen = torch.Generator().manual_seed(int(s))
        p = pos[torch.randperm(pos.numel(), generator=gen)[:n].to(pos.device)]
        q = neg[torch.randperm(neg.numel(), generator=gen)[:n].to(neg.device)]
        vals.append(fn(scores[torch.cat([p, q])], torch.cat([torch.ones_like(p), torch.zeros_like(q)])))
    return float(sum(vals) / len(vals))


class RMIA(IndexedRecords):
    """RMIA membership audit of one (e.g. unlearned) model against R reference models.

    Update with the audited model's eval-mode logits on D_F, D_R and D_T (split tags
    ``"forget"``, ``"remain"``, ``"test"``) with their pool indices. ``compute()`` gathers,
    de-duplicates by (split, index), sorts by index, converts to signals, and scores every
    record against the **population** = all recorded samples of ``population_splits`` except x
    itself (AMUN: the whole 60k pool with θ = the unlearned model). It returns, in percent:

    - ``ft_auc``: AUC of the scores with D_F = 1 vs D_T = 0 (the [P] headline; retrain ≈ 50),
    - ``fr_auc``: D_R = 1 vs D_F = 0, ``rt_auc``: D_R = 1 vs D_T = 0,
    - ``ft_tpr@<fpr>`` for each of ``tpr_fprs``: TPR at that FPR on the FT pair,

    with ``nan`` for pairs whose sets were not recorded, as tensors in the metric's dtype
    (``float32``; ``set_dtype`` for another). Per-sample scores of the last compute are kept in
    ``self.last_scores`` (``index``, ``split``, ``score``). The values are a dict, so log them with
    ``self.log_dict(rmia.compute())`` (and ``rmia.reset()``) in ``on_validation_epoch_end``, as for
    any dict-valued torchmetrics metric; ``metric(...)`` records like ``update`` and returns ``None``.

    Each pool index must be recorded under one split, and records repeated for one sample (as
    ``DistributedSampler`` padding repeats samples) must carry the same logits (compared through
    their signal, within float noise); otherwise ``compute()`` raises ``ValueError`` naming the
    index and the splits.

    Args:
        ref_signals: ``(R, P)`` reference-model signals indexed by pool index (P >= every index),
            computed with the same ``signal`` (e.g. by :mod:`lightning_unlearn.audit.references`).
            A constructor input, not a state; kept on the CPU.
        signal: ``"softmax"`` (default; true-label probability) or ``"sm_taylor_softmax"``
            (RMIA paper configs / AMUN: pass ``signal_kwargs`` to change T, m, n).
        membership: ``(R, P)`` bool, True where reference r trained on sample p. Needed for the
            offline mode only, which averages over OUT references per sample.
        gamma: γ > 0 (default 2: the RMIA paper's experiment configurations, AMUN and the
            benchmark's ``--rmia-gamma``; the privacy-meter tool's ``run_rmia`` uses 1). For one
            target model γ changes the AUC only through ties and saturation (see
            :func:`~lightning_unlearn.metrics.functional.rmia_scores`).
        offline_a: ``None`` = online (AMUN), or a in [0, 1] (offline, e.g. 0.3).
        strict: LR > γ (default) or LR >= γ.
        population_splits: split names forming the population (default: all recorded).
        subsample_seeds: AMUN's subsampling of each AUC pair to equal sizes, averaged over these
            seeds; default ``None`` = full sets.
        tpr_fprs: FPRs (fractions) at which the FT TPR is reported.
        proportiontocut: trimmed mean of the reference signals ([Z] configs: 0.2; online only).
        kwargs: ``torchmetrics.Metric`` options (``compute_on_cpu``, ``sync_on_compute``, ...).

    Example:
        >>> ref = torch.rand(4, 100) * 0.9 + 0.05
        >>> m = RMIA(ref)
        >>> logits = torch.randn(100, 10); labels = torch.randint(0, 10, (100,))
        >>> m.update(logits[:50], labels[:50], torch.arange(50), "forget")
        >>> m.update(logits[50:], labels[50:], torch.arange(50, 100), "test")
        >>> sorted(m.compute())
        ['fr_auc', 'ft_auc', 'ft_tpr@0.001', 'ft_tpr@0.01', 'rt_auc']
    """

    higher_is_better = None
    # one population entry per sample: a pool index under two splits, or two different signals
    # for one sample, would make the scores depend on which record was kept
    agreeing_states = ("target_signal",)
    one_split_per_index = True

    def __init__(
        self,
        ref_signals: torch.Tensor,
        *,
        signal: Signal = "softmax",
        signal_kwargs: dict[str, Any] | None = None,
        membership: torch.Tensor | None = None,
        gamma: float = 2.0,
        offline_a: float | None = None,
        strict: bool = True,
        population_splits: Sequence[str] | None = None,
        subsample_seeds: Sequence[int] | None = None,
        tpr_fprs: Sequence[float] = (0.01, 0.001),
        proportiontocut: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        ref = torch.as_tensor(ref_signals)
        if ref.ndim != 2 or not ref.is_floating_point() or ref.shape[0] == 0:
            raise ValueError(f"ref_signals must be a float (R, P) tensor with R >= 1, got {ref.dtype} {tuple(ref.shape)}")
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(map(repr, SIGNALS))}, got {signal!r}")
        if not (float(gamma) > 0):
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        if offline_a is not None and not 0.0 <= float(offline_a) <= 1.0:
            raise ValueError(f"offline_a must be None or in [0, 1], got {offline_a!r}")
        if membership is not None:
            membership = torch.as_tensor(membership)
            if membership.dtype != torch.bool or membership.shape != ref.shape:
                raise ValueError(f"membership must be a bool tensor of shape {tuple(ref.shape)}, got {membership.dtype} {tuple(membership.shape)}")
        if offline_a is not None and membership is None:
            raise ValueError("offline_a needs the membership matrix (to average over OUT references only)")
        bad = [s for s in (population_splits or ()) if s not in SPLITS]
        if bad:
            raise ValueError(f"population_splits must be names from {tuple(SPLITS)}, got {bad}")
        self.ref_signals = ref.detach().cpu()
        self.membership = None if membership is None else membership.cpu()
        self.signal, self.signal_kwargs = signal, dict(signal_kwargs or {})
        self.gamma, self.offline_a, self.strict = float(gamma), offline_a, bool(strict)
        self.population_splits = None if population_splits is None else tuple(population_splits)
        self.subsample_seeds = tuple(subsample_seeds or ())
        self.tpr_fprs = tuple(float(f) for f in tpr_fprs)
        if not 0.0 <= float(proportiontocut) < 0.5 or (proportiontocut and offline_a is not None):
            raise ValueError(f"proportiontocut must lie in [0, 0.5) and needs the online mode, got {proportiontocut!r}")
        self.proportiontocut = float(proportiontocut)
        self.last_scores: dict[str, torch.Tensor] | None = None
        self._add_record_states(["target_signal", "labels"])

    def update(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, split: str | int | torch.Tensor) -> None:
        """Record a batch: ``logits`` (B, K) of the audited model (eval mode), ``labels`` (B,), pool ``index`` (B,), ``split``."""
        sig = compute_signal(logits, labels, self.signal, **self.signal_kwargs)
        index = check_index(index, sig.shape[0])
        if index.numel() and index.max().item() >= self.ref_signals.shape[1]:
            raise ValueError(f"index {index.max().item()} is outside the reference signals (P = {self.ref_signals.shape[1]})")
        self._append(index, split_code(split, sig.shape[0], sig.device), target_signal=sig, labels=labels.long())

    def compute(self) -> dict[str, torch.Tensor]:
        with self._warnings_once():
            return self._compute()

    def _compute(self) -> dict[str, torch.Tensor]:
        rec = self._records()
        idx_cpu = rec["index"].cpu()
        split = rec["split"].cpu()
        sig = rec["target_signal"].cpu()
        pop = torch.ones_like(split, dtype=torch.bool)
        if self.population_splits is not None:
            pop = torch.isin(split, torch.tensor([SPLITS[s] for s in self.population_splits]))
        # one population entry per pool index (records are sorted by (index, split))
        first_of_index = torch.ones_like(pop)
        first_of_index[1:] = idx_cpu[1:] != idx_cpu[:-1]
        pop_pos = torch.nonzero(pop & first_of_index).flatten()
        if pop_pos.numel() < 2:
            raise ValueError(f"the RMIA population needs at least 2 samples, got {pop_pos.numel()}")
        pop_index = idx_cpu[pop_pos]
        where = torch.searchsorted(pop_index, idx_cpu).clamp(max=pop_index.numel() - 1)
        self_index = torch.where(pop_index[where] == idx_cpu, where, torch.full_like(where, -1))
        ref_x = self.ref_signals[:, idx_cpu]
        missing = ~torch.isfinite(ref_x).all(0)
        if bool(missing.any()):
            raise ValueError(
                f"reference signals are missing (nan/inf) for {int(missing.sum())} recorded pool indices, "
                f"e.g. {idx_cpu[missing][:5].tolist()}: compute ref_signals on every audited sample"
            )
        mask_x = mask_z = None
        if self.offline_a is not None:
            mask_x = ~self.membership[:, idx_cpu]
            mask_z = mask_x[:, pop_pos]
        scores = rmia_scores(
            sig, ref_x, sig[pop_pos], ref_x[:, pop_pos],
            gamma=self.gamma, offline_a=self.offline_a, strict=self.strict,
            ref_x_mask=mask_x, ref_z_mask=mask_z, self_index=self_index, proportiontocut=self.proportiontocut,
        )
        self.last_scores = {"index": idx_cpu, "split": split, "score": scores}
        out = {f"{k}_auc": _pair_auc(scores, split, a, b, self.subsample_seeds, roc_auc) for k, a, b in PAIRS}
        for f in self.tpr_fprs:
            out[tpr_key(f)] = _pair_auc(scores, split, "forget", "test", self.subsample_seeds, lambda s, y, f=f: tpr_at_fpr(s, y, fpr=f))
        result = self._as_tensors(out)
        self._check_ranks(torch.stack(list(result.values())))
        return result

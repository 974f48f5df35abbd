"""RMIA scores (Zarifzadeh et al., ICML 2024), by sorting: O((N + M) log M), never an N x M matrix.

Described in docs/metrics.md, section 5.3. For a candidate x, population points z, the target model θ and reference
models θ'::

    ratio(x) = Pr(x | θ) / Pr(x)          Pr(x) = mean_{θ'} Pr(x | θ')            (online)
                                           Pr(x) = (1 + a)/2 * mean_OUT + (1 - a)/2  (offline)
    Score(x) = |{ z : ratio(x) / ratio(z) > γ }| / |Z|

Because every ratio is positive, ``ratio(x) / ratio(z) > γ  <=>  ratio(z) < ratio(x) / γ``:
sorting the population ratios once turns each score into one ``searchsorted``.
"""

from __future__ import annotations

import torch

from lightning_unlearn.metrics.functional._checks import (
    LOG_FLOOR,
    as_tensor,
    check_finite,
    check_float,
    check_ndim,
    check_nonempty,
    check_positive,
)
from lightning_unlearn.metrics.functional.signals import floor_signals


def _check_signals(target: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None, t_name: str, r_name: str):
    target, ref = as_tensor(target, t_name), as_tensor(ref, r_name)
    for x, name in ((target, t_name), (ref, r_name)):
        check_float(x, name)
        check_finite(x, name)
        if x.numel() and x.min().item() < 0:
            raise ValueError(
                f"{name} must be non-negative signals, got minimum {x.min().item():.6g} "
                "(floor Taylor signals with taylor_softmax_signal's min_signal)"
            )
    check_ndim(target, 1, t_name, "(N,)")
    check_ndim(ref, 2, r_name, "(R, N)")
    check_nonempty(target, t_name)
    check_nonempty(ref, r_name)
    if ref.shape[1] != target.shape[0]:
        raise ValueError(
            f"{r_name} must have shape (R, {target.shape[0]}) to match {t_name} {tuple(target.shape)}, "
            f"got {tuple(ref.shape)}"
        )
    if mask is not None:
        mask = as_tensor(mask, f"{r_name}_mask")
        if mask.dtype != torch.bool or mask.shape != ref.shape:
            raise ValueError(
                f"{r_name}_mask must be a bool tensor of shape {tuple(ref.shape)}, got {mask.dtype} {tuple(mask.shape)}"
            )
        empty = (~mask.any(0)).sum().item()
        if empty:
            raise ValueError(f"{r_name}_mask selects no reference model for {empty} sample(s)")
    return target, ref, mask


def _rmia_arg_validation(
    target_x, ref_x, target_z, ref_z, gamma, offline_a, ref_x_mask, ref_z_mask, self_index, proportiontocut=0.0
) -> tuple:
    target_x, ref_x, ref_x_mask = _check_signals(target_x, ref_x, ref_x_mask, "target_x", "ref_x")
    target_z, ref_z, ref_z_mask = _check_signals(target_z, ref_z, ref_z_mask, "target_z", "ref_z")
    check_positive(gamma, "gamma")
    if not 0.0 <= float(proportiontocut) < 0.5:
        raise ValueError(f"proportiontocut must lie in [0, 0.5), got {proportiontocut!r}")
    if offline_a is not None and not (0.0 <= float(offline_a) <= 1.0):
        raise ValueError(f"offline_a must be None (online) or a number in [0, 1], got {offline_a!r}")
    if self_index is not None:
        self_index = as_tensor(self_index, "self_index")
        if self_index.is_floating_point() or self_index.shape != target_x.shape:
            raise ValueError(
                f"self_index must be an integer tensor of shape {tuple(target_x.shape)}, "
                f"got {self_index.dtype} {tuple(self_index.shape)}"
            )
        m = target_z.shape[0]
        if self_index.numel() and (self_index.min().item() < -1 or self_index.max().item() >= m):
            raise ValueError(f"self_index must lie in [-1, {m}) (-1: x is not a population point)")
        if m < 2 and bool((self_index >= 0).any()):
            raise ValueError("the population must hold at least one point besides x itself")
        self_index = self_index.long().to(target_x.device)
    return target_x, ref_x, target_z, ref_z, ref_x_mask, ref_z_mask, self_index


def reference_mean(
    ref: torch.Tensor,
    *,
    offline_a: float | None = None,
    mask: torch.Tensor | None = None,
    proportiontocut: float = 0.0,
) -> torch.Tensor:
    """Pr(x): the mean reference signal per sample (docs/metrics.md, section 5.3).

    Args:
        ref: ``(R, N)`` reference signals.
        offline_a: ``None`` for the online mean over all given references (IN and OUT);
            otherwise ``a`` in [0, 1] and ``Pr = (1 + a)/2 * mean + (1 - a)/2``, with the mean
            taken over OUT references only (pass only those, or select them with ``mask``).
        mask: optional ``(R, N)`` bool, the references to average per sample (e.g. ``~membership``).
        proportiontocut: trimmed mean as ``scipy.stats.trim_mean`` (the RMIA configs of [Z] use
            0.2): the ``int(proportiontocut * R)`` smallest and largest signals of each sample are
            dropped. Not combinable with ``mask`` (pass the OUT references densely instead).

    Returns:
        ``(N,)`` float64.
    """
    r = ref.double()
    if proportiontocut:
        if mask is not None:
            raise ValueError("proportiontocut (trimmed mean) cannot be combined with a reference mask")
        cut = int(float(proportiontocut) * r.shape[0])
        mean = torch.sort(r, dim=0).values[cut : r.shape[0] - cut].mean(0)
    elif mask is None:
        mean = r.mean(0)
    else:
        m = mask.to(r.device)
        mean = (r * m).sum(0) / m.sum(0)
    if offline_a is not None:
        a = float(offline_a)
        mean = 0.5 * (1.0 + a) * mean + 0.5 * (1.0 - a)
    return mean


def rmia_ratios(
    target: torch.Tensor, ref: torch.Tensor, *, offline_a: float | None = None, mask: torch.Tensor | None = None,
    min_signal: float = LOG_FLOOR, proportiontocut: float = 0.0,
) -> torch.Tensor:
    """``ratio = Pr(x | θ) / Pr(x)`` in float64, both floored at ``min_signal`` (with a warning if any is)."""
    num = floor_signals(target.double(), min_signal, what="target signals")
    den = floor_signals(reference_mean(ref, offline_a=offline_a, mask=mask, proportiontocut=proportiontocut), min_signal, what="reference means")
    return num / den


def _rmia_compute(ratio_x, ratio_z, gamma: float, strict: bool, self_index) -> torch.Tensor:
    sorted_z, _ = torch.sort(ratio_z)
    thr = ratio_x / gamma
    # side="left": number of z with ratio(z) < ratio(x)/γ  (LR > γ);  "right": <=  (LR >= γ).
    counts = torch.searchsorted(sorted_z, thr, side="left" if strict else "right").double()
    m = torch.full_like(counts, float(ratio_z.numel()))
    if self_index is not None:
        in_pop = self_index >= 0
        # x's own population entry counted iff ratio(x) compares with ratio(x)/γ like any z did
        # (the same float comparison as in the search, so the subtraction is exact).
        own = ratio_z[self_index.clamp(min=0)]
        self_hit = (own < thr) if strict else (own <= thr)
        counts = counts - (in_pop & self_hit).double()
        m = m - in_pop.double()
    return (counts / m).to(torch.float32)


def rmia_scores(
    target_x: torch.Tensor,
    ref_x: torch.Tensor,
    target_z: torch.Tensor,
    ref_z: torch.Tensor,
    *,
    gamma: float = 2.0,
    offline_a: float | None = None,
    strict: bool = True,
    ref_x_mask: torch.Tensor | None = None,
    ref_z_mask: torch.Tensor | None = None,
    self_index: torch.Tensor | None = None,
    min_signal: float = LOG_FLOOR,
    proportiontocut: float = 0.0,
) -> torch.Tensor:
    """RMIA score of each candidate x: the fraction of population points z with LR(x, z) > γ.

    ``LR(x, z) = [Pr(x|θ)/Pr(x)] / [Pr(z|θ)/Pr(z)]``; see the module docstring for Pr(.)
    (online by default; offline with ``offline_a``). The caller chooses the population.

    Cost: one sort of the M population ratios and one ``torch.searchsorted`` of the N candidate
    thresholds, O((N + M) log M) time and O(N + M) memory; the N x M matrix is never formed
    (:func:`rmia_scores_bruteforce` forms it in chunks, for tests). The fast path compares
    ``ratio(z) < ratio(x) / γ``, which equals ``ratio(x) / ratio(z) > γ`` exactly in floating
    point when γ is a power of two (division by γ is then exact); for other γ the two forms
    can differ only where a ratio sits within one rounding step of the threshold.

    Args:
        target_x: ``(N,)`` target-model signals Pr(x|θ) of the candidates (non-negative).
        ref_x: ``(R, N)`` reference-model signals of the candidates.
        target_z: ``(M,)`` target-model signals of the population.
        ref_z: ``(R', M)`` reference-model signals of the population.
        gamma: γ > 0 (default 2: the RMIA paper's experiment configurations, AMUN and the
            benchmark's ``--rmia-gamma``; the privacy-meter tool's ``run_rmia`` uses 1).
        offline_a: ``None`` = online (mean over all references, IN and OUT, as in AMUN);
            ``a`` in [0, 1] = offline, ``Pr = (1 + a)/2 * mean_OUT + (1 - a)/2``: pass only
            OUT references, or select them with ``ref_x_mask``/``ref_z_mask``.
        strict: ``True`` counts LR > γ (both reference codes), ``False`` counts LR >= γ.
        ref_x_mask, ref_z_mask: optional ``(R, N)``/``(R', M)`` bool masks of the references to
            average for each sample (e.g. ``~membership`` for the offline OUT mean).
        self_index: optional ``(N,)`` int64: the position of each candidate x in the population
            (-1 where x is not a population point). Such x are left out of their own population:
            their comparison with themselves is removed and the count is divided by M - 1
            (docs/metrics.md, section 5.3, "Computation by sorting"). The population entry must hold
            the same signals as x.
        min_signal: floor of signals and reference means before any ratio (counted warning).
        proportiontocut: trimmed reference mean (see :func:`reference_mean`); 0 = plain mean (AMUN).

    Returns:
        ``(N,)`` float32 scores in [0, 1].

    Raises:
        ValueError: mismatched shapes, empty sets, negative or non-finite signals, γ <= 0,
            ``offline_a`` outside [0, 1], a mask selecting no reference.

    Example:
        >>> tx = torch.tensor([0.9, 0.1]); rx = torch.tensor([[0.5, 0.5]])
        >>> tz = torch.tensor([0.2, 0.4, 0.6, 0.8]); rz = torch.full((1, 4), 0.5)
        >>> rmia_scores(tx, rx, tz, rz)             # γ = 2: ratio(x) 1.8 beats 0.4 and 0.8 by more than 2x
        tensor([0.5000, 0.0000])
        >>> rmia_scores(tx, rx, tz, rz, gamma=1.0)  # the privacy-meter tool's threshold
        tensor([1., 0.])
    """
    target_x, ref_x, target_z, ref_z, ref_x_mask, ref_z_mask, self_index = _rmia_arg_validation(
        target_x, ref_x, target_z, ref_z, gamma, offline_a, ref_x_mask, ref_z_mask, self_index, proportiontocut
    )
    ratio_x = rmia_ratios(target_x, ref_x, offline_a=offline_a, mask=ref_x_mask, min_signal=min_signal, proportiontocut=proportiontocut)
    ratio_z = rmia_ratios(target_z, ref_z, offline_a=offline_a, mask=ref_z_mask, min_signal=min_signal, proportiontocut=proportiontocut)
    return _rmia_compute(ratio_x, ratio_z, float(gamma), strict, self_index)


def rmia_scores_bruteforce(
    target_x: torch.Tensor,
    ref_x: torch.Tensor,
    target_z: torch.Tensor,
    ref_z: torch.Tensor,
    *,
    gamma: float = 2.0,
    offline_a: float | None = None,
    strict: bool = True,
    ref_x_mask: torch.Tensor | None = None,
    ref_z_mask: torch.Tensor | None = None,
    self_index: torch.Tensor | None = None,
    min_signal: float = LOG_FLOOR,
    proportiontocut: float = 0.0,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The definition, computed literally: LR(x, z) = ratio(x) / ratio(z) for every pair, in
    chunks of ``chunk_size`` candidates (O(N M) time, O(chunk_size M) memory). For tests and
    the benchmark; same arguments and result as :func:`rmia_scores`."""
    target_x, ref_x, target_z, ref_z, ref_x_mask, ref_z_mask, self_index = _rmia_arg_validation(
        target_x, ref_x, target_z, ref_z, gamma, offline_a, ref_x_mask, ref_z_mask, self_index, proportiontocut
    )
    ratio_x = rmia_ratios(target_x, ref_x, offline_a=offline_a, mask=ref_x_mask, min_signal=min_signal, proportiontocut=proportiontocut)
    ratio_z = rmia_ratios(target_z, ref_z, offline_a=offline_a, mask=ref_z_mask, min_signal=min_signal, proportiontocut=proportiontocut)
    m = ratio_z.numel()
    out = torch.empty(ratio_x.numel(), dtype=torch.float64, device=ratio_x.device)
    cols = torch.arange(m, device=ratio_x.device)
    for start in range(0, ratio_x.numel(), chunk_size):
        lr = ratio_x[start : start + chunk_size, None] / ratio_z[None, :]
        hit = lr > gamma if strict else lr >= gamma
        denom = torch.full((hit.shape[0],), float(m), dtype=torch.float64, device=hit.device)
        if self_index is not None:
            si = self_index[start : start + chunk_size]
            hit &= cols[None, :] != si[:, None]
            denom -= (si >= 0).double()
        out[start : start + chunk_size] = hit.sum(1).double() / denom
    return out.to(torch.float32)

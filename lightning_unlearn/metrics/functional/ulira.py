"""U-LiRA (Hayes et al., arXiv 2403.01218): a per-example likelihood-ratio test of unlearned against retrained models.

Described in docs/metrics.md, section 8. LiRA (Carlini et al., arXiv 2112.03570) adapted to unlearning:
for an example x that a model was asked to forget, is the model an *unlearned* one (trained on x,
then unlearned x with the method under audit) or a *retrained* one (never trained on x)? An attacker
that cannot tell, 50% accuracy, is what exact unlearning gives.

The statistic of a model on a labelled example (z: logits, y: the label) is the logit-scaled
confidence of the true label::

    φ = log( p_y / (1 − p_y) ) = z_y − logsumexp_{j ≠ y} z_j          (exact, no 1 − p_y cancellation)

Shadow models give, per example x, observations of φ in the two worlds: ``unlearned`` (shadows that
trained on x and unlearned it) and ``retrained`` (shadows retrained without x). Each world is fitted
by a Gaussian per example::

    μ_u(x) = mean of the unlearned observations of x,   μ_r(x) likewise
    σ_u, σ_r: per example (``variance="per_example"``), or one pooled value per world
              (``"global"``: σ² = Σ_x Σ_i (φ_i(x) − μ(x))² / Σ_x (n(x) − 1))

and an audited model's φ on x is scored by the log likelihood ratio::

    Λ(x) = log N(φ; μ_u(x), σ_u(x)²) − log N(φ; μ_r(x), σ_r(x)²)

The attack says "unlearned" when the likelihood ratio exceeds 1, i.e. Λ > 0 (equal priors: the
audited set holds as many unlearned as retrained records). Reported, in percent: the balanced
accuracy at that threshold, the ROC AUC of Λ (unlearned = positive) and the TPR at low FPRs.

Shapes: shadow observations are dense ``(S, P)`` tensors indexed by **pool index** (column p is
pool sample p), ``nan`` where shadow s holds no observation of p (p not in its forget set); the two
worlds may have different row counts. Audited records are ``(N,)`` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from lightning_unlearn.metrics.functional._checks import (
    as_tensor,
    check_binary,
    check_finite,
    check_float,
    check_labels,
    check_ndim,
    check_nonempty,
    check_positive,
    check_same_len,
)
from lightning_unlearn.metrics.functional.roc import roc_auc, tpr_at_fpr

Variance = Literal["auto", "global", "per_example"]
VARIANCES: tuple[str, ...] = ("auto", "global", "per_example")
#: ``variance="auto"`` fits per-example variances when every fitted example has at least this many
#: observations in each world, and one pooled variance per world otherwise (LiRA's advice: a global
#: variance below about 64 shadow models).
PER_EXAMPLE_MIN_OBSERVATIONS = 64
#: Floor of every fitted standard deviation (in logit units): a guard against a zero spread only.
MIN_STD = 1e-4
WORLDS: tuple[str, str] = ("retrained", "unlearned")  # codes 0 and 1


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's statistic φ = log(p_y / (1 − p_y)) of the softmax, computed as ``z_y − logsumexp_{j≠y} z_j``.

    Exact and stable for confident models: where ``1 − p_y`` rounds to 0 in floating point the
    logit difference is still finite (``[100, 0]`` with label 0 gives 100, not inf).

    Args:
        logits: ``(..., N, K)`` logits, K >= 2; leading dimensions (e.g. S shadow models) are kept.
        labels: ``(N,)`` integer labels in ``[0, K)``.

    Returns:
        ``(..., N)`` float64.

    Example:
        >>> logit_confidence(torch.tensor([[2.0, 0.0], [100.0, 0.0]]), torch.tensor([0, 0]))
        tensor([  2., 100.], dtype=torch.float64)
    """
    logits, labels = as_tensor(logits, "logits"), as_tensor(labels, "labels")
    check_float(logits, "logits")
    if logits.ndim < 2 or logits.shape[-1] < 2:
        raise ValueError(f"logits must have shape (..., N, K) with K >= 2 classes, got shape {tuple(logits.shape)}")
    check_finite(logits, "logits")
    labels = check_labels(labels, logits.shape[-2], logits.shape[-1]).to(logits.device)
    z = logits.double()
    idx = labels.expand(*z.shape[:-1]).unsqueeze(-1)
    true = z.gather(-1, idx).squeeze(-1)
    others = z.scatter(-1, idx, float("-inf"))
    return true - torch.logsumexp(others, dim=-1)


@dataclass(frozen=True)
class ULiRAFit:
    """The per-example Gaussians of the two worlds, indexed by pool index (``(P,)`` each, float64).

    Attributes:
        mean_unlearned, std_unlearned, count_unlearned: μ_u, σ_u and the number of unlearned
            observations of each example (mean ``nan`` where the count is 0).
        mean_retrained, std_retrained, count_retrained: the same for the retrained world.
        variance: the variance model used, ``"global"`` or ``"per_example"`` (``"auto"`` resolved).
    """

    mean_unlearned: torch.Tensor
    std_unlearned: torch.Tensor
    count_unlearned: torch.Tensor
    mean_retrained: torch.Tensor
    std_retrained: torch.Tensor
    count_retrained: torch.Tensor
    variance: Literal["global", "per_example"]

    @property
    def fitted(self) -> torch.Tensor:
        """``(P,)`` bool: examples with observations in both worlds (the only ones that can be scored)."""
        return (self.count_unlearned > 0) & (self.count_retrained > 0)


def _check_shadow(obs: torch.Tensor, name: str) -> torch.Tensor:
    obs = as_tensor(obs, name)
    check_float(obs, name)
    check_ndim(obs, 2, name, "(S, P)")
    check_nonempty(obs, name)
    if bool(torch.isinf(obs).any()):
        raise ValueError(f"{name} contains {int(torch.isinf(obs).sum())} infinite value(s); mark missing observations with nan")
    return obs.detach().double().cpu()


def _ulira_arg_validation(
    shadow_unlearned: torch.Tensor, shadow_retrained: torch.Tensor, variance: str, min_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both worlds ``(S, P)`` float with the same P (``nan`` = no observation, no inf), a known variance model, min_std > 0."""
    unl = _check_shadow(shadow_unlearned, "shadow_unlearned")
    ret = _check_shadow(shadow_retrained, "shadow_retrained")
    check_same_len(unl, ret, "shadow_unlearned", "shadow_retrained", dim_a=1, dim_b=1)
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    check_positive(min_std, "min_std")
    return unl, ret


def _world_moments(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, sum of squared deviations, count)`` per column of ``(S, P)`` observations with ``nan`` gaps."""
    seen = ~torch.isnan(obs)
    count = seen.sum(0)
    filled = torch.where(seen, obs, torch.zeros_like(obs))
    mean = filled.sum(0) / count.clamp(min=1)
    mean = torch.where(count > 0, mean, torch.full_like(mean, float("nan")))
    sq = torch.where(seen, (obs - mean) ** 2, torch.zeros_like(obs)).sum(0)
    return mean, sq, count


def _world_std(sq: torch.Tensor, count: torch.Tensor, variance: str, min_std: float, world: str) -> torch.Tensor:
    """σ per example (unbiased, needs 2 observations each) or one pooled σ over every observed example."""
    observed = count > 0
    if variance == "per_example":
        few = observed & (count < 2)
        if bool(few.any()):
            raise ValueError(
                f"variance='per_example' needs at least 2 {world} observations of every observed example; "
                f"{int(few.sum())} example(s) have 1 (e.g. pool index {int(torch.nonzero(few)[0])}): use variance='global'"
            )
        std = torch.sqrt(sq / (count - 1).clamp(min=1))
    else:
        dof = int((count[observed] - 1).sum())
        if dof < 1:
            raise ValueError(f"a pooled variance needs an example with at least 2 {world} observations; none has")
        std = torch.full_like(sq, (float(sq[observed].sum()) / dof) ** 0.5)
    std = std.clamp(min=min_std)
    return torch.where(observed, std, torch.full_like(std, float("nan")))


def ulira_fit(
    shadow_unlearned: torch.Tensor,
    shadow_retrained: torch.Tensor,
    *,
    variance: Variance = "auto",
    min_std: float = MIN_STD,
) -> ULiRAFit:
    """Fit the per-example Gaussians of the unlearned and the retrained world.

    Args:
        shadow_unlearned: ``(S_u, P)`` φ of shadow models that trained on each example and
            unlearned it, by pool index; ``nan`` where a shadow holds no observation.
        shadow_retrained: ``(S_r, P)`` φ of shadow models retrained without each example; ``nan`` likewise.
        variance: ``"per_example"`` (σ per example and world, unbiased), ``"global"`` (one pooled
            within-example σ per world) or ``"auto"`` (default): ``"per_example"`` when every example
            observed in both worlds has at least :data:`PER_EXAMPLE_MIN_OBSERVATIONS` (64)
            observations in each, ``"global"`` otherwise.
        min_std: floor of every σ (default :data:`MIN_STD`).

    Returns:
        :class:`ULiRAFit`.

    Raises:
        ValueError: shapes, dtypes or infinite values; no example observed in both worlds; a
            variance model the observations cannot support (fewer than 2 observations).

    Example:
        >>> u = torch.tensor([[1.0, float("nan")], [3.0, 5.0]]); r = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
        >>> f = ulira_fit(u, r)   # 2 observations per world: "auto" pools the variance
        >>> f.variance, f.mean_unlearned.tolist(), f.count_unlearned.tolist()
        ('global', [2.0, 5.0], [2, 1])
    """
    unl, ret = _ulira_arg_validation(shadow_unlearned, shadow_retrained, variance, min_std)
    mu_u, sq_u, n_u = _world_moments(unl)
    mu_r, sq_r, n_r = _world_moments(ret)
    both = (n_u > 0) & (n_r > 0)
    if not bool(both.any()):
        raise ValueError("no example has observations in both worlds (unlearned and retrained): nothing can be scored")
    if variance == "auto":
        fewest = int(torch.minimum(n_u[both], n_r[both]).min())
        variance = "per_example" if fewest >= PER_EXAMPLE_MIN_OBSERVATIONS else "global"
    sd_u = _world_std(sq_u, n_u, variance, float(min_std), "unlearned")
    sd_r = _world_std(sq_r, n_r, variance, float(min_std), "retrained")
    return ULiRAFit(mu_u, sd_u, n_u, mu_r, sd_r, n_r, variance)  # type: ignore[arg-type]


def _log_normal(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std²) without the constant −½·log 2π (it cancels in every ratio)."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std)


def _ulira_update(fit: ULiRAFit, phi: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Λ of each audited record: ``(N,)`` φ at pool ``index`` (N,), scored against ``fit``. Returns ``(N,)`` float64."""
    phi, index = as_tensor(phi, "phi"), as_tensor(index, "index")
    check_float(phi, "phi")
    check_ndim(phi, 1, "phi", "(N,)")
    check_finite(phi, "phi")
    if index.is_floating_point() or index.shape != phi.shape:
        raise ValueError(f"index must be an integer tensor of shape {tuple(phi.shape)}, got {index.dtype} {tuple(index.shape)}")
    index = index.long().cpu()
    p = fit.mean_unlearned.numel()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= p):
        raise ValueError(f"index must lie in [0, {p}) (the shadow statistics' pool size), got values in [{int(index.min())}, {int(index.max())}]")
    missing = ~fit.fitted[index]
    if bool(missing.any()):
        raise ValueError(
            f"{int(missing.sum())} audited record(s) have no shadow observation in one of the worlds, e.g. pool index "
            f"{index[missing][:5].tolist()}: audit only examples of the shadows' forget sets"
        )
    x = phi.detach().double().cpu()
    return _log_normal(x, fit.mean_unlearned[index], fit.std_unlearned[index]) - _log_normal(
        x, fit.mean_retrained[index], fit.std_retrained[index]
    )


def tpr_key(fpr: float) -> str:
    """The result key of the TPR at FPR ``fpr``: ``"tpr@0.01"``."""
    return f"tpr@{fpr:g}"


def _ulira_compute(scores: torch.Tensor, is_unlearned: torch.Tensor, tpr_fprs: Sequence[float] = (0.01, 0.001)) -> dict[str, float]:
    """Balanced accuracy at Λ > 0, ROC AUC and TPR at each FPR, in percent, with unlearned = positive."""
    scores = as_tensor(scores, "scores")
    labels = check_binary(as_tensor(is_unlearned, "is_unlearned"), scores.numel(), "is_unlearned").to(scores.device)
    pos, neg = labels == 1, labels == 0
    if not bool(pos.any()) or not bool(neg.any()):
        raise ValueError(f"U-LiRA needs audited records of both worlds, got {int(pos.sum())} unlearned and {int(neg.sum())} retrained")
    said_unlearned = scores > 0  # likelihood ratio > 1
    tpr = said_unlearned[pos].double().mean()
    tnr = (~said_unlearned[neg]).double().mean()
    out = {"balanced_accuracy": float(50.0 * (tpr + tnr)), "auc": roc_auc(scores, labels)}
    for f in tpr_fprs:
        out[tpr_key(f)] = tpr_at_fpr(scores, labels, fpr=f)
    return out


def ulira_scores(
    shadow_unlearned: torch.Tensor,
    shadow_retrained: torch.Tensor,
    phi: torch.Tensor,
    index: torch.Tensor,
    *,
    variance: Variance = "auto",
    min_std: float = MIN_STD,
) -> torch.Tensor:
    """Λ = log N(φ; μ_u, σ_u²) − log N(φ; μ_r, σ_r²) of each audited record (> 0: "unlearned").

    Args:
        shadow_unlearned, shadow_retrained, variance, min_std: as :func:`ulira_fit`.
        phi: ``(N,)`` φ of the audited models (:func:`logit_confidence`).
        index: ``(N,)`` pool index of each record; each must be observed in both worlds.

    Returns:
        ``(N,)`` float64 log likelihood ratios.
    """
    return _ulira_update(ulira_fit(shadow_unlearned, shadow_retrained, variance=variance, min_std=min_std), phi, index)


def ulira(
    shadow_unlearned: torch.Tensor,
    shadow_retrained: torch.Tensor,
    phi: torch.Tensor,
    index: torch.Tensor,
    is_unlearned: torch.Tensor,
    *,
    variance: Variance = "auto",
    min_std: float = MIN_STD,
    tpr_fprs: Sequence[float] = (0.01, 0.001),
) -> dict[str, float]:
    """U-LiRA of audited records: the attack's success at telling unlearned from retrained models, in percent.

    Args:
        shadow_unlearned, shadow_retrained, variance, min_std: as :func:`ulira_fit`.
        phi: ``(N,)`` φ of the audited models on examples they were asked to forget (unlearned
            models) or never saw (retrained models).
        index: ``(N,)`` pool index of each record.
        is_unlearned: ``(N,)`` bool (or 0/1): the record comes from an unlearned model (1) or a
            retrained one (0). Both must occur.
        tpr_fprs: FPRs (fractions) at which the TPR is reported.

    Returns:
        ``{"balanced_accuracy", "auc", "tpr@<fpr>" ...}``: the mean of the accuracies on the
        unlearned and on the retrained records at Λ > 0 (50 = indistinguishable, as exact
        unlearning gives), the ROC AUC of Λ with unlearned = positive, and the TPR at each FPR.

    Raises:
        ValueError: bad shapes or values, a record whose example lacks shadow observations, only
            one world among the records.

    Example:
        >>> u = torch.tensor([[2.0, 4.0], [2.2, 4.2], [1.8, 3.8]]); r = u - 2.0   # unlearning left φ 2 higher
        >>> out = ulira(u, r, torch.tensor([2.0, 4.0, 0.0, 2.0]), torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 0]), tpr_fprs=())
        >>> out["balanced_accuracy"], out["auc"]
        (100.0, 100.0)
    """
    fit = ulira_fit(shadow_unlearned, shadow_retrained, variance=variance, min_std=min_std)
    scores = _ulira_update(fit, phi, index)
    return _ulira_compute(scores, is_unlearned, tpr_fprs)

"""TRW: fine-tuning toward a tilted distribution over the remaining classes (class unlearning).

Library formulation of TRW/TREW (arXiv 2506.20893 v4; ICML 2026 "Unlearning Isn't
Forgetting"), described in docs/methods/trw.md, sections 1-4; its numbers are not claimed to equal the
paper's. For a forget-class input ``x`` the target is

    t(k|x) ∝ p_o(k|x) exp(beta s_k) over the kept classes k,   t(f|x) = 0,

with ``p_o`` from a frozen snapshot of the model taken when unlearning starts and ``s`` a class
similarity to the forget class (:mod:`lightning_unlearn.unlearning.class_similarity`). The
objective is ``L = L_r + lambda L_f``: cross-entropy on remain batches (when the remain set is
available) plus ``lambda`` times ``mean KL(t || p_theta)`` on forget batches
(:mod:`lightning_unlearn.unlearning.tilted`).

Use it by name through any :class:`~lightning_unlearn.unlearning.UnlearningMixin` module
(``unlearn(module, "trw", request)``) or through :class:`TRWMixin` (``start_trw``); either way
checkpoints of the fit keep ``s``, ``beta`` and the snapshot (under the ``"unlearning"`` key),
so a resumed fit keeps the original targets. The registry also holds ``"trw-concat"``
(:class:`TRWConcat`): the same method with the other stream mixing by default (see ``mixing`` in
:class:`TRW`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.inference import predict_logits
from lightning_unlearn.search_space import Axis, FloatRange
from lightning_unlearn.unlearning.base import (
    UnlearningMethod,
    UnlearningMixin,
    UnlearningRequest,
    frozen_snapshot,
    snapshot_with_weights,
    weights_of,
    world_of,
)
from lightning_unlearn.unlearning.class_similarity import (
    SIMILARITY_ESTIMATORS,
    SimilarityEstimator,
    check_forget_classes,
    cosine_similarity_matrix,
    feature_centroids,
    forget_mask,
    sharpen_similarity,
)
from lightning_unlearn.unlearning.registry import register_method
from lightning_unlearn.unlearning.tilted import similarity_rows, solve_beta, tilted_kl, trw_log_target, trw_loss

log = logging.getLogger(__name__)

BetaMode = Literal["global", "per_batch", "per_sample"]
BETA_MODES = ("global", "per_batch", "per_sample")
Mixing = Literal["combined", "concat"]
MIXINGS = ("combined", "concat")
DEFAULT_BETA = 10.0


@register_method
class TRW(UnlearningMethod):
    """Tilted reweighting: KL to the tilted target on D_F, cross-entropy on D_R.

    Args:
        beta: the tilt (default ``None`` = 10.0, the value a reviewer reports). Not allowed
            together with ``expected_similarity``.
        expected_similarity: request ``E_t[s] = c`` instead; ``beta`` is then solved by
            bisection (:func:`~lightning_unlearn.unlearning.tilted.solve_beta`) per ``beta_mode``.
        beta_mode: ``"global"`` (default, reproducible): one ``beta`` for the mean over D_F under
            the original model, computed once at the start on un-augmented inputs, all-reduced
            under DDP; ``"per_batch"``: one per forget batch; ``"per_sample"``: the exact
            per-input I-projection.
        similarity: ``"logit_weights"`` (default: the final linear layer's rows) or
            ``"feature_centroids"`` (mean penultimate features per class; needs the remain set).
        s: a similarity given directly, ``(K,)`` or ``(len(F), K)``; overrides ``similarity``.
            Entries on the forgotten classes are set to 0.
        tau: temperature of the sharpening softmax (default 0.1).
        center: centre the class vectors before the cosine (default ``True``).
        pca_dim: optional PCA dimension of the class vectors (default ``None``).
        feature_module: for ``"feature_centroids"``, the name (in ``module.named_modules()``) of
            the module whose output is the penultimate feature; default: the input of the final
            ``nn.Linear``.
        max_per_class: inputs per class for the feature centroids (default 500).
        forget_weight: ``lambda`` (default 1.0).
        mixing: ``"combined"`` (default): ``{"forget", "remain"}`` batches from Lightning's
            ``CombinedLoader`` in ``"max_size_cycle"`` mode (one epoch is one pass over the
            larger set); ``"concat"``: one shuffled stream over D_R ∪ D_F with per-sample
            targets (the terms are then weighted by set size). The registered variant
            ``"trw-concat"`` (:class:`TRWConcat`) is TRW with ``"concat"`` as its default, so
            both mixings can be rows (and tuned) side by side. How often each input is seen
            per epoch, with ``n_F`` forget and ``n_R`` remain inputs at batch size ``B``:

            * ``"combined"``: an epoch has ``max(ceil(n_R/B), ceil(n_F/B))`` steps, each with
              one forget batch and one remain batch, so when ``n_R > n_F`` the forget loader
              restarts and each forget input is seen about ``ceil(n_R/B) / ceil(n_F/B)`` times
              per epoch (each remain input once), and every step's loss is half forget term,
              half remain term. Example: 500 forget vs 4,500 remain inputs at ``B = 128``:
              36 steps, 4 forget batches, so each forget input is seen **9 times** per epoch;
              100 vs 900 inputs: 8 steps of one 100-input forget batch, **8 times**.
            * ``"concat"``: ``ceil((n_R + n_F)/B)`` steps over the shuffled union, each input
              **once** per epoch (as RL and SalUn see D_F), the forget term about ``n_F / (n_R
              + n_F)`` of each batch (10% above).

            Without the remain set both give one pass over D_F. The paper's recipe is unknown.
        lr, epochs, step_size, gamma, momentum, weight_decay: see
            :class:`~lightning_unlearn.unlearning.UnlearningMethod` (SGD 0.9 / 5e-4, lr 0.01,
            10 epochs; defaults borrowed from the AMUN code, not from the TRW paper).

    Raises:
        ValueError: a bad option value; at setup, a request that is not class forgetting, a
            model without a final ``nn.Linear`` for ``"logit_weights"`` (use
            ``similarity="feature_centroids"`` with ``feature_module=...`` or pass ``s``),
            ``"feature_centroids"`` without the remain set, a ``s`` of the wrong shape.
    """

    name: ClassVar[str] = "trw"
    supported: ClassVar[frozenset[tuple[str, bool]]] = frozenset({("class", True), ("class", False)})
    # lightning_unlearn.tuning tunes beta and tau beside the shared schedule axes (docs/methods/trw.md, section 5):
    # s sums to 1 over the kept classes, so the tilt beta*s moves logits by at most beta nats:
    # beta in [1, 100] on a log scale (1 barely tilts; 100 sends the mass to the most similar
    # classes), the reported 10 its geometric midpoint; not tuned when expected_similarity is
    # given. tau in [0.05, 0.5] on a log scale: the span of the benchmark's sensitivity sweep
    # {0.05, 0.1, 0.5} around the default 0.1; not tuned when s is given (then unused).
    search_axes: ClassVar[dict[str, Axis]] = {
        "beta": FloatRange(1.0, 100.0, log=True, excluded_by=("expected_similarity",)),
        "tau": FloatRange(0.05, 0.5, log=True, excluded_by=("s",)),
    }

    def __init__(
        self,
        *,
        beta: float | None = None,
        expected_similarity: float | None = None,
        beta_mode: BetaMode = "global",
        similarity: SimilarityEstimator = "logit_weights",
        s: "torch.Tensor | Sequence[float] | None" = None,
        tau: float = 0.1,
        center: bool = True,
        pca_dim: int | None = None,
        feature_module: str | None = None,
        max_per_class: int = 500,
        forget_weight: float = 1.0,
        mixing: Mixing = "combined",
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if beta is not None and expected_similarity is not None:
            raise ValueError("give either beta or expected_similarity (beta is then solved), not both")
        if beta is not None and not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if beta_mode not in BETA_MODES:
            raise ValueError(f"unknown beta_mode {beta_mode!r}: expected one of {', '.join(BETA_MODES)}")
        if similarity not in SIMILARITY_ESTIMATORS:
            raise ValueError(f"unknown similarity {similarity!r}: expected one of {', '.join(SIMILARITY_ESTIMATORS)}, or pass s")
        if mixing not in MIXINGS:
            raise ValueError(f"unknown mixing {mixing!r}: expected one of {', '.join(MIXINGS)}")
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if not forget_weight > 0:
            raise ValueError(f"forget_weight must be positive, got {forget_weight}")
        if max_per_class <= 0:
            raise ValueError(f"max_per_class must be positive, got {max_per_class}")
        self.beta = DEFAULT_BETA if beta is None and expected_similarity is None else beta
        self.expected_similarity = expected_similarity
        self.beta_mode = beta_mode
        self.similarity = similarity if s is None else "given"
        self.tau, self.center, self.pca_dim = tau, center, pca_dim
        self.feature_module, self.max_per_class = feature_module, max_per_class
        self.forget_weight, self.mixing = forget_weight, mixing
        self._given_s = None if s is None else torch.as_tensor(s, dtype=torch.float32).detach().clone()
        self._teacher: nn.Module | None = None
        self._s: torch.Tensor | None = None  # (len(F), K)
        self._beta: float | None = None  # the fixed beta in use (None: solved per batch / sample)
        self._forget_classes: tuple[int, ...] = ()

    # ------------------------------------------------------------------ state
    @property
    def teacher(self) -> nn.Module | None:
        """The frozen original model θ_o (eval mode, no gradients), after setup."""
        return self._teacher

    @property
    def s(self) -> torch.Tensor | None:
        """The similarity in use, ``(len(F), K)``, after setup."""
        return self._s

    @property
    def beta_in_use(self) -> float | None:
        """The fixed ``beta`` (given or solved globally); ``None`` in the per-batch/per-sample modes."""
        return self._beta

    def fit_state(self) -> dict[str, Any]:
        """The resumable state: forget classes, similarity ``s``, ``beta`` and the snapshot θ_o's weights."""
        if self._s is None or self._teacher is None:
            raise RuntimeError("TRW has no state before setup (the start of the unlearning fit)")
        return {
            **super().fit_state(),
            "forget_classes": list(self._forget_classes),
            "s": self._s.detach().cpu().clone(),
            "beta": self._beta,
            "teacher": weights_of(self._teacher),
        }

    def restore(self, module, request: UnlearningRequest, state: dict[str, Any]) -> None:
        """Take θ_o, ``s`` and ``beta`` from a checkpoint instead of recomputing them on the current weights."""
        super().restore(module, request, state)
        classes = check_forget_classes(request.forget_classes, request.num_classes)
        if tuple(state["forget_classes"]) != classes:
            raise ValueError(f"checkpointed TRW state forgets {tuple(state['forget_classes'])}, the request {classes}")
        self._forget_classes = classes
        self._teacher = snapshot_with_weights(module, state["teacher"])
        self._s = state["s"].to(self._device(module))
        self._beta = state["beta"]

    # ------------------------------------------------------------------ setup
    def setup(self, module, request: UnlearningRequest) -> None:
        classes = check_forget_classes(request.forget_classes, request.num_classes)
        self._forget_classes = classes
        self._teacher = frozen_snapshot(module)
        self._s = self._similarity(module, request, classes).to(self._device(module))
        if self.expected_similarity is None:
            self._beta = float(self.beta)
        elif self.beta_mode == "global":
            self._beta = self._solve_global_beta(module, request)
        else:
            self._beta = None
        log.info("TRW: forget classes %s, beta %s, similarity rows %s", classes, self._beta, self._s.tolist())

    @staticmethod
    def _device(module) -> torch.device:
        p = next(module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _similarity(self, module, request: UnlearningRequest, classes: tuple[int, ...]) -> torch.Tensor:
        k = request.num_classes
        if self._given_s is not None:
            s = self._given_s
            if s.ndim == 1:
                s = s.unsqueeze(0).expand(len(classes), -1)
            if s.shape != (len(classes), k) or not bool(torch.isfinite(s).all()):
                raise ValueError(f"s must be finite with shape ({k},) or ({len(classes)}, {k}) for forget classes {classes}, got {tuple(self._given_s.shape)}")
            return s.masked_fill(forget_mask(classes, k), 0.0).clone()
        if self.similarity == "logit_weights":
            from lightning_unlearn.models.factory import final_linear

            try:
                _, head = final_linear(module)
            except ValueError:
                raise ValueError(
                    f"TRW's default similarity='logit_weights' needs a final nn.Linear layer, and {type(module).__name__} has none; "
                    "use similarity='feature_centroids' with feature_module='<name of the penultimate module>', or pass s=..."
                ) from None
            if head.weight.shape[0] != k:
                raise ValueError(
                    f"the final linear layer has {head.weight.shape[0]} outputs, not the {k} classes; "
                    "use similarity='feature_centroids' or pass s=..."
                )
            vectors = head.weight
        else:
            if request.remain is None:
                raise ValueError(
                    "similarity='feature_centroids' needs inputs of every class, but the request has no remain set; "
                    "use similarity='logit_weights' or pass s=..."
                )
            feature_module = None
            if self.feature_module is not None:
                named = dict(self._teacher.named_modules())
                if self.feature_module not in named:
                    raise ValueError(f"feature_module {self.feature_module!r} is not a submodule name of {type(module).__name__}")
                feature_module = named[self.feature_module]
            vectors = feature_centroids(
                self._teacher, _labelled_union(request.forget, request.remain), k,
                feature_module=feature_module, max_per_class=self.max_per_class, seed=request.seed, normalizer=self.normalizer,
            )
        cos = cosine_similarity_matrix(vectors, center=self.center, pca_dim=self.pca_dim)
        return sharpen_similarity(cos, classes, tau=self.tau)

    def _solve_global_beta(self, module, request: UnlearningRequest) -> float:
        """One beta for the mean of ``E_t[s]`` over D_F under θ_o; D_F is sharded over ranks, sums all-reduced."""
        rank, world = world_of(module)
        shard = torch.arange(rank, len(request.forget), world)
        data = torch.utils.data.Subset(request.forget, shard.tolist())
        device = self._device(module)
        logits, labels, _ = predict_logits(self._teacher, data, device=device, normalizer=self.normalizer)
        if len(labels) == 0:  # more ranks than forget samples: this rank adds nothing to the sums
            logits = torch.empty(0, request.num_classes)
        rows = similarity_rows(self._s.cpu(), labels, self._forget_classes)
        reduce = None
        if world > 1:
            strategy = module.trainer.strategy

            def reduce(t: torch.Tensor) -> torch.Tensor:
                return strategy.reduce(t.to(device), reduce_op="sum").to(t)
        beta = solve_beta(
            logits, rows, self.expected_similarity, self._forget_classes, per_sample=False, all_reduce=reduce
        )
        return float(beta)

    def teardown(self, module) -> None:
        self._teacher = None

    # ------------------------------------------------------------------ data
    def train_dataloader(self, module, request: UnlearningRequest):
        if self.mixing == "concat":
            parts = [request.forget] if request.remain is None else [request.remain, request.forget]
            return self.make_loader(ConcatDataset(parts))
        loaders = {"forget": self.make_loader(request.forget)}
        if request.remain is not None:
            loaders["remain"] = self.make_loader(request.remain, stream="remain")
        return CombinedLoader(loaders, mode="max_size_cycle")

    # ------------------------------------------------------------------ objective
    def log_target(self, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log t`` ``(B, K)`` for forget-class inputs with original logits ``teacher_logits`` and ``labels``."""
        assert self._s is not None, "TRW.log_target() needs setup() first"
        rows = similarity_rows(self._s.to(teacher_logits.device), labels, self._forget_classes)
        if self._beta is not None:
            beta: float | torch.Tensor = self._beta
        else:
            beta = solve_beta(
                teacher_logits, rows, self.expected_similarity, self._forget_classes, per_sample=self.beta_mode == "per_sample"
            ).to(teacher_logits.device)
        return trw_log_target(teacher_logits, rows, beta, self._forget_classes)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """θ_o's logits on the (already augmented) pixels ``x``: eval mode, no gradient."""
        assert self._teacher is not None, "TRW.teacher_logits() needs setup() first"
        p = next(self._teacher.parameters(), None)
        if p is not None and p.device != x.device:
            self._teacher.to(x.device)
        with torch.no_grad():
            return self._teacher(x).float()

    def loss(self, module, batch, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, dict):
            xf, yf = batch["forget"].x, batch["forget"].y
            remain = batch.get("remain")
            xr, yr = (remain.x, remain.y) if remain is not None else (xf[:0], yf[:0])
            # One forward over forget and remain inputs: one augmentation draw, one BN pass.
            x = self.inputs(module, torch.cat([xf, xr]), batch_idx)
            logits = module(x)
            nf = len(xf)
            log_t = self.log_target(self.teacher_logits(x[:nf]), yf)
            return trw_loss(logits[:nf], log_t, logits[nf:], yr, forget_weight=self.forget_weight)
        x, y = self.inputs(module, batch.x, batch_idx), batch.y
        logits = module(x)
        is_forget = torch.isin(y, torch.as_tensor(self._forget_classes, device=y.device))
        per = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
        if bool(is_forget.any()):
            log_t = self.log_target(self.teacher_logits(x[is_forget]), y[is_forget])
            kl = tilted_kl(logits[is_forget], log_t, reduction="none")
            per = per.masked_scatter(is_forget, self.forget_weight * kl)
        return per.mean()


@register_method
class TRWConcat(TRW):
    """TRW with ``mixing="concat"`` by default: one shuffled stream over D_R ∪ D_F, each input once per epoch.

    The same method as :class:`TRW` (same objective, same search space), registered under its
    own name so a comparison can run both mixings as two rows, each tuned on its own. See
    :class:`TRW`'s ``mixing`` for how often each forget input is seen per epoch under each.
    Registered for class forgetting with the remain set only: without it both mixings are the
    same single pass over D_F (use ``"trw"``).

    Args:
        mixing: default ``"concat"``.
        **kwargs: see :class:`TRW`.
    """

    name: ClassVar[str] = "trw-concat"
    # Without the remain set both mixings are one pass over D_F: the variant would repeat "trw".
    supported: ClassVar[frozenset[tuple[str, bool]]] = frozenset({("class", True)})

    def __init__(self, *, mixing: Mixing = "concat", **kwargs: Any) -> None:
        super().__init__(mixing=mixing, **kwargs)


def _labelled_union(forget: Dataset, remain: Dataset) -> Dataset:
    """D_F ∪ D_R as one dataset with a ``y`` tensor when both are tensor-backed (fast per-class subsampling)."""
    if isinstance(forget, IndexedTensorDataset) and isinstance(remain, IndexedTensorDataset):
        return IndexedTensorDataset(torch.cat([forget.x, remain.x]), torch.cat([forget.y, remain.y]), torch.cat([forget.index, remain.index]))
    return ConcatDataset([forget, remain])


class TRWMixin(UnlearningMixin):
    """:class:`~lightning_unlearn.unlearning.UnlearningMixin` with TRW as its objective. Mix it in first.

    ``start_trw(request, **hyperparameters)`` enters the unlearning phase with :class:`TRW`
    (``method="trw-concat"``: :class:`TRWConcat`); the next ``trainer.fit(model)`` fine-tunes
    toward the tilted target. :meth:`~lightning_unlearn.unlearning.UnlearningMixin.unlearning_loss`
    is the single override point (it delegates to :meth:`TRW.loss`, which calls
    :func:`~lightning_unlearn.unlearning.tilted.trw_log_target` and
    :func:`~lightning_unlearn.unlearning.tilted.trw_loss`). The similarity ``s``, ``beta`` and the
    snapshot θ_o are saved under the checkpoint key ``"unlearning"`` (:meth:`TRW.fit_state`; never
    as model buffers: the model's ``state_dict`` keys stay unchanged), so a fit resumed with
    ``ckpt_path`` keeps the original targets.

    Example:
        >>> from lightning_unlearn.training import ClassifierModule
        >>> class Model(TRWMixin, ClassifierModule): ...
        >>> # model.start_trw(UnlearningRequest.from_datamodule(dm)); trainer.fit(model); model.stop_unlearning()
    """

    def start_trw(self, request: UnlearningRequest, *, method: str = "trw", **hyperparameters: Any) -> TRW:
        """``start_unlearning(method, request, **hyperparameters)`` for a registered TRW variant
        (``"trw"``, ``"trw-concat"``, or one of your own subclasses of :class:`TRW`); class forgetting."""
        return self._start_variant(TRW, method, request, hyperparameters)

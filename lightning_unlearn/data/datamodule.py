"""``UnlearningDataModule``: a pool, a forget spec and the loaders of every set."""

from __future__ import annotations

import os
import warnings
from typing import Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.data.forget import ForgetSpec, ForgetSplit, make_split
from lightning_unlearn.data.pool import Pool, load_pool
from lightning_unlearn.data.sampler import ResumableDataLoader, ShardedEpochSampler
from lightning_unlearn.data.transforms import default_augmentation, normalize_augmentation

TrainOn = Literal["train", "remain"]


class UnlearningDataModule(pl.LightningDataModule):
    """Data for an unlearning experiment: forget, remain, train, test (and class-test) sets.

    Every loader yields ``(x, y, index)`` batches: ``x`` ``uint8`` ``(B, C, H, W)``, ``y``
    ``int64`` ``(B,)``, ``index`` the ``int64`` pool indices. Models convert ``x`` to
    ``[0, 1]`` floats and augment on their own device (:mod:`lightning_unlearn.data.transforms`);
    :attr:`augmentation` names the default augmentation for this data.

    Args:
        dataset: a source name (``digits``, ``cifar10``, ...) or an ImageFolder path.
        forget: ``random:FRACTION`` or ``class:K[,K]``.
        seed: draws the ``random:`` forget set and the shuffling order of :meth:`train_dataloader`.
        data_dir, download: where torchvision data sets live (``--data-dir`` on the command
            line); fetch them only if ``download``. ``root`` is the former name of
            ``data_dir``, still accepted with a ``DeprecationWarning``.
        max_train, max_test: stratified subsets for fast runs (pool indices are kept).
        batch_size: training batch size (default 128); ``eval_batch_size`` for evaluation.
        train_on: what :meth:`train_dataloader` serves: ``"train"`` (forget + remain, the
            original model) or ``"remain"`` (the retrained model).
        cache_dir: decoded-pool cache (default ``~/.cache/lightning_unlearn``).
        augmentation: ``"auto"`` (default: crop+flip for RGB images of 32x32 or more, none
            otherwise), ``"crop_flip"``, or ``"none"`` (the command line's spelling) / ``None``:
            no augmentation, e.g. to train models that memorise their training set for
            membership-inference experiments.

    Example:
        >>> dm = UnlearningDataModule("digits", forget="class:3")
        >>> dm.setup()
        >>> int((dm.pool.train_y[dm.split.forget] == 3).all())
        1
    """

    def __init__(
        self,
        dataset: str = "digits",
        *,
        forget: "str | ForgetSpec" = "random:0.1",
        seed: int = 0,
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        max_train: int | None = None,
        max_test: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        train_on: TrainOn = "train",
        cache_dir: str | os.PathLike | None = None,
        augmentation: str | None = "auto",
        root: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if root is not None:
            if data_dir is not None:
                raise ValueError("give data_dir only (root is its former name), not both")
            warnings.warn("UnlearningDataModule(root=...) is now spelled data_dir=..., as --data-dir on the command line", DeprecationWarning, stacklevel=2)
            data_dir = root
        self._augmentation = normalize_augmentation(augmentation, allow_auto=True)
        self.forget_spec = ForgetSpec.parse(forget)  # validate early
        if train_on not in ("train", "remain"):
            raise ValueError(f"train_on must be 'train' or 'remain', got {train_on!r}")
        if batch_size <= 0 or eval_batch_size <= 0:
            raise ValueError(f"batch sizes must be positive, got {batch_size} and {eval_batch_size}")
        self.dataset, self.seed, self.data_dir, self.download = dataset, seed, data_dir, download
        self.max_train, self.max_test = max_train, max_test
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.train_on: TrainOn = train_on
        self.cache_dir = cache_dir
        self.pool: Pool | None = None
        self.split: ForgetSplit | None = None

    # ------------------------------------------------------------------ lifecycle
    def _load(self) -> Pool:
        return load_pool(
            self.dataset, root=self.data_dir, download=self.download, max_train=self.max_train, max_test=self.max_test, cache_dir=self.cache_dir
        )

    def prepare_data(self) -> None:
        # rank 0 only: decode and fill the cache (and download when asked)
        self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.pool is not None:
            return
        self.pool = self._load()
        self.split = make_split(self.forget_spec, self.pool.train_y, self.pool.test_y, self.pool.num_classes, seed=self.seed)

    def _require(self) -> tuple[Pool, ForgetSplit]:
        if self.pool is None or self.split is None:
            self.setup()
        return self.pool, self.split  # type: ignore[return-value]

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return self._require()[0].num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._require()[0].image_shape

    @property
    def mean(self) -> tuple[float, ...]:
        return self._require()[0].mean

    @property
    def std(self) -> tuple[float, ...]:
        return self._require()[0].std

    @property
    def augmentation(self) -> str | None:
        """The constructor's choice; ``"auto"``: ``"crop_flip"`` for RGB images of 32x32 or more, ``None`` (e.g. digits) otherwise."""
        if self._augmentation != "auto":
            return self._augmentation
        return default_augmentation(self.image_shape)

    @property
    def is_class_forgetting(self) -> bool:
        return self.forget_spec.kind == "class"

    # ------------------------------------------------------------------ datasets
    def train_set(self) -> IndexedTensorDataset:
        pool, _ = self._require()
        return IndexedTensorDataset(pool.train_x, pool.train_y, pool.train_index)

    def forget_set(self) -> IndexedTensorDataset:
        pool, split = self._require()
        return self.train_set().subset(split.forget)

    def remain_set(self) -> IndexedTensorDataset:
        pool, split = self._require()
        return self.train_set().subset(split.remain)

    def test_set(self) -> IndexedTensorDataset:
        pool, _ = self._require()
        return IndexedTensorDataset(pool.test_x, pool.test_y, pool.test_index)

    def forget_class_test_set(self) -> IndexedTensorDataset:
        """Test samples of the forgotten classes (empty for random forgetting)."""
        pool, split = self._require()
        return self.test_set().subset(split.forget_class_test)

    def remain_class_test_set(self) -> IndexedTensorDataset:
        """Test samples of the remaining classes (the whole test set for random forgetting)."""
        pool, split = self._require()
        return self.test_set().subset(split.remain_class_test)

    # ------------------------------------------------------------------ loaders
    def make_loader(
        self, ds: IndexedTensorDataset, *, shuffle: bool, batch_size: int | None = None, seed_offset: int = 0, seed: int | None = None
    ) -> DataLoader:
        """A loader over ``ds``; shuffled loaders use the epoch-seeded, rank-sharded sampler and
        resume exactly, also from a checkpoint taken inside an epoch (:class:`~lightning_unlearn.data.ResumableDataLoader`).

        The sampler's seed is ``seed`` when given (e.g. a model's data-order seed), else
        ``self.seed + seed_offset``.
        """
        order = seed if seed is not None else self.seed + seed_offset
        sampler = ShardedEpochSampler(len(ds), seed=order) if shuffle else None
        return (ResumableDataLoader if shuffle else DataLoader)(
            ds,
            batch_size=batch_size or (self.batch_size if shuffle else self.eval_batch_size),
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.train_set() if self.train_on == "train" else self.remain_set()
        return self.make_loader(ds, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.make_loader(self.test_set(), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.make_loader(self.test_set(), shuffle=False)

    def forget_dataloader(self, shuffle: bool = False) -> DataLoader:
        return self.make_loader(self.forget_set(), shuffle=shuffle)

    def remain_dataloader(self, shuffle: bool = False) -> DataLoader:
        return self.make_loader(self.remain_set(), shuffle=shuffle)

    def forget_class_test_dataloader(self) -> DataLoader:
        return self.make_loader(self.forget_class_test_set(), shuffle=False)

    def remain_class_test_dataloader(self) -> DataLoader:
        return self.make_loader(self.remain_class_test_set(), shuffle=False)

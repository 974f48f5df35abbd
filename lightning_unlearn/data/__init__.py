"""Data: sources decoded once into cached uint8 pools, forget specs, the DataModule."""

from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.data.device_loader import DeviceTensorLoader
from lightning_unlearn.data.forget import ForgetSpec, ForgetSplit, make_split, validate_indices
from lightning_unlearn.data.items import ACCEPTED_FORMS, index_parts
from lightning_unlearn.data.pool import Pool, default_cache_dir, load_pool, stratified_subset
from lightning_unlearn.data.sampler import ResumableDataLoader, ShardedEpochSampler, epoch_order, restore_loader_positions
from lightning_unlearn.data.sources import SOURCE_NAMES, load_source
from lightning_unlearn.data.splits import IndexedSplits
from lightning_unlearn.data.transforms import augment, random_crop_flip, to_pixels

__all__ = [
    "ACCEPTED_FORMS",
    "SOURCE_NAMES",
    "DeviceTensorLoader",
    "ForgetSpec",
    "ForgetSplit",
    "IndexedSplits",
    "IndexedTensorDataset",
    "Pool",
    "ResumableDataLoader",
    "ShardedEpochSampler",
    "UnlearningDataModule",
    "augment",
    "default_cache_dir",
    "epoch_order",
    "index_parts",
    "load_pool",
    "load_source",
    "make_split",
    "random_crop_flip",
    "restore_loader_positions",
    "stratified_subset",
    "to_pixels",
    "validate_indices",
]

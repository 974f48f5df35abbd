"""Shared fixtures: a per-session pool cache, the offline data path, and a trained digits model."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

# One intra-op thread by default: the tiny models here gain nothing from two, and on a shared
# 2-core machine two threads per process spin against each other (about 10x slower).
# LIGHTNING_UNLEARN_TEST_THREADS overrides it.
torch.set_num_threads(int(os.environ.get("LIGHTNING_UNLEARN_TEST_THREADS", "1")))
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


def shared_data_dir() -> Path | None:
    """``$LIGHTNING_UNLEARN_DATA`` (the folder holding ``cifar10/``) if it is set and exists; nothing else is searched."""
    env = os.environ.get("LIGHTNING_UNLEARN_DATA")
    return Path(env) if env and Path(env).is_dir() else None


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lu-cache")


@pytest.fixture(scope="session")
def cifar_tree() -> Path:
    root = shared_data_dir()
    if root is None or not (root / "cifar10" / "train").is_dir():
        pytest.skip("offline CIFAR-10 tree not found: set LIGHTNING_UNLEARN_DATA to the folder holding cifar10/train and cifar10/test")
    return root / "cifar10"


@pytest.fixture(scope="session")
def digits_dm(cache_dir):
    from lightning_unlearn.data import UnlearningDataModule

    dm = UnlearningDataModule("digits", forget="random:0.1", seed=0, cache_dir=cache_dir)
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def digits_original(digits_dm):
    """A small CNN trained 8 epochs on digits (about 4 s); do not modify it in tests."""
    from lightning_unlearn.training import train_classifier

    return train_classifier(digits_dm, epochs=8, seed=0)

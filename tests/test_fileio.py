"""Atomic writes and checked loads (lightning_unlearn.fileio)."""

from __future__ import annotations

import pickle

import pytest
import torch

from lightning_unlearn.fileio import DamagedFileError, atomic_save, atomic_write, atomic_write_text, load_checked


def test_atomic_save_round_trip_leaves_no_temporary(tmp_path):
    path = atomic_save({"w": torch.arange(4.0)}, tmp_path / "sub" / "m.pt")
    assert torch.equal(load_checked(path, what="model", required_keys=("w",))["w"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = atomic_write_text(tmp_path / "r.txt", "old")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_truncated_file_is_named(tmp_path):
    path = atomic_save({"w": torch.zeros(100)}, tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DamagedFileError, match="m.pt.*cannot be read as a model"):
        load_checked(path, what="model")


def test_unsafe_pickle_is_refused_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path, pickle_module=pickle)
    with pytest.raises(DamagedFileError, match="evil.pt"):
        load_checked(path, what="membership table")


def test_missing_keys_and_wrong_type(tmp_path):
    path = atomic_save([1, 2], tmp_path / "l.pt")
    with pytest.raises(DamagedFileError, match="holds a list"):
        load_checked(path, what="pool", required_keys=("train_x",))
    path = atomic_save({"a": 1}, tmp_path / "d.pt")
    with pytest.raises(DamagedFileError, match="missing train_x"):
        load_checked(path, what="pool", required_keys=("train_x",))
    with pytest.raises(FileNotFoundError):
        load_checked(tmp_path / "absent.pt", what="pool")

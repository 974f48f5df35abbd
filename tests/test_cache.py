"""The one cache: keys, verification on load, and every kind of damage (each detected, named, rebuilt)."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
import torch

from lightning_unlearn.cache import (
    ArtefactCache,
    CacheNotWritableError,
    check_writable,
    settings_key,
)
from lightning_unlearn.data import load_pool


def _damage_logged(caplog, path) -> bool:
    return any(str(path) in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# ---------------------------------------------------------------------------- the store
def test_keys_depend_on_settings_and_kind_not_on_order():
    a = settings_key("models", {"seed": 0, "role": "original"})
    assert a == settings_key("models", {"role": "original", "seed": 0})
    assert a != settings_key("models", {"seed": 1, "role": "original"})
    assert a != settings_key("pools", {"seed": 0, "role": "original"})
    assert re.fullmatch(r"[0-9a-f]{24}", a), a  # 24 lowercase hex digits


def test_roundtrip_counts_and_leaves_no_temporary_file(tmp_path):
    cache = ArtefactCache(tmp_path, "models")
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(3.0)}, {"seconds": 1.5}

    a = cache.get_or_build({"role": "original", "seed": 0}, build)
    b = cache.get_or_build({"seed": 0, "role": "original"}, build)
    assert len(calls) == 1 and not a.from_cache and b.from_cache
    assert torch.equal(b.value["w"], torch.arange(3.0)) and b.meta == {"seconds": 1.5} == a.meta
    assert b.settings == {"role": "original", "seed": 0}
    assert cache.built == [a.key] and cache.loaded == [a.key]
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f"{a.key}.pt"]


def test_garbage_and_truncated_entries_are_named_removed_and_rebuilt(tmp_path, caplog):
    cache = ArtefactCache(tmp_path, "models")
    settings = {"seed": 0}
    entry = cache.get_or_build(settings, lambda: ({"w": torch.randn(50)}, {}))
    path = cache.path(entry.key)
    for damage in (lambda: path.write_bytes(b"garbage"), lambda: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])):
        cache.get_or_build(settings, lambda: ({"w": torch.randn(50)}, {}))  # a good file again
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
            assert cache.load(settings) is None
        assert _damage_logged(caplog, path) and not path.exists()
        rebuilt = cache.get_or_build(settings, lambda: ({"w": torch.zeros(50)}, {}))
        assert not rebuilt.from_cache and torch.equal(rebuilt.value["w"], torch.zeros(50))


def test_an_entry_copied_under_another_key_is_detected(tmp_path, caplog):
    """The retrain row must never become the original's: the key and settings inside are compared."""
    cache = ArtefactCache(tmp_path, "models")
    original = cache.get_or_build({"role": "original"}, lambda: ({"w": torch.ones(2)}, {}))
    retrain_key = cache.key({"role": "retrain"})
    shutil.copy(cache.path(original.key), cache.path(retrain_key))
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        assert cache.load({"role": "retrain"}) is None
    assert _damage_logged(caplog, cache.path(retrain_key)) and "another entry" in caplog.text
    retrain = cache.get_or_build({"role": "retrain"}, lambda: ({"w": torch.zeros(2)}, {}))
    assert not retrain.from_cache and torch.equal(retrain.value["w"], torch.zeros(2))
    assert cache.load({"role": "original"}).from_cache  # the source entry is untouched


def test_a_payload_that_does_not_restore_counts_as_damage(tmp_path, caplog):
    cache = ArtefactCache(tmp_path, "models")
    net = torch.nn.Linear(3, 2)
    cache.get_or_build({"m": 1}, lambda: ({"weight": torch.zeros(5, 5)}, {}))  # weights of another shape

    def restore(payload):
        fresh = torch.nn.Linear(3, 2)
        fresh.load_state_dict(payload, strict=True)
        return fresh

    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        assert cache.load({"m": 1}, restore) is None
    assert "does not fit" in caplog.text
    e = cache.get_or_build({"m": 1}, lambda: (net.state_dict(), {}), restore)
    assert torch.equal(e.value.weight, net.weight)


class Arbitrary:
    """An object outside torch's weights-only allow list."""


def test_unsafe_pickles_are_refused_not_loaded(tmp_path, caplog):
    """A file holding arbitrary Python objects fails the weights-only load and is rebuilt."""
    cache = ArtefactCache(tmp_path, "models")
    key = cache.key({"s": 1})
    cache.folder.mkdir(parents=True)
    torch.save({"format": "x", "kind": "models", "key": key, "settings": "{}", "meta": "{}", "payload": Arbitrary()}, cache.path(key))
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        assert cache.load({"s": 1}) is None
    assert "cannot be read" in caplog.text and not cache.path(key).exists()


def test_an_unwritable_cache_path_is_reported_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheNotWritableError, match="not writable.*LIGHTNING_UNLEARN_CACHE"):
        check_writable(blocker / "cache")


def test_a_read_only_cache_folder_is_reported(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        try:
            (ro / "probe").write_text("x")
            (ro / "probe").unlink()
            pytest.skip("running as root: permission bits do not make a folder unwritable (see the test above)")
        except PermissionError:
            pass
        with pytest.raises(CacheNotWritableError, match="ro"):
            check_writable(ro / "models")
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------------------- pools
def _pool_file(cache_dir):
    files = list((cache_dir / "pools").glob("*.pt"))
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "overwritten by another pool"])
def test_damaged_pool_files_are_named_and_decoded_again(tmp_path, caplog, damage):
    good = load_pool("digits", max_train=200, max_test=100, cache_dir=tmp_path)
    path = _pool_file(tmp_path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 4096)
    else:  # another subset's (valid) pool file under this pool's name
        other = tmp_path / "other"
        load_pool("digits", max_train=300, max_test=100, cache_dir=other)
        shutil.copy(_pool_file(other), path)
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        again = load_pool("digits", max_train=200, max_test=100, cache_dir=tmp_path)
    assert _damage_logged(caplog, path)
    assert torch.equal(again.train_x, good.train_x) and torch.equal(again.train_index, good.train_index)
    assert load_pool("digits", max_train=200, max_test=100, cache_dir=tmp_path).train_x.shape == (200, 1, 8, 8)


def test_a_pool_with_inconsistent_shapes_is_rejected(tmp_path, caplog):
    from lightning_unlearn.data.pool import pool_payload

    pool = load_pool("digits", max_train=200, max_test=100, cache_dir=tmp_path)
    path = _pool_file(tmp_path)
    blob = torch.load(path, weights_only=True)
    broken = pool_payload(pool)
    broken["train_y"] = broken["train_y"][:-5]  # labels no longer match the images
    torch.save({**blob, "payload": broken}, path)
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        again = load_pool("digits", max_train=200, max_test=100, cache_dir=tmp_path)
    assert "train_y" in caplog.text and len(again.train_y) == 200


def test_pool_cache_unwritable_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheNotWritableError, match="not writable"):
        load_pool("digits", cache_dir=blocker)
    assert load_pool("digits", cache_dir=blocker, use_cache=False).train_x.shape[0] == 1347  # the documented way out

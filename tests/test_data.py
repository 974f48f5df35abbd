import pytest
import torch

from lightning_unlearn.data import (
    ForgetSpec,
    UnlearningDataModule,
    load_pool,
    make_split,
    random_crop_flip,
    stratified_subset,
    validate_indices,
)


def test_digits_pool_shapes_and_indices(cache_dir):
    pool = load_pool("digits", cache_dir=cache_dir)
    assert pool.train_x.dtype == torch.uint8 and pool.train_x.shape[1:] == (1, 8, 8)
    assert len(pool.train_y) + len(pool.test_y) == 1797
    assert torch.equal(pool.train_index, torch.arange(len(pool.train_y)))
    assert torch.equal(pool.test_index, torch.arange(len(pool.test_y)) + pool.n_train_full)
    # stratified 75/25: every class in both splits
    assert set(pool.train_y.tolist()) == set(pool.test_y.tolist()) == set(range(10))


def test_cache_returns_identical_tensors(cache_dir):
    a = load_pool("digits", cache_dir=cache_dir, max_train=500)
    b = load_pool("digits", cache_dir=cache_dir, max_train=500)
    c = load_pool("digits", cache_dir=cache_dir, max_train=500, use_cache=False)
    for name in ("train_x", "train_y", "train_index", "test_x", "test_y", "test_index"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert torch.equal(getattr(a, name), getattr(c, name))


def test_subset_keeps_pool_indices_and_strata(cache_dir):
    full = load_pool("digits", cache_dir=cache_dir)
    sub = load_pool("digits", cache_dir=cache_dir, max_train=300, max_test=100)
    assert len(sub.train_y) == 300 and len(sub.test_y) == 100
    # indices are positions in the full source: labels and pixels agree with the full pool
    assert torch.equal(full.train_y[sub.train_index], sub.train_y)
    assert torch.equal(full.train_x[sub.train_index], sub.train_x)
    assert torch.equal(full.test_x[sub.test_index - full.n_train_full], sub.test_x)
    full_share = torch.bincount(full.train_y, minlength=10).float() / len(full.train_y)
    sub_share = torch.bincount(sub.train_y, minlength=10).float() / 300
    assert (full_share - sub_share).abs().max() < 0.01


def test_stratified_subset_exact_size():
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 3)
    pos = stratified_subset(labels, 6, seed=1)
    assert len(pos) == 6 and len(pos.unique()) == 6
    assert torch.bincount(labels[pos], minlength=3).tolist() == [3, 2, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_random_split_disjoint_covering_sized(seed):
    y = torch.arange(1000) % 10
    s = make_split("random:0.1", y, y[:100], 10, seed=seed)
    assert len(s.forget) == 100 and len(s.remain) == 900
    assert not set(s.forget.tolist()) & set(s.remain.tolist())
    assert sorted(s.forget.tolist() + s.remain.tolist()) == list(range(1000))
    again = make_split("random:0.1", y, y[:100], 10, seed=seed)
    other = make_split("random:0.1", y, y[:100], 10, seed=seed + 1)
    assert torch.equal(s.forget, again.forget)
    assert not torch.equal(s.forget, other.forget)


def test_class_split_holds_exactly_the_class():
    y = torch.arange(200) % 10
    yt = torch.arange(50) % 10
    s = make_split("class:3,5", y, yt, 10)
    assert set(y[s.forget].tolist()) == {3, 5}
    assert len(s.forget) == 40 and not bool(torch.isin(y[s.remain], torch.tensor([3, 5])).any())
    assert set(yt[s.forget_class_test].tolist()) == {3, 5}
    assert len(s.forget_class_test) + len(s.remain_class_test) == 50


@pytest.mark.parametrize(
    "spec, match",
    [
        ("random:0", "not in \\(0, 1\\)"),
        ("random:1.5", "not in \\(0, 1\\)"),
        ("random:abc", "not a number"),
        ("class:x", "integers"),
        ("class:3,3", "'class:3,3': class 3 given more than once"),
        ("class:1,4,1,4,2", "class 1, 4 given more than once"),
        ("shuffle:0.1", "unknown kind 'shuffle'"),
        ("random", "expected 'random:FRACTION'"),
    ],
)
def test_bad_forget_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        ForgetSpec.parse(spec)


def test_bad_splits():
    y = torch.arange(100) % 10
    with pytest.raises(ValueError, match="class 12 is out of range; allowed classes are 0..9"):
        make_split("class:12", y, y, 10)
    with pytest.raises(ValueError, match="forgetting all 10 classes"):
        make_split("class:" + ",".join(map(str, range(10))), y, y, 10)
    with pytest.raises(ValueError, match="selects no sample"):
        make_split("random:0.001", y, y, 10)


def test_validate_indices_errors():
    with pytest.raises(ValueError, match="empty"):
        validate_indices(torch.tensor([], dtype=torch.long), 10)
    with pytest.raises(ValueError, match="index 10 is out of range; allowed are 0..9"):
        validate_indices(torch.tensor([1, 10]), 10)
    with pytest.raises(ValueError, match="strict subset"):
        validate_indices(torch.arange(12), 10)
    assert validate_indices(torch.tensor([3, 1]), 10).tolist() == [1, 3]


def test_unknown_dataset_and_missing_tree(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'imagenet5'.*digits, cifar10"):
        load_pool("imagenet5", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pool(str(tmp_path / "nope"), cache_dir=tmp_path)
    (tmp_path / "tree" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="missing test/"):
        load_pool(str(tmp_path / "tree"), cache_dir=tmp_path)
    (tmp_path / "tree" / "test" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="train/ holds no class folders with images"):
        load_pool(str(tmp_path / "tree"), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="needs a data directory"):
        load_pool("cifar10", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist; pass download=True"):
        load_pool("cifar10", root=tmp_path / "absent", cache_dir=tmp_path)


def _write_tree(root, sizes=(8, 8)):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = torch.randint(0, 256, (*sizes, 3), generator=gen, dtype=torch.uint8).numpy()
                Image.fromarray(arr).save(d / f"{i:04d}.png")


def test_image_folder_source_roundtrip(tmp_path):
    _write_tree(tmp_path / "tree")
    pool = load_pool(str(tmp_path / "tree"), cache_dir=tmp_path / "cache")
    assert pool.classes == ("cat", "dog")
    assert pool.train_x.shape == (12, 3, 8, 8) and pool.test_x.shape == (4, 3, 8, 8)
    assert pool.train_y.tolist() == [0] * 6 + [1] * 6
    assert pool.test_index.tolist() == [12, 13, 14, 15]
    import numpy as np
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "tree" / "train" / "dog" / "0000.png"))
    assert torch.equal(pool.train_x[6].permute(1, 2, 0), torch.from_numpy(first))


def test_datamodule_loaders(digits_dm):
    dm = digits_dm
    batch = next(iter(dm.train_dataloader()))
    x, y, idx = batch
    assert x.dtype == torch.uint8 and y.dtype == torch.int64 and idx.dtype == torch.int64
    forget_idx = torch.cat([b[2] for b in dm.forget_dataloader()])
    remain_idx = torch.cat([b[2] for b in dm.remain_dataloader()])
    assert len(forget_idx) == round(0.1 * len(dm.pool.train_y))
    assert sorted(torch.cat([forget_idx, remain_idx]).tolist()) == dm.pool.train_index.tolist()
    assert dm.augmentation is None  # digits: no augmentation
    # the epoch-seeded order is reproducible
    loader = dm.train_dataloader()
    first = [b[2] for b in loader]
    again = [b[2] for b in dm.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_random_crop_flip_matches_reference_per_sample():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 6, 6, generator=gen)
    g1 = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, padding=2, generator=g1)
    g2 = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 5, (5,), generator=g2)
    ox = torch.randint(0, 5, (5,), generator=g2)
    fl = torch.rand(5, generator=g2) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(5):
        ref = padded[i, :, oy[i] : oy[i] + 6, ox[i] : ox[i] + 6]
        if fl[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    masked = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(3), mask=torch.zeros(5, dtype=torch.bool))
    assert torch.equal(masked, x)


@pytest.mark.shared_data
def test_offline_cifar_tree_subset(cifar_tree, cache_dir):
    dm = UnlearningDataModule(str(cifar_tree), forget="class:1", max_train=300, max_test=100, cache_dir=cache_dir)
    dm.setup()
    assert dm.pool.train_x.shape == (300, 3, 32, 32) and dm.num_classes == 10
    assert dm.pool.classes[1] == "automobile"
    assert dm.augmentation == "crop_flip"
    assert bool((dm.pool.train_y[dm.split.forget] == 1).all()) and len(dm.split.forget) == 30
    assert dm.pool.test_index.min() >= 50_000


def test_device_tensor_loader_shards_like_distributed_sampler():
    from torch.utils.data import DistributedSampler

    from lightning_unlearn.data import DeviceTensorLoader, IndexedTensorDataset

    ds = IndexedTensorDataset(torch.arange(11).view(11, 1, 1, 1).to(torch.uint8), torch.arange(11) % 3, torch.arange(100, 111))
    full = torch.cat([b[2] for b in DeviceTensorLoader(ds, batch_size=4)])
    assert full.tolist() == list(range(100, 111))
    shards = []
    for rank in range(2):
        loader = DeviceTensorLoader(ds, batch_size=4, rank=rank, world_size=2)
        ref = list(DistributedSampler(range(11), num_replicas=2, rank=rank, shuffle=False))
        got = torch.cat([b[2] for b in loader]) - 100
        assert got.tolist() == ref and len(loader) == 2
        shards.append(got)
    assert set(torch.cat(shards).tolist()) == set(range(11))
    loader = DeviceTensorLoader(ds, batch_size=4, shuffle=True, seed=1)
    loader.sampler.set_epoch(0)
    e0 = torch.cat([b[2] for b in loader])
    loader.sampler.set_epoch(1)
    e1 = torch.cat([b[2] for b in loader])
    assert sorted(e0.tolist()) == sorted(e1.tolist()) and not torch.equal(e0, e1)


@pytest.mark.parametrize("choice, expected", [("auto", None), (None, None), ("none", None), ("crop_flip", "crop_flip")])
def test_datamodule_augmentation_choice(cache_dir, choice, expected):
    dm = UnlearningDataModule("digits", augmentation=choice, cache_dir=cache_dir)
    assert dm.augmentation == expected


def test_datamodule_rejects_unknown_augmentation():
    with pytest.raises(ValueError, match=r"unknown augmentation 'mixup': expected one of 'auto', 'crop_flip', 'none'"):
        UnlearningDataModule("digits", augmentation="mixup")

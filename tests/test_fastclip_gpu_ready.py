"""FastClip events on a GPU budget, checked on CPU: host reads per event, and untouched layers below the target."""

from __future__ import annotations

import pytest
import torch
from test_spectral import dense_singular_values
from torch import nn

from lightning_unlearn.callbacks import FastClip
from lightning_unlearn.models import build_model
from lightning_unlearn.spectral import ClipSettings
from lightning_unlearn.spectral.host_reads import HostReadCounter
from lightning_unlearn.training import ClassifierModule, seed_everything
from lightning_unlearn.training.fit import make_trainer


class CountingFastClip(FastClip):
    """Counts host reads (``HostReadCounter``) in every hook call that ran a clip event."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts: list[HostReadCounter] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        before = self.num_events
        with HostReadCounter() as counter:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.num_events > before:
            self.counts.append(counter)


def four_layer_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def _random_loader(shape, n=64, batch_size=16):
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size)


@pytest.mark.parametrize("settings", [None, ClipSettings(max_steps=3, prescale=True), ClipSettings(max_steps=3, dense_max_entries=0)])
def test_four_layer_net_events_read_the_host_at_most_four_times(settings):
    seed_everything(0)
    module = ClassifierModule(four_layer_net(), num_classes=10, lr=0.3, momentum=0.9, schedule="constant")
    # lr 0.3: the weights move far between events (prescale, fallback and the second round all run)
    cb = CountingFastClip(max_norm=1.0, every_n_steps=2, settings=settings)
    make_trainer(max_epochs=3, callbacks=[cb], log_every_n_steps=3).fit(module, train_dataloaders=_random_loader((1, 8, 8)))
    assert len(cb.counts) == 6
    assert all(c.reads <= 4 for c in cb.counts), [(c.reads, dict(c.by_op)) for c in cb.counts]
    assert any(r.fallback for r in cb.records)
    if settings is not None:  # the decision read's branch (more Gauss-Newton steps for far-rejected layers) ran
        assert any(r.steps > 1 for r in cb.records)
        assert all(c.reads == 2 for c in cb.counts)
    else:  # one transfer of every logged number, the logging to loggers and callback_metrics included
        assert all(c.reads == 1 for c in cb.counts), [(c.reads, dict(c.by_op)) for c in cb.counts]


@pytest.mark.slow
def test_resnet18_events_read_the_host_at_most_four_times():
    seed_everything(0)
    net = build_model("resnet18", in_channels=3, num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    module = ClassifierModule(net, num_classes=10, lr=0.1, schedule="constant")
    # small depths keep the test fast: the schedule (and so the number of reads) does not depend on them
    cb = CountingFastClip(max_norm=1.0, every_n_steps=2, settings=ClipSettings(k=2, est_depth=1, cert_depth=2, fresh=1))
    make_trainer(max_epochs=1, callbacks=[cb]).fit(module, train_dataloaders=_random_loader((3, 32, 32), n=32, batch_size=8))
    assert len(cb.layer_shapes) == 21 and len(cb.counts) == 2
    assert all(c.reads <= 4 for c in cb.counts), [(c.reads, dict(c.by_op)) for c in cb.counts]


@pytest.mark.parametrize("krylov", [False, True])
def test_a_layer_below_the_target_stays_bit_identical_through_a_fit(digits_dm, krylov):
    # Two frozen layers (a conv and the linear head) with true norms 0.7 and 0.9: events must
    # never write them, while the trained layers around them are clipped.
    seed_everything(0)
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=digits_dm.mean, std=digits_dm.std)
    frozen = {"features.3": ((16, 8, 8), 0.7), "fc": ((64,), 0.9)}
    with torch.no_grad():
        for name, (shape, target) in frozen.items():
            layer = net.net.get_submodule(name)
            layer.weight.mul_(target / float(dense_singular_values(layer, shape)[0]))
            layer.requires_grad_(False)
    snapshot = {name: net.net.get_submodule(name).weight.detach().clone() for name in frozen}
    module = ClassifierModule(net, num_classes=10, lr=0.2, schedule="constant")
    settings = ClipSettings(dense_max_entries=0) if krylov else ClipSettings()
    cb = FastClip(max_norm=1.0, every_n_steps=2, settings=settings)
    ds = digits_dm.train_set()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(256)), batch_size=32)
    make_trainer(max_epochs=1, callbacks=[cb]).fit(module, train_dataloaders=loader)
    assert cb.num_events == 4
    for name in frozen:
        assert torch.equal(net.net.get_submodule(name).weight, snapshot[name]), name
        recs = [r for r in cb.records if r.layer == f"model.net.{name}"]
        assert len(recs) == 4 and all(r.steps == 0 and not r.fallback and not r.prescaled for r in recs)
    assert any(r.steps > 0 or r.fallback for r in cb.records)  # the other layers were clipped

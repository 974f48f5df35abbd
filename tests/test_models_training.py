import pytest
import torch

from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.models import ResNet18, SmallCNN, build_model, final_linear
from lightning_unlearn.training import train_classifier


def test_model_shapes():
    assert SmallCNN(1, 10)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert SmallCNN(3, 7)(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert ResNet18(3, 10)(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    m = build_model("small-cnn", in_channels=3, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)
    name, lin = final_linear(m)
    assert name == "net.fc" and lin.out_features == 10
    with pytest.raises(ValueError, match="unknown model 'vgg'.*small-cnn, resnet18"):
        build_model("vgg", in_channels=3, num_classes=10, mean=(0,), std=(1,))
    with pytest.raises(ValueError, match="no nn.Linear"):
        final_linear(torch.nn.Conv2d(1, 1, 1))


def test_build_model_width_of_the_small_cnn():
    m = build_model("small-cnn", in_channels=3, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3, width=32)
    convs = [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs == [32, 64, 64, 128, 128] and final_linear(m)[1].in_features == 128
    default = build_model("small-cnn", in_channels=3, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert [c.out_channels for c in default.modules() if isinstance(c, torch.nn.Conv2d)][0] == 16
    with pytest.raises(ValueError, match="width is an option of 'small-cnn' only"):
        build_model("resnet18", in_channels=3, num_classes=10, mean=(0,), std=(1,), width=32)
    with pytest.raises(ValueError, match="width must be a positive int"):
        build_model("small-cnn", in_channels=3, num_classes=10, mean=(0,), std=(1,), width=0)


def test_normalize_inside_model():
    m = build_model("small-cnn", in_channels=1, num_classes=10, mean=(0.5,), std=(0.25,))
    x = torch.rand(3, 1, 8, 8)
    m.eval()
    assert torch.allclose(m(x), m.net((x - 0.5) / 0.25))


def test_digits_training_beats_chance_and_predict_restores_mode(digits_dm, digits_original):
    logits, y, idx = predict_logits(digits_original, digits_dm.test_set())
    assert accuracy(logits, y) > 90.0
    assert torch.equal(idx, digits_dm.pool.test_index)
    digits_original.train()
    predict_logits(digits_original, digits_dm.forget_set())
    assert digits_original.training
    digits_original.eval()


def test_training_is_bit_identical_on_cpu(digits_dm):
    a = train_classifier(digits_dm, epochs=1, seed=3)
    b = train_classifier(digits_dm, epochs=1, seed=3)
    c = train_classifier(digits_dm, epochs=1, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_retrain_sees_only_remain(digits_dm):
    from lightning_unlearn.training import ClassifierModule

    seen = []

    class Spy(ClassifierModule):
        def training_step(self, batch, batch_idx):
            seen.append(batch[2])
            return super().training_step(batch, batch_idx)

    from lightning_unlearn.models import build_model as bm
    from lightning_unlearn.training.fit import make_trainer

    net = bm("small-cnn", in_channels=1, num_classes=10, mean=digits_dm.mean, std=digits_dm.std)
    spy = Spy(net, num_classes=10)
    loader = digits_dm.make_loader(digits_dm.remain_set(), shuffle=True)
    make_trainer(max_epochs=1).fit(spy, train_dataloaders=loader)
    seen_idx = set(torch.cat(seen).tolist())
    assert seen_idx == set(digits_dm.pool.train_index[digits_dm.split.remain].tolist())

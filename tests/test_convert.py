import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icsnn_core.convert import QuantileObserver, balance_thresholds, convert, quantile_of, validate_quantile
from icsnn_core.data import Split
from icsnn_core.errors import ConfigError
from icsnn_core.models import build_model
from icsnn_core.neuron import IFNeuron, neurons


def randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))


@pytest.mark.parametrize("arch,shape", [("resnet20", (3, 32, 32)), ("vgg16", (3, 32, 32)), ("digits-cnn", (1, 8, 8))])
def test_bn_folding_keeps_the_function(arch, shape):
    torch.manual_seed(0)
    model = build_model(arch, 10, shape[0], width=0.25, bn=True).double()
    randomise_bn(model)
    model.eval()
    x = torch.rand(3, *shape, dtype=torch.float64)
    before = model(x)
    converted = convert(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    assert torch.allclose(converted(x), before, atol=1e-9)


class UserNet(nn.Module):
    """A user's own module: a shared ReLU module used twice, a functional relu, a residual add."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = self.relu(self.bn(self.conv1(x)))
        h = self.relu(self.conv2(h) + h)
        h = F.avg_pool2d(F.relu(h), 2)
        return self.fc(h.flatten(1))


def test_user_module_gets_one_neuron_per_relu_call_site():
    torch.manual_seed(0)
    net = UserNet().eval()
    x = torch.rand(2, 1, 8, 8)
    before = net(x)
    converted = convert(net)
    assert len(list(neurons(converted))) == 3
    assert torch.allclose(converted(x), before, atol=1e-5)


def test_user_sequential_keeps_its_class_in_a_copy():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2), nn.ReLU(),
                        nn.Linear(2, 2))
    out = convert(net)
    assert type(out) is nn.Sequential and isinstance(out[1], IFNeuron) and isinstance(out[5], IFNeuron)
    assert out is not net and isinstance(net[1], nn.ReLU)  # the user's model is untouched


@pytest.mark.parametrize("layer", [nn.MaxPool2d(2), nn.Sigmoid(), nn.GELU()])
def test_unsupported_layers_are_refused(layer):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), layer, nn.Flatten())
    with pytest.raises(ConfigError, match="Fix:"):
        convert(net)


def test_functional_max_pool_is_refused():
    class Net(nn.Module):
        def forward(self, x):
            return F.max_pool2d(torch.relu(x), 2)

    with pytest.raises(ConfigError, match="max_pool2d"):
        convert(Net())


def test_quantile_exact_when_small():
    v = torch.randn(10001)
    for q in (0.5, 0.9, 0.99, 0.9999):
        assert quantile_of(v, q) == pytest.approx(float(np.quantile(v.double().numpy(), q)), rel=1e-9)


def test_quantile_streams_beyond_torch_quantile_limit():
    # 24M values (torch.quantile refuses > 16M): sampled to ~2^20 and still within 0.002 of the truth
    g = torch.Generator().manual_seed(0)
    obs = QuantileObserver(0.99, "all", expected_total=24 * 2 ** 20, max_samples=2 ** 20, generator=g)
    for _ in range(24):
        obs.update(torch.rand(2 ** 20, generator=g))
    assert sum(k.numel() for k in obs.kept) < 1.1 * 2 ** 20
    assert obs.result() == pytest.approx(0.99, abs=0.002)
    assert obs.max <= 1.0


@pytest.mark.parametrize("q", [0, -0.1, 1.5, float("nan"), "0.9"])
def test_quantile_outside_range_is_refused(q):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        validate_quantile(q)


def test_thresholds_are_the_activation_quantile():
    # identity layer: the activations are the (positive) pixel values themselves
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4))
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin, IFNeuron(), nn.Linear(4, 2))
    x = torch.rand(50, 1, 1, 4)
    data = Split(x, torch.zeros(50, dtype=torch.long), 1.0)
    [thr] = balance_thresholds(model, data, quantile=0.9, images=50, values="all", batch_size=7)
    assert thr == pytest.approx(float(np.quantile(x.numpy(), 0.9)), rel=1e-6)
    [thr] = balance_thresholds(model, data, quantile=1.0, images=20)
    assert thr == pytest.approx(float(x[:20].max()))

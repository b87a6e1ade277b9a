"""The paper's Algorithms 1-3 on hand-made layers whose answers are computed by hand."""
import pytest
import torch
from torch import nn

from conftest import identity_layer_model
from icsnn_core.calibration import (coding_compensation, compensation_value, data_based_init, residual_potentials,
                                    set_initial_potential, weight_based_init)
from icsnn_core.data import Split
from icsnn_core.errors import ConfigError
from icsnn_core.methods import Method
from icsnn_core.neuron import IFNeuron, neurons


def two_layer_model() -> nn.Sequential:
    """Linear(2,2) -> IF(0.75) -> Linear(2,2) -> IF(1.0) -> Linear(2,2), weights chosen by hand."""
    l1, l2, l3 = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[0.5, 0.25], [1.0, -0.75]]))
        l1.bias.copy_(torch.tensor([0.125, 0.0]))
        l2.weight.copy_(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
        l2.bias.copy_(torch.tensor([0.0, 0.25]))
    n1, n2 = IFNeuron(), IFNeuron()
    n1.set_threshold(0.75)
    n2.set_threshold(1.0)
    return nn.Sequential(nn.Flatten(), l1, n1, l2, n2, l3)


def test_algorithm1_weight_based_by_hand():
    # layer 1, every input pixel = 1: z = W 1 + b = [0.875, 0.25]; 4 z = [3.5, 1.0]; mod 0.75 = [0.5, 0.25]
    # layer 2, every input spikes (value V_th1 = 0.75): z = [1.125, 1.0]; 4 z = [4.5, 4.0]; mod 1 = [0.5, 0.0]
    m = two_layer_model()
    layer = weight_based_init(m, 4, (1, 1, 2), "layer")
    channel = weight_based_init(m, 4, (1, 1, 2), "channel")
    assert [float(v) for v in layer] == [0.375, 0.25]
    assert [v.tolist() for v in channel] == [[0.5, 0.25], [0.5, 0.0]]


def data_split(images: torch.Tensor) -> Split:
    return Split(images, torch.zeros(len(images), dtype=torch.long), 1.0)


# constant currents 0.375, 0.625, -0.25 | 0.875, 0.0, 0.5 over T = 4 steps, V_th = 1, v(0) = 0:
# spikes N = 1, 2, 0 | 3, 0, 1 and residuals v(T) = 0.5, 0.5, -1.0 | 0.5, 0.0, 1.0
@pytest.mark.parametrize("residual,granularity,expected", [
    ("raw", "layer", 1.5 / 6),
    ("clip", "layer", 2.5 / 6),
    ("fired", "layer", 2.5 / 4),
    ("raw", "neuron", [0.5, 0.25, 0.0]),
    ("fired", "neuron", [0.5, 0.5, 1.0]),
])
def test_algorithm2_residual_by_hand(dyadic_images, residual, granularity, expected):
    m = identity_layer_model(3)
    init = data_based_init(m, data_split(dyadic_images), 4, residual=residual, granularity=granularity, batch_size=1)
    assert torch.allclose(init[0].double(), torch.tensor(expected, dtype=torch.float64))


def test_algorithm2_starts_from_zero_even_if_v0_was_set(dyadic_images):
    m = identity_layer_model(3)
    set_initial_potential(m, [0.4])
    assert float(data_based_init(m, data_split(dyadic_images), 4)[0]) == pytest.approx(0.25)


def test_algorithm3_adds_compensation_to_residual(dyadic_images):
    # from v(0) = V_th / 2T = 0.125: N = 1, 2, 0 | 3, 0, 2 ; v(T) = 0.625, 0.625, -0.875 | 0.625, 0.125, 0.125
    m = identity_layer_model(3)
    final = coding_compensation(m, data_split(dyadic_images), 4, compensation="printed", init="data")
    assert float(final[0]) == pytest.approx(1.25 / 6 + 0.125)
    # and it is literally: residual measured from v(0) = comp, plus comp
    set_initial_potential(m, [compensation_value(1.0, 4, "printed")])
    residual = residual_potentials(m, data_split(dyadic_images), 4)
    assert float(final[0]) == pytest.approx(float(residual[0]) + 0.125)


def test_compensation_readings():
    assert float(compensation_value(0.8, 4, "printed")) == pytest.approx(0.1)  # V_th / 2T
    assert float(compensation_value(0.8, 4, "potential")) == pytest.approx(0.4)  # V_th / 2
    with pytest.raises(ConfigError, match="compensation"):
        compensation_value(0.8, 4, "half")


def test_methods_set_the_expected_v0(dyadic_images):
    m = identity_layer_model(3, thr=0.5)
    calib = data_split(dyadic_images)
    Method.make("snn").apply(m, 8, calib)
    assert float(next(neurons(m))[1].v0) == 0.0
    Method.make("c-snn", compensation="printed").apply(m, 8, calib)
    assert float(next(neurons(m))[1].v0) == pytest.approx(0.5 / 16)
    Method.make("c-snn", compensation="potential").apply(m, 8, calib)
    assert float(next(neurons(m))[1].v0) == pytest.approx(0.25)
    Method.make("i-snn", granularity="neuron").apply(m, 8, calib)
    assert next(neurons(m))[1].v0.shape == (3,)


def test_method_validation():
    with pytest.raises(ConfigError, match="unknown method"):
        Method.make("x-snn")
    with pytest.raises(ConfigError, match="residual"):
        Method.make("i-snn", residual="median")
    with pytest.raises(ConfigError, match="calib_images"):
        Method.make("i-snn", calib_images=0)
    # an option a method does not read is refused (issue 14), so it cannot masquerade as a different reading
    with pytest.raises(ConfigError, match="'snn' does not read option compensation"):
        Method.make("snn", compensation="potential")
    assert Method.make("i-snn", init="weight").residual is None
    assert Method.make("ic-snn").label == "ic-snn[init=data,compensation=printed,residual=raw,granularity=layer,calib_images=128]"

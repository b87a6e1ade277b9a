import itertools

import pytest
import torch

from conftest import if_spike_count
from icsnn_core.neuron import IFNeuron, set_mode


def run_neuron(x: torch.Tensor, v0: torch.Tensor | float, thr: float, T: int, window: int | None = None):
    """Drive one IF layer with the constant current x for T steps, ``window`` steps per call."""
    n = IFNeuron()
    n.threshold.fill_(thr)
    n.v0 = torch.as_tensor(v0, dtype=x.dtype)
    set_mode(n, "snn")
    n.track = True
    window = window or T
    outs = []
    for t0 in range(0, T, window):
        steps = min(window, T - t0)
        n.steps = steps
        outs.append(n(x.unsqueeze(0).expand(steps, *x.shape).reshape(-1, *x.shape[1:])).view(steps, *x.shape))
    return torch.cat(outs), n


@pytest.mark.parametrize("thr", [1.0, 0.75])
@pytest.mark.parametrize("T", [1, 3, 8, 32])
def test_spike_count_matches_closed_form(thr, T):
    xs = [i / 16 for i in range(0, 40)]  # includes exact ties (v == V_th) and saturation (x > V_th)
    v0s = [0.0, 0.125, 0.5, thr / 2, 0.875 * thr]
    grid = torch.tensor(list(itertools.product(xs, v0s)), dtype=torch.float64)
    x, v0 = grid[:, 0].view(1, -1), grid[:, 1]
    out, n = run_neuron(x, v0, thr, T)
    expected = torch.tensor([if_spike_count(a, b, thr, T) for a, b in grid.tolist()], dtype=torch.float64)
    assert torch.equal(n.spike_count.flatten(), expected)
    assert torch.equal(out.sum(0).flatten(), expected * thr)  # a spike carries V_th
    # soft reset keeps the remainder: v(T) = v(0) + T x - N(T) V_th  (eq. 7)
    assert torch.allclose(n.v.flatten(), v0 + T * x.flatten() - expected * thr, atol=1e-12)


def test_strict_threshold_at_tie():
    out, n = run_neuron(torch.tensor([[1.0]]), 0.0, 1.0, 1)  # v_temp == V_th exactly: no spike (eq. 6, '>')
    assert n.spike_count.item() == 0 and n.v.item() == 1.0
    out, n = run_neuron(torch.tensor([[1.0]]), 0.0, 1.0, 2)
    assert n.spike_count.item() == 1 and n.v.item() == 1.0


def test_negative_input_never_fires_and_accumulates():
    _, n = run_neuron(torch.tensor([[-0.25]]), 0.0, 1.0, 8)
    assert n.spike_count.item() == 0 and n.v.item() == -2.0


def test_windows_give_the_same_spikes():
    x = torch.rand(4, 5, dtype=torch.float64)
    whole, n1 = run_neuron(x, 0.3, 0.7, 13)
    parts, n2 = run_neuron(x, 0.3, 0.7, 13, window=4)
    assert torch.equal(whole, parts) and torch.equal(n1.v, n2.v) and torch.equal(n1.first_spike, n2.first_spike)


def test_first_spike_time():
    # x = 0.375, V_th = 1: from v0 = 0 the first spike is at t = 3 (1.125 > 1); from v0 = 0.5 at t = 2
    _, n = run_neuron(torch.tensor([[0.375, 0.375, 0.0]]), torch.tensor([0.0, 0.5, 0.0]), 1.0, 8, window=2)
    assert n.first_spike.tolist() == [[3.0, 2.0, float("inf")]]


def test_ann_and_saturated_modes():
    n = IFNeuron()
    n.threshold.fill_(2.0)
    z = torch.tensor([-1.0, 0.5, 3.0])
    assert torch.equal(n(z), torch.tensor([0.0, 0.5, 3.0]))
    set_mode(n, "saturated")
    assert torch.equal(n(z), torch.full((3,), 2.0))
    with pytest.raises(ValueError, match="unknown neuron mode"):
        set_mode(n, "spiking")


def test_batch_not_multiple_of_steps_is_an_error():
    n = IFNeuron()
    set_mode(n, "snn")
    n.steps = 3
    with pytest.raises(RuntimeError, match="multiple of steps"):
        n(torch.zeros(4, 2))
